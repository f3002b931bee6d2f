package observe

import "testing"

func TestCAKeyPath(t *testing.T) {
	for cert, want := range map[string]string{
		"/etc/ssl/etcd/ssl/ca.pem":   "/etc/ssl/etcd/ssl/ca-key.pem",
		"/etc/kubernetes/pki/ca.crt": "/etc/kubernetes/pki/ca.key",
		"/opt/etcd/ssl/etcd-ca.pem":  "/opt/etcd/ssl/etcd-ca-key.pem",
	} {
		if got := caKeyPath(cert); got != want {
			t.Errorf("caKeyPath(%s) = %s, want %s", cert, got, want)
		}
	}
}

func TestPerHostCertRE(t *testing.T) {
	for name, want := range map[string]bool{
		"member-m1.pem": true, "admin-node1.example.com.pem": true, "node-w1.pem": true,
		"ca.pem": false, "admin.pem": false, "member-m1.csr": false, "kube-node-x.pem": false,
	} {
		if got := perHostCertRE.MatchString(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}
