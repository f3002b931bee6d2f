package testenv

import (
	"fmt"
	"strings"

	"github.com/mastershrink/mastershrink/inventory"
)

// ProxyHAProxy (Options.Proxy) runs Debian's haproxy 2.6 on every node as the apiserver
// proxy, where the layout's nginx would listen: its packaged unit (master-worker, reload
// through haproxy -c and USR2) and /etc/haproxy/haproxy.cfg in the shape of the kubernetes.io
// HA guide. The layout's nginx config is not written, so the inventory's nginx_config is
// missing on every node and mastershrink has to find haproxy on its own.
const ProxyHAProxy = "haproxy"

// haproxyConf is the node's haproxy.cfg: Debian's global section, a tcp frontend on the
// layout's proxy address and one backend with every master, health-checked.
func (l *Lab) haproxyConf(lay Layout) string {
	var b strings.Builder
	b.WriteString(`global
	log /dev/log	local0
	log /dev/log	local1 notice
	chroot /var/lib/haproxy
	stats socket /run/haproxy/admin.sock mode 660 level admin
	stats timeout 30s
	user haproxy
	group haproxy
	daemon

defaults
	log	global
	mode	tcp
	option	tcplog
	option	dontlognull
	timeout connect 1s
	timeout client  3m
	timeout server  3m

# kube-apiserver, as the kubernetes.io HA guide fronts it
frontend kube-apiserver
`)
	fmt.Fprintf(&b, "\tbind %s\n\tdefault_backend kube-apiserver\n\nbackend kube-apiserver\n\tbalance roundrobin\n\tdefault-server inter 2s fall 2 rise 2\n", lay.NginxListenDirective)
	for i, m := range l.withRole("master") {
		server := m.Address
		if l.UpstreamsByName && i > 0 {
			server = m.Name
		}
		fmt.Fprintf(&b, "\tserver %s %s:%d check\n", m.Name, server, lay.Paths.APIServerPort)
	}
	return b.String()
}

// haproxyFiles put the config in place and enable the packaged unit, which the rootfs has
// disabled.
func (l *Lab) haproxyFiles(lay Layout) []file {
	return []file{
		{Path: inventory.DefaultHAProxyConfig, Mode: 0o644, Data: []byte(l.haproxyConf(lay))},
		{Path: "/etc/systemd/system/multi-user.target.wants/haproxy.service", Link: "/lib/systemd/system/haproxy.service"},
	}
}
