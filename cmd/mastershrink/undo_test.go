package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/runner"
)

// undoFixture writes an inventory and a plan of cluster t in a fresh folder, with a journal
// and audit log of the steps given as ended; hosts are unreachable, so a test passes only if
// undo decides without dialling.
func undoFixture(t *testing.T, ended ...string) (dir, planPath, invPath string) {
	t.Helper()
	dir = t.TempDir()
	writeReferenced(t, dir)
	invPath = filepath.Join(dir, "inventory.yaml")
	inv := `format_version: 1
cluster: t
layout: seed003
kubeconfig: admin.kubeconfig
ssh: {user: root, identity_file: id_ed25519, known_hosts: known_hosts, connect_timeout: 1s}
hosts:
  - {name: m1, address: 192.0.2.1, roles: [etcd, master]}
  - {name: m2, address: 192.0.2.2, roles: [etcd, master]}
  - {name: w1, address: 192.0.2.9, roles: [worker]}
`
	if err := os.WriteFile(invPath, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &plan.Plan{FormatVersion: plan.FormatVersion, ToolVersion: version.String(), Cluster: "t", PointOfNoReturn: "etcd/remove-member/m2",
		Steps: []plan.Step{
			{ID: "preflight", Kind: plan.KindPreflight, Risk: plan.Safe},
			{ID: "etcd/snapshot", Kind: plan.KindSnapshot, Risk: plan.Safe},
			{ID: "lb/update/w1", Kind: plan.KindLBUpdate, Host: "w1", Risk: plan.Disruptive, Files: []host.FileChange{{Host: "w1", Path: "/etc/kube-nginx/kube-nginx.conf", Before: "a", After: "b"}}},
			{ID: "etcd/remove-member/m2", Kind: plan.KindRemoveMember, Host: "m2", Risk: plan.Irreversible, PastNoReturn: true},
		}}
	data, err := plan.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	planPath = filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err = plan.Decode(data, "")
	if err != nil {
		t.Fatal(err)
	}
	journal, audit, _ := runner.RecordPaths(planPath)
	var jl, al []string
	line := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for _, id := range ended {
		e := runner.Entry{Time: time.Now(), Plan: p.Checksum, Run: "r1", Step: id, Event: runner.EventEnd}
		switch id {
		case "etcd/snapshot":
			e.Snapshot = &runner.Snapshot{Path: filepath.Join(dir, "plan.snapshot", "etcd.db"), Revision: 7, SHA256: "ff"}
		case "lb/update/w1":
			e.Backups = map[string]string{"w1:/etc/kube-nginx/kube-nginx.conf": "/etc/kube-nginx/kube-nginx.conf.bak-20261130T210000Z"}
			al = append(al, line(runner.Change{Plan: p.Checksum, Step: id, Host: "w1", File: "/etc/kube-nginx/kube-nginx.conf", Action: "rewrite", BeforeSHA256: "aa", AfterSHA256: "bb"}))
		}
		jl = append(jl, line(runner.Entry{Time: time.Now(), Plan: p.Checksum, Run: "r1", Step: id, Event: runner.EventStart}), line(e))
	}
	if len(jl) > 0 {
		os.WriteFile(journal, []byte(strings.Join(jl, "\n")+"\n"), 0o600)
		os.WriteFile(audit, []byte(strings.Join(al, "\n")+"\n"), 0o600)
	}
	return dir, planPath, invPath
}

func TestUndoRefusedPastNoReturn(t *testing.T) {
	dir, planPath, invPath := undoFixture(t, "preflight", "etcd/snapshot", "lb/update/w1", "etcd/remove-member/m2")
	before := treeState(t, dir)
	out, errOut, code := run(t, "undo", planPath, "-i", invPath, "--yes")
	if code != exitRefused {
		t.Fatalf("exit %d, want %d (refused)\n%s", code, exitRefused, errOut)
	}
	for _, want := range []string{"etcd/remove-member/m2", filepath.Join(dir, "plan.snapshot", "etcd.db"), "revision 7", "etcdutl snapshot restore", "mastershrink apply " + planPath} {
		if !strings.Contains(errOut, want) {
			t.Errorf("refusal lacks %q:\n%s", want, errOut)
		}
	}
	if out != "" {
		t.Errorf("stdout on a refusal: %q", out)
	}
	if after := treeState(t, dir); after != before {
		t.Errorf("undo changed the folder")
	}
}

func TestUndoDryRunNamesBackups(t *testing.T) {
	_, planPath, invPath := undoFixture(t, "preflight", "etcd/snapshot", "lb/update/w1")
	out, errOut, code := run(t, "undo", planPath, "-i", invPath, "--dry-run")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"lb/update/w1", "restore /etc/kube-nginx/kube-nginx.conf from its backup, test it (nginx -t or haproxy -c), reload",
		"/etc/kube-nginx/kube-nginx.conf <- /etc/kube-nginx/kube-nginx.conf.bak-20261130T210000Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
}

func TestUndoUsage(t *testing.T) {
	_, planPath, invPath := undoFixture(t)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"undo", planPath}, exitUsage, "no inventory"},
		{[]string{"undo", "-i", invPath}, exitUsage, "accepts 1 arg"},
		// Nobody at a terminal to confirm: refused before anything is read.
		{[]string{"undo", planPath, "-i", invPath}, exitUsage, "--dry-run, then add --yes"},
		{[]string{"undo", planPath, "-i", invPath, "--yes"}, exitRefused, "apply never ran it"},
		// A plan file that is not there is the operator's input to fix, as a missing inventory is.
		{[]string{"undo", filepath.Join(filepath.Dir(planPath), "nope.json"), "-i", invPath, "--yes"}, exitUsage, "nope.json"},
	}
	for _, tc := range cases {
		_, errOut, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, want %d naming %q:\n%s", tc.args, code, tc.code, tc.want, errOut)
		}
	}
}
