package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const showInventory = `format_version: 1
cluster: t
layout: seed003
kubeconfig: admin.kubeconfig
ssh:
  identity_file: id_ed25519
  known_hosts: known_hosts
hosts:
  - {name: m1, address: 10.0.0.1, roles: [etcd, master, worker]}
  - {name: m2, address: 10.0.0.2, roles: [etcd, master, worker], ssh: {port: 2222}}
  - {name: w1, address: 10.0.0.11, roles: [worker], paths: {nginx_listen: "127.0.0.1:7443"}}
`

func TestInventoryValidate(t *testing.T) {
	inv := writeInventory(t, showInventory)
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string // the whole of stdout
		stderr []string
	}{
		{"ok by -i", []string{"inventory", "validate", "-i", inv}, exitOK,
			"inventory OK: 3 hosts (2 masters, 2 etcd, 3 workers), cluster t, layout seed003\n", nil},
		{"ok as an argument, with a target", []string{"inventory", "validate", inv, "--remove", "m2", "--drain", "w1"}, exitOK,
			"inventory OK: 3 hosts (2 masters, 2 etcd, 3 workers), cluster t, layout seed003; target OK (--remove m2 --drain w1)\n", nil},
		{"wrong target", []string{"inventory", "validate", inv, "--remove", "m1,m2,w1"}, exitRefused, "",
			[]string{"the target has 2 problems:", "--remove w1: w1 is a worker", "removes every master and etcd host"}},
		{"no inventory", []string{"inventory", "validate"}, exitUsage, "", []string{"-i inventory.yaml"}},
		{"two inventories", []string{"inventory", "validate", "-i", inv, "other.yaml"}, exitUsage, "", []string{"two inventories"}},
		{"no subcommand", []string{"inventory"}, exitUsage, "", []string{"validate|show"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(t, tc.args...)
			if code != tc.code || out != tc.stdout {
				t.Errorf("exit %d, stdout %q\nwant exit %d, stdout %q\nstderr: %s", code, out, tc.code, tc.stdout, errOut)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// An inventory that does not load: every problem, at its line, exit 4.
func TestInventoryValidateBad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "inventory.yaml")
	src := "format_version: 1\nlayout: seed003\nkubeconfig: gone.kubeconfig\nhosts:\n  - {name: m1, address: 10.0.0.1, roles: [etcd, mastr], ssh: {local: true}}\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := run(t, "inventory", "validate", file)
	want := "error: " + file + ":1: cluster: missing (want the cluster's name, e.g. cluster: prod-sh; plans and locks carry it)\n" +
		file + ":3: kubeconfig: " + filepath.Join(dir, "gone.kubeconfig") + " does not exist: fix kubeconfig: in the inventory (relative paths start at the inventory's folder), or copy the cluster's admin kubeconfig there\n" +
		file + `:5: hosts[0].roles[1]: unknown role "mastr" (want etcd, master, worker or lb)` + "\n"
	if code != exitUsage || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit %d, stderr:\n%s", code, out, errOut, exitUsage, want)
	}
}

func TestInventoryShow(t *testing.T) {
	inv := writeInventory(t, showInventory)
	dir := filepath.Dir(inv)

	out, errOut, code := run(t, "inventory", "show", "-i", inv)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Cluster t, layout seed003: 3 hosts (2 masters, 2 etcd, 3 workers)\n",
		"Kubeconfig: " + filepath.Join(dir, "admin.kubeconfig") + "\n",
		"m2 10.0.0.2 etcd,master,worker 10\n",
		"ssh.port 22 m1,w1\n",
		"ssh.port 2222 m2\n",
		"ssh.identity_file " + filepath.Join(dir, "id_ed25519"),
		"paths.nginx_listen 127.0.0.1:8443 m1,m2\n",
		"paths.nginx_listen 127.0.0.1:7443 w1\n",
		"paths.nginx_config /approot/data/k8s/kube-nginx/kube-nginx.conf all\n",
		"paths.ca_config /opt/k8s/work/ca-config.json all\n",
	} {
		// Column widths follow the temp folder's name: compare with single spaces.
		if !strings.Contains(oneSpace(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = run(t, "inventory", "show", inv, "-o", "json")
	var doc struct {
		FormatVersion int    `json:"format_version"`
		Cluster       string `json:"cluster"`
		Hosts         []struct {
			Name string `json:"name"`
			SSH  struct {
				Port int `json:"port"`
			} `json:"ssh"`
			Paths struct {
				EtcdUnit string `json:"etcd_unit"`
				PKIDir   string `json:"pki_dir"`
			} `json:"paths"`
		} `json:"hosts"`
	}
	if code != exitOK {
		t.Fatalf("json: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if doc.FormatVersion != 1 || doc.Cluster != "t" || len(doc.Hosts) != 3 || doc.Hosts[1].SSH.Port != 2222 ||
		doc.Hosts[0].Paths.EtcdUnit != "kube-etcd" || doc.Hosts[2].Paths.PKIDir != "/etc/kubernetes/ssl" {
		t.Errorf("json: %+v", doc)
	}

	// The YAML is an inventory: shown again, it shows the same.
	out, errOut, code = run(t, "inventory", "show", inv, "-o", "yaml")
	if code != exitOK || !strings.Contains(out, "    ssh:\n      user: root\n      port: 2222\n") {
		t.Fatalf("yaml: exit %d: %s\n%s", code, errOut, out)
	}
	resolved := filepath.Join(dir, "resolved.yaml")
	if err := os.WriteFile(resolved, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	again, errOut, code := run(t, "inventory", "show", resolved, "-o", "yaml")
	if code != exitOK || again != out {
		t.Errorf("the resolved YAML shows differently (exit %d, %s):\n%s\nwant:\n%s", code, errOut, again, out)
	}

	if _, errOut, code := run(t, "inventory", "show", inv, "-o", "wide"); code != exitUsage || !strings.Contains(errOut, "want table, json or yaml") {
		t.Errorf("-o wide: exit %d: %s", code, errOut)
	}
}

var spaces = regexp.MustCompile(` {2,}`)

func oneSpace(s string) string { return spaces.ReplaceAllString(s, " ") }
