package observe

import (
	"context"
	"reflect"
	"testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
)

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

// kubespray's per-host certificates are found in the folder of etcd's CA by their names,
// keys left out and each paired with its -key.pem; no unit use is claimed for them.
func TestPerHostCertRefs(t *testing.T) {
	h := hosttest.New("m1")
	h.RunFunc = func(cmd string) (host.Result, error) {
		if cmd != "ls -1 -- '/etc/ssl/etcd/ssl' 2>/dev/null || true" {
			t.Errorf("ran %q", cmd)
		}
		return host.Result{Stdout: []byte("admin-m1-key.pem\nadmin-m1.pem\nca-key.pem\nca.pem\nmember-m2.pem\nnode-w1.pem\nopenssl.conf\n")}, nil
	}
	ih := &inventory.Host{Name: "m1", Paths: inventory.Paths{EtcdCACert: "/etc/ssl/etcd/ssl/ca.pem"}}
	got := perHostCertRefs(context.Background(), h, ih)
	want := []certRef{
		{host: "m1", path: "/etc/ssl/etcd/ssl/admin-m1.pem", key: "/etc/ssl/etcd/ssl/admin-m1-key.pem"},
		{host: "m1", path: "/etc/ssl/etcd/ssl/member-m2.pem", key: "/etc/ssl/etcd/ssl/member-m2-key.pem"},
		{host: "m1", path: "/etc/ssl/etcd/ssl/node-w1.pem", key: "/etc/ssl/etcd/ssl/node-w1-key.pem"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("refs %+v\nwant %+v", got, want)
	}
	if refs := perHostCertRefs(context.Background(), h, &inventory.Host{Name: "m1"}); refs != nil {
		t.Errorf("no etcd CA path: %+v", refs)
	}
}
