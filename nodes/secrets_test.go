package nodes_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/nodes"
)

// A master that left keeps its keys and etcd's data unless told otherwise: the final report
// must be able to name them. Run for real under a scratch folder: grep and stat only.
func TestFindLeftSecrets(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"etc/kubernetes/ssl/ca-key.pem":                        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n",
		"etc/kubernetes/ssl/ca.pem":                            "-----BEGIN CERTIFICATE-----\nMIIE\n-----END CERTIFICATE-----\n",
		"etc/kubernetes/ssl/etcd-key.pem.bak-20260101T000000Z": "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
		"etc/kubernetes/kubelet.kubeconfig":                    "users:\n- user:\n    client-key-data: LS0t\n",
		"etc/kubernetes/kube-proxy.kubeconfig":                 "users:\n- user:\n    token: abc\n",
		"var/lib/etcd/member/snap/db":                          "bolt",
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	at := func(p string) string { return filepath.Join(root, p) }
	got, err := nodes.FindLeftSecrets(context.Background(), host.NewLocal("m3"),
		[]string{at("etc/kubernetes"), at("etc/etcd")}, []string{at("var/lib/etcd"), at("var/lib/etcd-old")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{at("etc/kubernetes/kubelet.kubeconfig"), at("etc/kubernetes/ssl/ca-key.pem"), at("etc/kubernetes/ssl/etcd-key.pem.bak-20260101T000000Z")}
	if !slices.Equal(got.KeyFiles, wantKeys) || !slices.Equal(got.DataDirs, []string{at("var/lib/etcd")}) {
		t.Errorf("found keys %q, data %q; want %q, %q", got.KeyFiles, got.DataDirs, wantKeys, at("var/lib/etcd"))
	}
	w := got.Warning()
	for _, part := range []string{"m3 left the cluster", "3 files with private keys", "every Secret of the cluster", "snapshot is verified"} {
		if !strings.Contains(w, part) {
			t.Errorf("warning lacks %q: %s", part, w)
		}
	}
	if strings.Contains(w, "MIIE") || strings.Contains(w, "LS0t") {
		t.Errorf("warning shows key material: %s", w)
	}

	clean, err := nodes.FindLeftSecrets(context.Background(), host.NewLocal("w1"), []string{at("none")}, []string{at("var/lib/none")}, 0)
	if err != nil || !clean.Empty() || clean.Warning() != "" {
		t.Errorf("nothing there: %+v %v", clean, err)
	}
}
