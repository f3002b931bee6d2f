package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImportKubeaszLoads(t *testing.T) {
	k, err := ImportKubeasz(filepath.Join("testdata", "kubeasz", "k8s-01", "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	if k.Cluster != "k8s-01" || len(k.Hosts) != 5 || k.SSH.User != "ops" {
		t.Fatalf("cluster %q, %d hosts, user %q", k.Cluster, len(k.Hosts), k.SSH.User)
	}
	// The written inventory must load as it is, once the files it names exist: the import is
	// only useful if -i takes it.
	dir := t.TempDir()
	kc := filepath.Join(dir, "admin.kubeconfig")
	os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\n"), 0o600)
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	k.Kubeconfig = kc
	yml := strings.Replace(string(k.YAML()), "ssh: {", "ssh: {known_hosts: "+kh+", ", 1)
	file := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(file)
	if err != nil {
		t.Fatalf("imported inventory does not load: %v\n%s", err, yml)
	}
	m1, ok := inv.Host("master-01")
	if !ok || m1.Address != "192.168.1.1" || !m1.Has(RoleEtcd) || !m1.Has(RoleMaster) || m1.Has(RoleWorker) {
		t.Errorf("master-01: %+v", m1)
	}
	w1, ok := inv.Host("worker-01")
	if !ok || w1.SSH.Port != 2222 || w1.SSH.User != "ops" || !w1.Has(RoleWorker) {
		t.Errorf("worker-01: %+v", w1)
	}
	if w2, _ := inv.Host("worker-02"); w2 == nil || w2.SSH.Port != 22 {
		t.Errorf("worker-02 should keep the default port: %+v", w2)
	}
	if inv.Layout != "kubeasz" || m1.Paths.NginxConfig != "/etc/kube-lb/conf/kube-lb.conf" {
		t.Errorf("layout %q, proxy %q", inv.Layout, m1.Paths.NginxConfig)
	}
}

func TestParseKubeaszRefusals(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"range":         {"[etcd]\n192.168.1.[1:3]\n[kube_master]\n192.168.1.1\n", "hosts:2: host pattern \"192.168.1.[1:3]\": ranges are not imported"},
		"no masters":    {"[etcd]\n192.168.1.1\n", "0 in [kube_master]"},
		"bad port":      {"[etcd]\n10.0.0.1 ansible_ssh_port=ssh\n[kube_master]\n10.0.0.1\n", "hosts:2: ansible_ssh_port=\"ssh\" is no port"},
		"bad node name": {"[etcd]\n10.0.0.1\n[kube_master]\n10.0.0.1 k8s_nodename='Master 1'\n", "hosts:4: k8s_nodename \"Master 1\""},
		"same name":     {"[etcd]\n10.0.0.1\n[kube_master]\n10.0.0.1 k8s_nodename=m\n10.0.0.2 k8s_nodename=m\n", "host name m is given to two hosts"},
		"unclosed":      {"[etcd]\n10.0.0.1 k8s_nodename='m\n", "hosts:2: unclosed quote"},
		"bad address":   {"[etcd]\n10.0.0.300\n[kube_master]\n10.0.0.1\n", "hosts:2:"},
		"binary":        {"\x00\x01", "not a text file"},
	}
	for name, tc := range cases {
		_, err := ParseKubeasz([]byte(tc.in), "hosts", "c")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if _, err := ParseKubeasz([]byte("[etcd]\n10.0.0.1\n[kube_master]\n10.0.0.1\n"), "hosts", "my cluster"); err == nil || !strings.Contains(err.Error(), "clusters/NAME/hosts") {
		t.Errorf("bad cluster folder: %v", err)
	}
}
