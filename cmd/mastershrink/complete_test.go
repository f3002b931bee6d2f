package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completeInventory is goodInventory with a second master and a worker.
const completeInventory = goodInventory + `  - {name: m2, address: 127.0.0.2, roles: [etcd, master]}
  - {name: w1, address: 127.0.0.3, roles: [worker]}
`

// complete runs cobra's hidden __complete command and returns the offered values, without
// the trailing ":directive" line.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	root.SetArgs(append([]string{"__complete"}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("__complete %v: %v\n%s", args, err, errOut.String())
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if l == "" || strings.HasPrefix(l, ":") {
			continue
		}
		got = append(got, strings.SplitN(l, "\t", 2)[0])
	}
	return got
}

func TestCompleteHosts(t *testing.T) {
	inv := writeInventory(t, completeInventory)
	all := []string{"m1", "m2", "w1"}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"plan", "-i", inv, "--remove", ""}, all},
		{[]string{"plan", "--drain", "w", "-i", inv, "--drain", "w"}, []string{"w1"}},
		{[]string{"plan", "-i", inv, "--offline", "m"}, []string{"m1", "m2"}},
		{[]string{"plan", "-i", inv, "--remove", "m1,"}, []string{"m1,m2", "m1,w1"}},
		{[]string{"apply", "-i", inv, "--remove", ""}, all},
		{[]string{"apply", "-i", inv, "--drain", ""}, all},
		{[]string{"nodes", "drain", "-i", inv, ""}, all},
		{[]string{"nodes", "cleanup", "-i", inv, "w1", ""}, []string{"m1", "m2"}},
		{[]string{"nodes", "verify", "--inventory=" + inv, "m"}, []string{"m1", "m2"}},
		{[]string{"plan", "--remove", ""}, nil},
	}
	for _, c := range cases {
		if got := complete(t, c.args...); !slices.Equal(got, c.want) {
			t.Errorf("%v: got %q, want %q", c.args, got, c.want)
		}
	}
}

// An inventory that does not load in full (a referenced file missing) still offers its
// hosts: the operator is often still writing it.
func TestCompleteHostsPartialInventory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(p, []byte(completeInventory), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := complete(t, "plan", "-i", p, "--remove", ""); !slices.Equal(got, []string{"m1", "m2", "w1"}) {
		t.Errorf("got %q", got)
	}
}

func TestCompleteStepIDs(t *testing.T) {
	planFile := writePlan(t)
	ids := planStepIDs(planFile)
	if len(ids) == 0 {
		t.Fatal("no step IDs read from the plan")
	}
	for _, flag := range []string{"--only", "--skip"} {
		got := complete(t, "apply", planFile, "-i", "inventory.yaml", flag, "")
		if !slices.Equal(got, ids) {
			t.Errorf("%s: got %q, want %q", flag, got, ids)
		}
		for _, want := range []string{"preflight", "etcd", "etcd/snapshot"} {
			if !slices.Contains(got, want) {
				t.Errorf("%s: %q not offered in %q", flag, want, got)
			}
		}
	}
	got := complete(t, "apply", planFile, "--only", "preflight,etcd/")
	if len(got) == 0 {
		t.Fatal("no etcd/ IDs after a comma")
	}
	for _, g := range got {
		if !strings.HasPrefix(g, "preflight,etcd/") {
			t.Errorf("%q does not keep the typed prefix", g)
		}
	}
	if got := complete(t, "apply", "--only", ""); got != nil {
		t.Errorf("without a plan file: got %q", got)
	}
}
