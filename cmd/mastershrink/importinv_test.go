package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInventoryImportKubeasz(t *testing.T) {
	hosts := filepath.Join("..", "..", "inventory", "testdata", "kubeasz", "k8s-01", "hosts")
	out, errOut, code := run(t, "inventory", "import", "kubeasz", hosts)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"cluster: k8s-01", "layout: kubeasz", `{name: master-01, address: "192.168.1.1", roles: [etcd, master]}`,
		`{name: worker-01, address: "192.168.1.4", roles: [worker], ssh: {port: 2222}}`, `ssh: {user: "ops"}`, "# Check:"} {
		if !strings.Contains(out, want) {
			t.Errorf("import lacks %q:\n%s", want, out)
		}
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "hosts")
	os.WriteFile(bad, []byte("[etcd]\n10.0.0.[1:3]\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inventory", "import", "kubespray", bad}, "kubeasz is the one format imported"},
		{[]string{"inventory", "import", "kubeasz"}, "HOSTS_FILE"},
		{[]string{"inventory", "import", "kubeasz", filepath.Join(dir, "missing")}, "clusters/NAME/hosts"},
		{[]string{"inventory", "import", "kubeasz", bad}, "ranges are not imported"},
	} {
		out, errOut, code := run(t, tc.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, want exit 4 naming %q:\n%s", tc.args, code, out, tc.want, errOut)
		}
	}
}
