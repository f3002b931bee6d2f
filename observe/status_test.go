package observe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/inventory"
)

// kubeconfigFile writes a kubeconfig with one context per server, the first current.
func kubeconfigFile(t *testing.T, dir, name string, servers map[string]string, current string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Config\ncurrent-context: " + current + "\nclusters:\n")
	for ctx, srv := range servers {
		b.WriteString("- name: " + ctx + "\n  cluster: {server: " + srv + ", insecure-skip-tls-verify: true}\n")
	}
	b.WriteString("contexts:\n")
	for ctx := range servers {
		b.WriteString("- name: " + ctx + "\n  context: {cluster: " + ctx + ", user: admin}\n")
	}
	b.WriteString("users:\n- name: admin\n  user: {token: x}\n")
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKubeconfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	inv := kubeconfigFile(t, dir, "inv.kubeconfig", map[string]string{"inv": "https://10.0.0.1:6443"}, "inv")
	flag := kubeconfigFile(t, dir, "flag.kubeconfig", map[string]string{"flag": "https://10.0.0.2:6443", "other": "https://10.0.0.3:6443"}, "flag")
	env2 := kubeconfigFile(t, dir, "env2.kubeconfig", map[string]string{"env2": "https://10.0.0.4:6443"}, "env2")
	missing := filepath.Join(dir, "missing")

	cases := []struct {
		name    string
		opts    Options
		server  string
		wantErr string
	}{
		{name: "inventory", opts: Options{}, server: "https://10.0.0.1:6443"},
		{name: "flag over inventory", opts: Options{Kubeconfig: flag}, server: "https://10.0.0.2:6443"},
		{name: "flag over KUBECONFIG", opts: Options{Kubeconfig: flag, KubeconfigPaths: []string{env2}}, server: "https://10.0.0.2:6443"},
		// kubectl merges the list: the first file that sets current-context wins, and a
		// missing entry is skipped.
		{name: "KUBECONFIG list", opts: Options{KubeconfigPaths: []string{missing, env2, flag}}, server: "https://10.0.0.4:6443"},
		{name: "context from a later file of the list", opts: Options{KubeconfigPaths: []string{env2, flag}, Context: "other"}, server: "https://10.0.0.3:6443"},
		{name: "context", opts: Options{Kubeconfig: flag, Context: "other"}, server: "https://10.0.0.3:6443"},
		{name: "unknown context", opts: Options{Kubeconfig: flag, Context: "nope"}, wantErr: `context "nope"`},
		{name: "missing --kubeconfig", opts: Options{Kubeconfig: missing}, wantErr: "(--kubeconfig)"},
		// No fallback to ~/.kube/config: a KUBECONFIG of missing files is an error, not
		// another cluster.
		{name: "KUBECONFIG of missing files", opts: Options{KubeconfigPaths: []string{missing}}, wantErr: "(KUBECONFIG)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", t.TempDir())
			c := Open(&inventory.Inventory{File: filepath.Join(dir, "inventory.yaml"), Kubeconfig: inv}, tc.opts)
			_, cfg, err := c.Kube()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tc.server {
				t.Errorf("server = %s, want %s", cfg.Host, tc.server)
			}
		})
	}
}
