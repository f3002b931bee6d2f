package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/runner"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

const seedKeys = 1000

// cli runs mastershrink in-process with sockets in the lab namespace.
func cli(t *testing.T, lab *testenv.Lab, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmdWithDial(streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, lab.DialContext)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), exitCode(err)
}

// prepare writes the seed keys and a deployment spread over both workers, so the drain of w2
// has pods to move.
func prepare(t *testing.T, lab *testenv.Lab) kubernetes.Interface {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ec := labEtcd(t, lab)
	defer ec.Close()
	if err := seed.WriteKeys(ctx, ec, "/seed/", seedKeys); err != nil {
		t.Fatal(err)
	}
	cfg, err := lab.RESTConfig("")
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.EnsureNamespace(ctx, kube, "web"); err != nil {
		t.Fatal(err)
	}
	if err := seed.CreateDeployment(ctx, kube, "web", "web", 4, []string{"w1", "w2"}, false); err != nil {
		t.Fatal(err)
	}
	if err := seed.WaitPodsRunning(ctx, kube, "web", 4); err != nil {
		t.Fatal(err)
	}
	return kube
}

func makeLabPlan(t *testing.T, lab *testenv.Lab, dir string) (string, *plan.Plan) {
	t.Helper()
	path := filepath.Join(dir, "plan.json")
	_, p := planLab(t, lab, path, "--remove", "m2,m3", "--drain", "w2")
	return path, p
}

// checkShrunk asserts the end state of the 3-to-1 shrink with w2 drained.
func checkShrunk(t *testing.T, lab *testenv.Lab, kube kubernetes.Interface, etcdGone []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m1, _ := lab.Machine("m1")
	if members := m1EtcdAfterShrink(ctx, t, lab); !slices.Equal(members, []string{m1.Address}) {
		t.Errorf("etcd members %v, want only %s", members, m1.Address)
	}
	for _, name := range []string{"m2", "m3"} {
		// The leaving host's own proxy too: it would keep routing to the old apiservers.
		units := "kube-apiserver kube-controller-manager kube-scheduler kube-nginx"
		for _, u := range etcdGone {
			if u == name {
				units += " kube-etcd"
			}
		}
		out, _ := lab.Exec(ctx, name, "sh", "-c", "for u in "+units+"; do echo $u $(systemctl is-active $u) $(systemctl is-enabled $u); done")
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(l); len(f) != 3 || f[1] == "active" || f[2] == "enabled" {
				t.Errorf("%s: %s, want inactive and disabled", name, l)
			}
		}
	}
	for _, name := range []string{"m1", "w1", "w2"} {
		out, err := lab.Exec(ctx, name, "cat", "/approot/data/k8s/kube-nginx/kube-nginx.conf")
		if err != nil {
			t.Fatal(err)
		}
		var live []string
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "server" && strings.Contains(f[1], ":") && !strings.HasSuffix(l, "down;") {
				live = append(live, f[1])
			}
		}
		if strings.Join(live, ",") != m1.Address+":6443" {
			t.Errorf("proxy on %s routes to %v, want only m1", name, live)
		}
	}
	m1CertsNameOnlyM1(ctx, t, lab, "/etc/kubernetes/ssl/etcd.pem", "/etc/kubernetes/ssl/kubernetes.pem")
	// The drained worker's cleanup backup holds its kubelet's keys: 0600 in a 0700 folder.
	modes, err := lab.Exec(ctx, "w2", "sh", "-c", "stat -c '%a %n' /var/backups/mastershrink /var/backups/mastershrink/*.tar.gz")
	if err != nil || !strings.Contains(string(modes), "700 /var/backups/mastershrink\n") || !strings.Contains(string(modes), "600 /var/backups/mastershrink/") ||
		strings.Contains(string(modes), "644 ") {
		t.Errorf("cleanup backup on w2: %v\n%s", err, modes)
	}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Name == "w2" {
			t.Error("Node w2 still exists")
		}
	}
	// The drain leaves no pod on w2. A scheduler whose cache has not yet seen the cordon or
	// the deletion may still bind a replacement to w2 (the Binding API does not check that a
	// Node exists); the pod garbage collector then removes it and it is scheduled again. So
	// the end state is polled for, with a deadline that covers that collector.
	var left []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pods, err := kube.CoreV1().Pods("web").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		left = nil
		for _, p := range pods.Items {
			if p.Spec.NodeName == "w2" && p.DeletionTimestamp == nil {
				left = append(left, fmt.Sprintf("%s (created %s, phase %s)", p.Name, p.CreationTimestamp.UTC().Format(time.RFC3339), p.Status.Phase))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, p := range left {
		t.Errorf("pod %s still on the drained w2", p)
	}
}

// TestLabApply is the whole 3-to-1 shrink of seed 003 plus w2 drained, with the prober
// running; before it, in the same lab, an edited plan and a plan under another apply's lock
// are refused without changing anything.
func TestLabApply(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{})
	kube := prepare(t, lab)
	dir := t.TempDir()
	path, p := makeLabPlan(t, lab, dir)
	before := labState(t, lab)

	t.Run("tampered plan refused", func(t *testing.T) {
		data, _ := os.ReadFile(path)
		bad := filepath.Join(dir, "tampered.json")
		os.WriteFile(bad, bytes.Replace(data, []byte(`"lb_mode": "down"`), []byte(`"lb_mode": "remove"`), 1), 0o600)
		_, errOut, code := cli(t, lab, "apply", bad, "-i", lab.Inventory)
		if code != exitRefused || !strings.Contains(errOut, "edited") {
			t.Errorf("tampered plan: exit %d, want %d naming the edit:\n%s", code, exitRefused, errOut)
		}
	})

	t.Run("second apply refused", func(t *testing.T) {
		ec := labEtcd(t, lab)
		defer ec.Close()
		// The other apply: a holder of the lock, as a running apply keeps it.
		other, err := runner.AcquireLock(context.Background(), ec, "sha256:other", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, errOut, code := cli(t, lab, "apply", path, "-i", lab.Inventory)
		other.Release(context.Background())
		host, _ := os.Hostname()
		if code != exitRefused || !strings.Contains(errOut, "holds the cluster lock") || !strings.Contains(errOut, host+" pid ") || !strings.Contains(errOut, "since") {
			t.Errorf("second apply: exit %d, want %d naming the holder:\n%s", code, exitRefused, errOut)
		}
	})

	if after := labState(t, lab); !sameState(t, before, after) {
		t.Fatal("a refused apply changed the lab")
	}

	t.Run("shrink", func(t *testing.T) {
		_, errOut := applyProbed(t, lab, path)
		if !strings.Contains(errOut, "the backup w2:/var/backups/mastershrink/") || !strings.Contains(errOut, "private keys") {
			t.Errorf("apply does not report what the cleanup backup holds:\n%s", errOut)
		}
		checkShrunk(t, lab, kube, []string{"m2", "m3"})
		checkRecords(t, path, p)
	})
}

// checkRecords asserts that the journal ends the plan's steps and the audit log names the
// changes with their checksums.
func checkRecords(t *testing.T, path string, p *plan.Plan) {
	t.Helper()
	base := strings.TrimSuffix(path, ".json")
	h, err := runner.ReadJournal(base+".journal.jsonl", p.Checksum)
	if err != nil {
		t.Fatal(err)
	}
	if h.Snapshot == nil || h.Snapshot.Keys < seedKeys {
		t.Errorf("journal snapshot %+v, want one with at least %d keys", h.Snapshot, seedKeys)
	}
	audit, err := os.ReadFile(base + ".audit.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var members, rewrites int
	for _, l := range strings.Split(strings.TrimSpace(string(audit)), "\n") {
		var c runner.Change
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if c.Member != "" && c.Action == "member-remove" {
			members++
		}
		if c.File != "" && c.BeforeSHA256 != "" && c.AfterSHA256 != "" && c.BeforeSHA256 != c.AfterSHA256 {
			rewrites++
		}
	}
	if members != 2 || rewrites < 5 {
		t.Errorf("audit log: %d member removals, %d file changes with checksums:\n%s", members, rewrites, audit)
	}
	// No private key or credential in what apply leaves next to the plan.
	for _, f := range []string{path, base + ".journal.jsonl", base + ".audit.jsonl"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"client-key-data", "PRIVATE KEY"} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds %q", f, secret)
			}
		}
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600 (%v)", f, st.Mode().Perm(), err)
		}
	}
}

func sameState(t *testing.T, before, after map[string]string) bool {
	t.Helper()
	same := true
	for name, b := range before {
		if after[name] != b {
			t.Errorf("%s changed:\nbefore:\n%s\nafter:\n%s", name, b, after[name])
			same = false
		}
	}
	return same
}

// TestLabApplyCrashResume: a plan gone stale (a member removed by hand) is refused with
// nothing changed; then the shrink is run by the built binary, SIGKILLed at every step
// boundary in turn and once in the middle of the apiserver restart, each rerun continuing,
// until it completes with the same end state as TestLabApply.
func TestLabApplyCrashResume(t *testing.T) {
	testenv.RequireLab(t)
	bin := filepath.Join(t.TempDir(), "mastershrink")
	if out, err := exec.Command("go", "build", "-tags", "faultinject", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	lab := testenv.StartLab(t, testenv.Options{Name: "mscrash"})
	kube := prepare(t, lab)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	t.Run("stale plan refused", func(t *testing.T) {
		path, _ := makeLabPlan(t, lab, t.TempDir())
		// The operator removes m3 by hand (and stops its etcd, as seed 003 does).
		etcdctl := "ETCDCTL_API=3 etcdctl --cacert /etc/kubernetes/ssl/ca.pem --cert /etc/kubernetes/ssl/etcd.pem --key /etc/kubernetes/ssl/etcd-key.pem --endpoints https://127.0.0.1:2379"
		if out, err := lab.Exec(ctx, "m1", "sh", "-c", etcdctl+" member remove $("+etcdctl+" member list | grep 10.88.0.13 | cut -d, -f1)"); err != nil {
			t.Fatalf("member remove by hand: %v\n%s", err, out)
		}
		if out, err := lab.Exec(ctx, "m3", "sh", "-c", "systemctl disable --now kube-etcd"); err != nil {
			t.Fatalf("stop etcd on m3: %v\n%s", err, out)
		}
		before := labState(t, lab)
		_, errOut, code := cli(t, lab, "apply", path, "-i", lab.Inventory)
		if code != exitRefused || !strings.Contains(errOut, "etcd member 10.88.0.13") || !strings.Contains(errOut, "is gone since the plan was made") {
			t.Errorf("stale plan: exit %d, want %d naming the member:\n%s", code, exitRefused, errOut)
		}
		sameState(t, before, labState(t, lab))
	})

	path, p := makeLabPlan(t, lab, dir)
	netns := filepath.Base(lab.NetNS)
	apply := func(env ...string) (string, error) {
		c := exec.CommandContext(ctx, "ip", "netns", "exec", netns, bin, "apply", path, "-i", lab.Inventory)
		c.Env = append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	killed := func(err error) bool {
		ee, ok := err.(*exec.ExitError)
		return ok && strings.Contains(ee.String(), "killed")
	}
	var runs []string
	for i, st := range p.Steps {
		if st.Kind == plan.KindAPIServerRewrite {
			out, err := apply("MASTERSHRINK_CRASH_IN="+st.ID, "MASTERSHRINK_CRASH_IN_DELAY=4s")
			if !killed(err) {
				t.Fatalf("crash in %s: %v\n%s", st.ID, err, out)
			}
			runs = append(runs, "in "+st.ID)
		}
		if i == len(p.Steps)-1 {
			break
		}
		out, err := apply("MASTERSHRINK_CRASH_AFTER=" + st.ID)
		if !killed(err) {
			t.Fatalf("crash after %s: %v\n%s", st.ID, err, out)
		}
		if !strings.Contains(out, st.ID) {
			t.Errorf("run crashed after %s does not mention it:\n%s", st.ID, out)
		}
		runs = append(runs, "after "+st.ID)
	}
	out, err := apply()
	t.Logf("crashed %d times (%s); last run:\n%s", len(runs), strings.Join(runs, ", "), out)
	if err != nil {
		t.Fatalf("final apply: %v", err)
	}
	checkShrunk(t, lab, kube, []string{"m2"})
}
