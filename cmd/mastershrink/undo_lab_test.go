package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/testenv"
)

// withoutBackups drops the backup files from a labState: undo keeps what apply wrote as a
// backup of its own, on purpose.
func withoutBackups(state map[string]string) map[string]string {
	bak := regexp.MustCompile(`(?m)^.*\.bak-[0-9TZ]+.*\n`)
	out := map[string]string{}
	for k, v := range state {
		out[k] = bak.ReplaceAllString(v, "")
	}
	return out
}

// undoState is labState without backups, plus each machine's proxy config, which
// labState leaves out with the rest of /approot/data.
func undoState(t *testing.T, lab *testenv.Lab) map[string]string {
	t.Helper()
	state := withoutBackups(labState(t, lab))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, m := range lab.Machines {
		out, err := lab.Exec(ctx, m.Name, "sha256sum", "/approot/data/k8s/kube-nginx/kube-nginx.conf")
		if err != nil {
			t.Fatalf("proxy config of %s: %v\n%s", m.Name, err, out)
		}
		state[m.Name+" proxy"] = string(out)
	}
	return state
}

// TestLabUndo applies the reversible part of a shrink (survivors' apiservers, every proxy,
// the leaving master's components), undoes it, and finds the lab as it was; then applies
// past the point of no return and finds undo refusing with the snapshot's path.
func TestLabUndo(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "msundo"})
	before := undoState(t, lab)

	planPath := filepath.Join(t.TempDir(), "plan.json")
	if _, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--remove", "m3", "--out", planPath); code != exitOK {
		t.Fatalf("plan exit %d\n%s", code, errOut)
	}
	_, errOut, code := cli(t, lab, "apply", planPath, "-i", lab.Inventory, "--only", "preflight,etcd/snapshot,apiserver/update,lb/update,components/retire")
	t.Logf("apply (reversible steps)\n%s", errOut)
	if code != exitOK {
		t.Fatalf("apply exit %d", code)
	}
	applied := undoState(t, lab)
	for _, k := range []string{"w1 proxy", "m3"} {
		if applied[k] == before[k] {
			t.Fatalf("apply changed nothing in %s: the test would prove nothing", k)
		}
	}

	out, errOut, code := cli(t, lab, "undo", planPath, "-i", lab.Inventory, "--yes")
	t.Logf("undo\n%s\n%s", out, errOut)
	if code != exitOK {
		t.Fatalf("undo exit %d", code)
	}
	after := undoState(t, lab)
	for name, b := range before {
		if after[name] != b {
			t.Errorf("undo left %s different:\nbefore:\n%s\nafter:\n%s", name, b, after[name])
		}
	}
	out, _, code = cli(t, lab, "status", "-i", lab.Inventory)
	if code != exitOK || !strings.Contains(out, "apiservers: 3 of 3 ready") || !strings.Contains(out, "disagreements with the inventory: none") {
		t.Errorf("status after undo (exit %d):\n%s", code, out)
	}

	// Past the point of no return, undo refuses and names the snapshot.
	planPath = filepath.Join(t.TempDir(), "plan.json")
	if _, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--remove", "m3", "--out", planPath); code != exitOK {
		t.Fatalf("plan exit %d\n%s", code, errOut)
	}
	if _, errOut, code := cli(t, lab, "apply", planPath, "-i", lab.Inventory, "--only", "preflight,etcd/snapshot,apiserver/update,lb/update,components/retire,etcd/move-leader,etcd/remove-member"); code != exitOK {
		t.Fatalf("apply through the removal exit %d\n%s", code, errOut)
	}
	_, errOut, code = cli(t, lab, "undo", planPath, "-i", lab.Inventory, "--yes")
	t.Logf("undo past the point of no return\n%s", errOut)
	if code != exitRefused || !strings.Contains(errOut, "etcd/remove-member/m3") || !strings.Contains(errOut, strings.TrimSuffix(planPath, ".json")+".snapshot/") {
		t.Errorf("undo past the point of no return: exit %d, want %d naming the removal and the snapshot", code, exitRefused)
	}
}
