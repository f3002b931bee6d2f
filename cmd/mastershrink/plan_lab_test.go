package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv"
)

// labState is everything `plan` may read on the lab's machines, to prove it changed nothing:
// checksums of every configuration file under the folders the layouts use (etcd's data and
// nginx's logs change on their own), the state of every kube unit,
// and the etcd member list.
func labState(t *testing.T, lab *testenv.Lab) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	state := map[string]string{}
	for _, m := range lab.Machines {
		out, err := lab.Exec(ctx, m.Name, "sh", "-c",
			"find /etc/systemd/system /etc/kubernetes /approot /etc/kube-lb -type f ! -path '*/data/*' ! -path '*/logs/*' ! -name '*.pid' -exec sha256sum {} + 2>/dev/null | sort; "+
				"systemctl list-units --all --no-legend --plain 'kube*' 'etcd*' | sort")
		if err != nil {
			t.Fatalf("state of %s: %v\n%s", m.Name, err, out)
		}
		state[m.Name] = string(out)
	}
	out, err := lab.Exec(ctx, "m1", "sh", "-c",
		"ETCDCTL_API=3 etcdctl --cacert /etc/kubernetes/ssl/ca.pem --cert /etc/kubernetes/ssl/etcd.pem --key /etc/kubernetes/ssl/etcd-key.pem --endpoints https://127.0.0.1:2379 member list")
	if err != nil {
		t.Fatalf("etcd member list: %v\n%s", err, out)
	}
	state["etcd members"] = string(out)
	return state
}

func TestLabPlanChangesNothing(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{})
	before := labState(t, lab)

	out := filepath.Join(t.TempDir(), "plan.json")
	var stdout, stderr bytes.Buffer
	cmd := newRootCmdWithDial(streams{In: strings.NewReader(""), Out: &stdout, ErrOut: &stderr}, lab.DialContext)
	cmd.SetArgs([]string{"plan", "-i", lab.Inventory, "--remove", "m2,m3", "--out", out, "--detailed-exitcode"})
	start := time.Now()
	err := cmd.ExecuteContext(context.Background())
	t.Logf("mastershrink plan took %s\n%s\n%s", time.Since(start).Round(time.Millisecond), stderr.String(), stdout.String())
	if code := exitCode(err); code != exitChanges {
		t.Fatalf("plan exit %d (%v), want %d (changes)", code, err, exitChanges)
	}

	text := stdout.String()
	for _, want := range []string{
		"etcd/snapshot", "apiserver/update/m1", "lb/update/m1", "lb/update/w1", "lb/update/w2",
		"components/retire/m2", "components/retire/m3", "etcd/move-leader",
		"etcd/remove-member/m2", "etcd/remove-member/m3", "etcd/stop/m2", "etcd/initial-cluster/m1",
		"certs/resign/etcd", "certs/resign/kubernetes", "point of no return",
		"quorum: members 3 -> 2", "quorum: members 2 -> 1",
		"+  --etcd-servers=https://10.88.0.11:2379 \\", "10.88.0.12:6443 max_fails=3 fail_timeout=30s down;",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("plan output lacks %q", want)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Decode(data, "")
	if err != nil {
		t.Fatalf("plan file: %v", err)
	}
	if len(p.Refusals) > 0 || p.PointOfNoReturn == "" {
		t.Errorf("plan file: refusals %v, point of no return %q", p.Refusals, p.PointOfNoReturn)
	}

	after := labState(t, lab)
	for name, b := range before {
		if after[name] != b {
			t.Errorf("plan changed %s:\nbefore:\n%s\nafter:\n%s", name, b, after[name])
		}
	}
}
