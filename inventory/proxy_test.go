package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A host says its proxy is haproxy, with or without paths: the unset ones are Debian's.
func TestHAProxyPaths(t *testing.T) {
	inv := mustParse(t, "format_version: 1\ncluster: t\nkubeconfig: /dev/null\nlayout: seed003\nhosts:\n"+
		"- {name: m1, address: 10.0.0.1, roles: [etcd, master], paths: {proxy: haproxy}}\n"+
		"- {name: w1, address: 10.0.0.2, roles: [worker], paths: {proxy: haproxy, haproxy_config: /usr/local/etc/haproxy/haproxy.cfg, haproxy_unit: lb}}\n")
	m1, _ := inv.Host("m1")
	if c, u, b := m1.Paths.HAProxyPaths(); m1.Paths.Proxy != ProxyHAProxy || c != "/etc/haproxy/haproxy.cfg" || u != "haproxy" || b != "/usr/sbin/haproxy" {
		t.Errorf("m1: proxy %q, haproxy %s %s %s", m1.Paths.Proxy, c, u, b)
	}
	w1, _ := inv.Host("w1")
	if c, u, b := w1.Paths.HAProxyPaths(); c != "/usr/local/etc/haproxy/haproxy.cfg" || u != "lb" || b != "/usr/sbin/haproxy" {
		t.Errorf("w1: haproxy %s %s %s", c, u, b)
	}
}

func TestProxyValidation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "inventory.yaml")
	src := "format_version: 1\ncluster: t\nkubeconfig: /dev/null\nlayout: seed003\nhosts:\n" +
		"  - {name: m1, address: 10.0.0.1, roles: [etcd], paths: {proxy: envoy, haproxy_config: haproxy.cfg, haproxy_unit: 'ha proxy'}}\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	all := strings.Join(problems(t, err), "\n")
	for _, want := range []string{
		`hosts[0].paths.haproxy_config: want an absolute path, got "haproxy.cfg"`,
		`hosts[0].paths.haproxy_unit: invalid unit name "ha proxy"`,
		`hosts[0].paths.proxy: unknown proxy "envoy" (want nginx or haproxy`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
}
