package observe

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/unitfile/unitfiletest"
)

// Which proxy a host is found to run, from what is on it and what the inventory says.
func TestObserveProxy(t *testing.T) {
	const (
		nginxConf = "/etc/nginx/nginx.conf"
		hapConf   = "/etc/haproxy/haproxy.cfg"
		envoyConf = "/etc/envoy/envoy.yaml"
	)
	nginx := "stream {\n  upstream api {\n    server 10.0.0.1:6443;\n    server 10.0.0.2:6443;\n  }\n  server {\n    listen 127.0.0.1:6443;\n    proxy_pass api;\n  }\n}\n"
	haproxy := "defaults\n  mode tcp\nfrontend fe\n  bind 127.0.0.1:6443\n  default_backend be\nbackend be\n  server m1 10.0.0.1:6443 check\n  server m2 10.0.0.2:6443 check\n"
	// Debian's haproxy.cfg as the package installs it: no backend at all.
	debian := "global\n\tlog /dev/log local0\n\tdaemon\n\ndefaults\n\tlog global\n\tmode http\n\ttimeout connect 5000\n"
	active := host.UnitStatus{LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled"}
	apiservers := []string{"10.0.0.1:6443", "10.0.0.2:6443"}

	tests := []struct {
		name    string
		files   map[string]string
		units   map[string]host.UnitStatus
		paths   inventory.Paths
		kind    string // the proxy read, "-" for none
		missing string // ProxyMissing.Path, empty for none
		other   string // ProxyMissing.Other, joined
		err     string
	}{
		{name: "nginx", files: map[string]string{nginxConf: nginx, hapConf: haproxy}, paths: inventory.Paths{NginxConfig: nginxConf}, kind: ""},
		{name: "nginx missing, haproxy fronts the apiservers", files: map[string]string{hapConf: haproxy}, units: map[string]host.UnitStatus{"haproxy.service": active},
			paths: inventory.Paths{NginxConfig: nginxConf}, kind: lb.KindHAProxy},
		{name: "nginx missing, Debian's haproxy.cfg fronts nothing", files: map[string]string{hapConf: debian},
			paths: inventory.Paths{NginxConfig: nginxConf}, kind: "-", missing: nginxConf, other: ""},
		{name: "nginx missing, envoy", files: map[string]string{envoyConf: "static_resources: {}\n"}, units: map[string]host.UnitStatus{"envoy.service": active},
			paths: inventory.Paths{NginxConfig: nginxConf}, kind: "-", missing: nginxConf, other: envoyConf + ", envoy.service active, enabled"},
		{name: "proxy: haproxy, elsewhere", files: map[string]string{"/usr/local/etc/haproxy/haproxy.cfg": haproxy},
			paths: inventory.Paths{Proxy: "haproxy", HAProxyConfig: "/usr/local/etc/haproxy/haproxy.cfg", NginxConfig: nginxConf}, kind: lb.KindHAProxy},
		{name: "proxy: haproxy, missing", files: map[string]string{nginxConf: nginx}, paths: inventory.Paths{Proxy: "haproxy"}, kind: "-", missing: hapConf},
		{name: "proxy: nginx, missing, haproxy there", files: map[string]string{hapConf: haproxy}, units: map[string]host.UnitStatus{"haproxy.service": active},
			paths: inventory.Paths{Proxy: "nginx", NginxConfig: nginxConf}, kind: "-", missing: nginxConf, other: hapConf + ", haproxy.service active, enabled"},
		{name: "no proxy in the inventory", files: map[string]string{hapConf: haproxy}, paths: inventory.Paths{}, kind: "-"},
		{name: "nginx, and a haproxy config that is not running", files: map[string]string{nginxConf: nginx, hapConf: haproxy},
			paths: inventory.Paths{NginxConfig: nginxConf}, kind: ""},
		{name: "nginx, and an active haproxy", files: map[string]string{nginxConf: nginx, hapConf: haproxy}, units: map[string]host.UnitStatus{"haproxy": active},
			paths: inventory.Paths{NginxConfig: nginxConf}, err: "both nginx (/etc/nginx/nginx.conf) and haproxy (/etc/haproxy/haproxy.cfg, haproxy active) front the apiservers"},
		{name: "proxy: nginx, and an active haproxy", files: map[string]string{nginxConf: nginx, hapConf: haproxy}, units: map[string]host.UnitStatus{"haproxy.service": active},
			paths: inventory.Paths{Proxy: "nginx", NginxConfig: nginxConf}, kind: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, text := range tt.files {
				f := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			h := &unitfiletest.DirHost{HostName: "w1", Root: root, Statuses: tt.units}
			ih := &inventory.Host{Name: "w1", Paths: tt.paths}
			cfg, missing, err := observeProxy(context.Background(), h, ih, apiservers)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.kind == "-" && cfg != nil:
				t.Errorf("read a %q proxy, want none", cfg.Kind)
			case tt.kind != "-" && (cfg == nil || cfg.Kind != tt.kind || len(cfg.Upstreams) != 1 || cfg.Listen != "127.0.0.1:6443"):
				t.Errorf("proxy %+v, want kind %q fronting the apiservers", cfg, tt.kind)
			}
			if tt.missing == "" {
				if missing != nil {
					t.Errorf("missing %+v, want none", missing)
				}
				return
			}
			if missing == nil || missing.Path != tt.missing || strings.Join(missing.Other, ", ") != tt.other {
				t.Errorf("missing %+v, want %s with other %q", missing, tt.missing, tt.other)
			}
		})
	}
}
