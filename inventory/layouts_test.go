package inventory

import "testing"

// The guides' presets load from an inventory and resolve to the guides' own paths; a host
// override still wins, and a preset without a node proxy leaves nginx unset.
func TestGuidePresetsResolve(t *testing.T) {
	cases := []struct {
		layout                    string
		ca, caKey, etcdCert, unit string
	}{
		{"hardway", "/var/lib/kubernetes/ca.pem", "/var/lib/kubernetes/ca-key.pem", "/etc/etcd/kubernetes.pem", "etcd"},
		{"envfile", "/opt/kubernetes/ssl/ca.pem", "/opt/kubernetes/ssl/ca-key.pem", "/opt/etcd/ssl/server.pem", "etcd"},
		// kubespray's etcd client certificate is the host's own admin-<host>.pem.
		{"kubespray", "/etc/kubernetes/ssl/ca.crt", "/etc/kubernetes/ssl/ca.key", "/etc/ssl/etcd/ssl/admin-m1.pem", "etcd"},
	}
	for _, c := range cases {
		t.Run(c.layout, func(t *testing.T) {
			inv := mustParse(t, "format_version: 1\ncluster: t\nkubeconfig: /dev/null\nlayout: "+c.layout+"\nhosts:\n"+
				"- {name: m1, address: 10.0.0.1, roles: [etcd, master]}\n"+
				"- {name: w1, address: 10.0.0.2, roles: [worker], paths: {nginx_config: /etc/nginx/nginx.conf, nginx_listen: '127.0.0.1:6443'}}\n")
			m1, _ := inv.Host("m1")
			p := m1.Paths
			if p.CACert != c.ca || p.CAKey != c.caKey || p.EtcdCert != c.etcdCert || p.EtcdUnit != c.unit {
				t.Errorf("m1 paths %+v", p)
			}
			if p.APIServerUnit != "kube-apiserver" || p.APIServerPort != 6443 || p.EtcdClientPort != 2379 || p.EtcdPeerPort != 2380 {
				t.Errorf("m1 units and ports %+v", p)
			}
			// No proxy on a host the preset leaves alone: observe skips it rather than
			// looking for a seed003 path that does not exist there.
			if p.NginxConfig != "" || p.NginxUnit != "" {
				t.Errorf("m1 has a node proxy %q (%q) the guide does not install", p.NginxConfig, p.NginxUnit)
			}
			w1, _ := inv.Host("w1")
			if w1.Paths.NginxConfig != "/etc/nginx/nginx.conf" || w1.Paths.CACert != c.ca {
				t.Errorf("w1 override lost or preset not applied: %+v", w1.Paths)
			}
		})
	}
}
