package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// VIPAddress is the keepalived VIP of AddVIP; LBPort is where the LB hosts' nginx listens,
// on every address (the env-file guides' 16443).
const (
	VIPAddress = "10.88.0.100"
	LBPort     = 16443
)

// VIPFront is the VIP's address and port: on LB hosts their nginx's port, else the proxy
// every master runs, which must listen on every address (seed003's kube-nginx on *:8443).
func (l *Lab) VIPFront() string {
	if len(l.withRole("lb")) > 0 {
		return fmt.Sprintf("%s:%d", VIPAddress, LBPort)
	}
	lay, _ := LookupLayout(l.Layout)
	_, port, _ := strings.Cut(lay.Paths.NginxListen, ":")
	return VIPAddress + ":" + port
}

// vipHosts are the hosts keepalived runs on: the LB hosts, else the masters.
func (l *Lab) vipHosts() []Machine {
	if lb := l.withRole("lb"); len(lb) > 0 {
		return lb
	}
	return l.withRole("master")
}

// keepalivedConf is a keepalived.conf as the guides write it: unicast VRRP between the VIP's
// hosts (bridges and clouds often drop multicast), every one starting as BACKUP, and the
// priority rising with the host's number, so on masters the VIP starts on the last one: the
// one a shrink removes first.
func (l *Lab) keepalivedConf(m Machine) string {
	prio := 0
	var peers strings.Builder
	for i, o := range l.vipHosts() {
		if o.Name == m.Name {
			prio = 100 + 10*i
			continue
		}
		fmt.Fprintf(&peers, "        %s\n", o.Address)
	}
	return fmt.Sprintf(`! keepalived for the apiserver VIP (lab)
global_defs {
    router_id %s
}

vrrp_instance apiserver {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority %d
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass labvrrp1
    }
    unicast_src_ip %s
    unicast_peer {
%s    }
    virtual_ipaddress {
        %s/24 dev eth0
    }
}
`, m.Name, prio, m.Address, peers.String(), VIPAddress)
}

// AddVIP runs keepalived for VIPAddress on the LB hosts or, without any, on every master, as
// the guides set it up, waits until the last of them holds the VIP, and returns the path of a kubeconfig
// that reaches the API through it. The apiserver certificate does not name the VIP, so the
// kubeconfig says which name to verify (tls-server-name), as an operator adding a VIP to a
// running cluster does until the certificate is re-signed.
func (l *Lab) AddVIP(ctx context.Context) (string, error) {
	hosts := l.vipHosts()
	for _, m := range hosts {
		conf := filepath.Join(m.Root, "etc/keepalived/keepalived.conf")
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(conf, []byte(l.keepalivedConf(m)), 0o644); err != nil {
			return "", err
		}
		if out, err := l.Exec(ctx, m.Name, "systemctl", "enable", "--now", "keepalived.service"); err != nil {
			return "", fmt.Errorf("start keepalived on %s: %v: %s", m.Name, err, out)
		}
	}
	last := hosts[len(hosts)-1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := l.Exec(ctx, last.Name, "ip", "-o", "addr", "show", "dev", "eth0")
		if err == nil && strings.Contains(string(out), " "+VIPAddress+"/") {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("lab %s: %s does not hold the VIP %s after 30s: %s", l.Name, last.Name, VIPAddress, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(l.PKIDir, name)) }
	ca, err := read("ca.pem")
	if err != nil {
		return "", err
	}
	cert, err := read("admin.pem")
	if err != nil {
		return "", err
	}
	key, err := read("admin-key.pem")
	if err != nil {
		return "", err
	}
	kc := string(kubeconfig("https://"+l.VIPFront(), "admin", ca, cert, key))
	kc = strings.Replace(kc, "    server: ", "    tls-server-name: kubernetes\n    server: ", 1)
	path := filepath.Join(l.OutDir, "vip.kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		return "", err
	}
	return path, nil
}
