package inventory

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The resolved YAML is an inventory: loaded again it gives every host exactly the settings
// the original gave it.
func TestResolvedYAMLRoundTrip(t *testing.T) {
	inv, err := Load("testdata/seed003.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := inv.ResolvedYAML()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "resolved.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := Load(file)
	if err != nil {
		t.Fatalf("the resolved YAML does not load: %v\n%s", err, data)
	}
	if again.Cluster != inv.Cluster || again.Layout != inv.Layout || again.Kubeconfig != inv.Kubeconfig || len(again.Hosts) != len(inv.Hosts) {
		t.Fatalf("reloaded %+v\nwant %+v", again, inv)
	}
	for i, h := range inv.Hosts {
		g := again.Hosts[i]
		if g.Name != h.Name || g.Address != h.Address || strings.Join(roleNames(g.Roles), ",") != strings.Join(roleNames(h.Roles), ",") || g.SSH != h.SSH || g.Paths != h.Paths {
			t.Errorf("host %s reloaded as %+v\nwant %+v", h.Name, g, h)
		}
	}
	// Nothing hidden by the preset is left out.
	for _, want := range []string{"/approot/data/k8s/kube-nginx/kube-nginx.conf", "csr_dir: /opt/k8s/work", "jump_host: admin@bastion.example.com:22", "etcd_unit: etcd\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("resolved YAML lacks %q", want)
		}
	}
}

func roleNames(rs []Role) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r))
	}
	return out
}

// The JSON has the YAML's keys in the YAML's order, and the same values.
func TestResolvedJSON(t *testing.T) {
	inv, err := Load("testdata/seed003.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := inv.ResolvedJSON()
	if err != nil {
		t.Fatal(err)
	}
	ys, err := inv.ResolvedYAML()
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON, fromYAML any
	if err := json.Unmarshal(js, &fromJSON); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, js)
	}
	if err := yaml.Unmarshal(ys, &fromYAML); err != nil {
		t.Fatal(err)
	}
	// Through JSON both become the same plain values (numbers as float64).
	a, _ := json.Marshal(fromJSON)
	b, _ := json.Marshal(fromYAML)
	if string(a) != string(b) {
		t.Errorf("JSON and YAML differ:\n%s\n%s", a, b)
	}
	if !strings.HasPrefix(string(js), "{\n  \"format_version\": 1,\n  \"cluster\": \"prod-sh\",") {
		t.Errorf("JSON does not keep the inventory's order:\n%.200s", js)
	}
	for _, want := range []string{`"port": 2222`, `"local": true`, `"connect_timeout": "5s"`, `"apiserver_port": 6443`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
}

func TestSettings(t *testing.T) {
	inv, err := Load("testdata/seed003.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range inv.Settings() {
		hosts := "all"
		if s.Hosts != nil {
			hosts = strings.Join(s.Hosts, ",")
		}
		got[s.Name+"="+s.Value] = hosts
	}
	for k, want := range map[string]string{
		"ssh.port=22":                      "master-1,master-3,worker-1",
		"ssh.port=2222":                    "master-2",
		"ssh.jump_host=-":                  "master-1,master-3,worker-1",
		"ssh.connect_timeout=5s":           "all",
		"paths.etcd_unit=etcd":             "master-3",
		"paths.etcd_unit=kube-etcd":        "master-1,master-2,worker-1",
		"paths.ca_key=/root/ca/ca-key.pem": "master-3",
		"paths.csr_dir=/opt/k8s/work":      "all",
		"paths.etcd_peer_port=2380":        "all",
	} {
		if got[k] != want {
			t.Errorf("%s: hosts %q, want %q", k, got[k], want)
		}
	}
	if s := inv.Summary(); s != "4 hosts (3 masters, 3 etcd, 4 workers)" {
		t.Errorf("Summary = %q", s)
	}
}
