package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/plan"
)

// writePlan writes the seed 003 golden plan as a plan file of this tool for cluster "t".
func writePlan(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../plan/testdata/seed003-3to1/plan.json")
	if err != nil {
		t.Fatal(err)
	}
	var p plan.Plan
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	p.Cluster, p.ToolVersion = "t", version.String()
	out, err := plan.Encode(&p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every refusal below happens before any host is dialled: the inventory's only host is
// 127.0.0.1 with no sshd behind the key it names.
func TestApplyRefusesBeforeTouching(t *testing.T) {
	inv := writeInventory(t, goodInventory)
	good := writePlan(t)
	data, _ := os.ReadFile(good)
	tampered := filepath.Join(t.TempDir(), "tampered.json")
	os.WriteFile(tampered, bytes.Replace(data, []byte(`"lb_mode": "down"`), []byte(`"lb_mode": "remove"`), 1), 0o600)
	var p plan.Plan
	json.Unmarshal(data, &p)
	p.ToolVersion = "v0.0.1 (old)"
	oldData, _ := plan.Encode(&p)
	old := filepath.Join(t.TempDir(), "old.json")
	os.WriteFile(old, oldData, 0o600)

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no inventory", []string{"apply", good}, exitUsage, "-i inventory.yaml"},
		{"nothing to apply", []string{"apply", "-i", inv}, exitUsage, "give a plan file"},
		{"unknown step", []string{"apply", good, "-i", inv, "--only", "etcd/rem"}, exitUsage, `--only "etcd/rem" names no step`},
		{"unknown skip", []string{"apply", good, "-i", inv, "--skip", "nodes"}, exitUsage, `--skip "nodes" names no step`},
		{"tampered", []string{"apply", tampered, "-i", inv}, exitRefused, "edited after it was written"},
		{"other version", []string{"apply", old, "-i", inv}, exitRefused, "another version of mastershrink"},
		{"no plan, no terminal, no --yes", []string{"apply", "-i", inv, "--remove", "m1"}, exitUsage, "add --yes"},
		{"plan and target", []string{"apply", good, "-i", inv, "--remove", "m2"}, exitUsage, "already says what to remove"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := run(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want %d with %q; stderr:\n%s", code, tc.code, tc.want, errOut)
			}
		})
	}
}

// `plan -o json > f` writes what apply reads: the JSON carries the checksum of the plan file.
func TestPlanJSONIsAPlanFile(t *testing.T) {
	data, err := os.ReadFile(writePlan(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Decode(data, "")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	g := &globalOptions{streams: streams{Out: &out}}
	p.Checksum = ""
	if err := printPlan(g, p, "json"); err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Decode(out.Bytes(), ""); err != nil {
		t.Errorf("plan -o json is not a plan file apply reads: %v", err)
	}
}
