package runner

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv/etcdtest"
)

// lbUpdate is w1's lb/update step: m3 marked down, as the planner writes it.
func (f *cpFixture) lbUpdate(t *testing.T) plan.Step {
	t.Helper()
	files, err := lb.Rewrite(f.p.Facts.LB["w1"], []string{"192.0.2.3:6443"}, lb.MarkDown)
	if err != nil {
		t.Fatal(err)
	}
	return mkStep(plan.KindLBUpdate, "w1", plan.LBUpdateParams{Leaving: []string{"192.0.2.3:6443"}, Mode: "down"}, files...)
}

// lb/update on a worker: the config rewritten, tested, reloaded, the old workers cut and the
// apiserver probed through it; a rerun finds nginx on the new config and changes nothing.
func TestExecutorLBUpdate(t *testing.T) {
	f := newCPFixture(t)
	st := f.lbUpdate(t)
	w1 := f.fc.hosts["w1"]
	out, err := apply(t, f.r, st)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := w1.File(nginxConfPath); got != st.Files[0].After {
		t.Errorf("config after the step:\n%s", got)
	}
	log, cmds := w1.Log(), w1.Commands()
	write, test, reload := slices.Index(log, "write "+nginxConfPath), slices.Index(log, "run nginx -c "+nginxConfPath+" -t"), slices.Index(log, "reload kube-nginx.service")
	if write < 0 || test < write || reload < test {
		t.Errorf("w1 did %v, want write, nginx -t, reload in that order", log)
	}
	if !slices.ContainsFunc(cmds, func(c string) bool { return strings.Contains(c, "kill -TERM") }) {
		t.Errorf("old workers not cut on a worker: %v", cmds)
	}
	if out.already || out.backups["w1:"+nginxConfPath] == "" || len(out.changes) != 2 {
		t.Errorf("outcome %+v", out)
	}
	if n := w1.Reads(nginxConfPath); n != 0 {
		t.Errorf("the config was read %d times: the write checks the planned content on the node", n)
	}
	// Already done: nginx runs the new config and answers through it. The guess that the file
	// holds the planned content is wrong there, and the config is read.
	before := len(w1.Log())
	out, err = apply(t, f.r, st)
	if err != nil || !out.already {
		t.Fatalf("rerun: %v, already %v", err, out.already)
	}
	if w1.Reads(nginxConfPath) == 0 {
		t.Error("the rerun did not read the config")
	}
	if slices.ContainsFunc(w1.Log()[before:], func(l string) bool { return strings.HasPrefix(l, "write ") || strings.HasPrefix(l, "reload ") }) {
		t.Errorf("the rerun changed something: %v", w1.Log()[before:])
	}
}

// lb/update refused: nginx -t rejects the new config (written back, nginx not reloaded), or
// the config changed since the plan (untouched).
func TestExecutorLBUpdateFailures(t *testing.T) {
	f := newCPFixture(t)
	st := f.lbUpdate(t)
	w1 := f.fc.hosts["w1"]
	w1.RunFunc = nginxShell(w1, exitWith("w1", 1, "nginx: [emerg] host not found in upstream \"x\"\nnginx: configuration file test failed"))
	_, err := apply(t, f.r, st)
	if err == nil || !strings.Contains(err.Error(), "w1") || !strings.Contains(err.Error(), "host not found in upstream") {
		t.Errorf("rejected config: %v", err)
	}
	if got, _ := w1.File(nginxConfPath); got != st.Files[0].Before {
		t.Errorf("a rejected config was left in place:\n%s", got)
	}
	if slices.Contains(w1.Log(), "reload kube-nginx.service") {
		t.Errorf("nginx reloaded on a rejected config: %v", w1.Log())
	}

	w1.RunFunc = nginxShell(w1, nil)
	w1.SetFile(nginxConfPath, st.Files[0].Before+"# edited\n")
	before := len(w1.Log())
	if _, err := apply(t, f.r, st); !errors.Is(err, lb.ErrDrift) {
		t.Errorf("drifted config: %v, want lb.ErrDrift", err)
	}
	if l := w1.Log()[before:]; len(l) != 0 {
		t.Errorf("a drifted config was acted on: %v", l)
	}
}

// lb/stop fails naming the unit when systemd will not stop it, and is then not done.
func TestExecutorLBStopFails(t *testing.T) {
	f := newCPFixture(t)
	w1 := f.fc.hosts["w1"]
	st := mkStep(plan.KindLBStop, "w1", plan.LBStopParams{Unit: "kube-nginx.service"})
	refusedBySystemd(t, f.r, st, w1, "stop", "", "kube-nginx")
	w1.SetUnit("kube-nginx.service", host.UnitStatus{LoadState: "not-found"})
	if !doneOf(t, f.r, st) {
		t.Error("a proxy unit systemd does not know is not done")
	}
}

// The proxy phase runs the lb/update steps together: a node whose nginx rejects its config
// fails alone (the others are updated, journaled and audited), the run names it; a rerun
// leaves the ended node alone and takes up the failed one.
func TestLBPhase(t *testing.T) {
	worker := []inventory.Role{inventory.RoleWorker}
	fc, p := newFakes(nil, nil, plan.Host{Name: "w1", Address: "192.0.2.11", Roles: worker, Paths: cpPaths},
		plan.Host{Name: "w2", Address: "192.0.2.12", Roles: worker, Paths: cpPaths})
	p.Facts.LB = map[string]lb.NodeConfig{}
	var items []phaseItem
	for i, name := range []string{"w1", "w2"} {
		z, cfg := serveProxy(t, fc.hosts[name], cpServers)
		p.Facts.Hosts[i].Paths.NginxListen = z.Addr()
		p.Facts.LB[name] = cfg
		files, err := lb.Rewrite(cfg, []string{"192.0.2.3:6443"}, lb.MarkDown)
		if err != nil {
			t.Fatal(err)
		}
		st := mkStep(plan.KindLBUpdate, name, plan.LBUpdateParams{Leaving: []string{"192.0.2.3:6443"}, Mode: "down"}, files...)
		p.Steps = append(p.Steps, st)
		items = append(items, phaseItem{n: i + 1, st: st})
	}
	w2 := fc.hosts["w2"]
	w2.RunFunc = nginxShell(w2, exitWith("w2", 1, "nginx: [emerg] unexpected \"}\""))

	ec := etcdtest.Start(t, 1)
	ctx := ctxT(t)
	r := hostRun(fc, p)
	dir := journaled(t, r)
	var err error
	if r.lock, err = AcquireLock(ctx, ec.Client(t), "sha256:x", 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	defer r.lock.Release(context.Background())

	var sum Summary
	err = r.lbPhase(ctx, items, &sum)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 node proxies failed (w2)") || !strings.Contains(err.Error(), "unexpected") {
		t.Fatalf("phase with w2 rejecting its config: %v", err)
	}
	if len(sum.Steps) != 2 || !r.history.Ended["lb/update/w1"] || r.history.Ended["lb/update/w2"] {
		t.Errorf("summary %+v, ended %v", sum.Steps, r.history.Ended)
	}
	if got, _ := fc.hosts["w1"].File(nginxConfPath); got != p.Steps[0].Files[0].After {
		t.Error("w1 not updated because w2 failed")
	}
	audit, _ := os.ReadFile(dir + "/audit.jsonl")
	if !strings.Contains(string(audit), `"step":"lb/update/w1"`) || strings.Contains(string(audit), `"step":"lb/update/w2"`) {
		t.Errorf("audit log:\n%s", audit)
	}

	w2.RunFunc = nginxShell(w2, nil)
	before := len(fc.hosts["w1"].Log())
	sum = Summary{}
	if err := r.lbPhase(ctx, items, &sum); err != nil {
		t.Fatal(err)
	}
	if l := fc.hosts["w1"].Log()[before:]; len(l) != 0 {
		t.Errorf("the rerun touched w1, whose step ended: %v", l)
	}
	if got, _ := w2.File(nginxConfPath); got != p.Steps[1].Files[0].After || !r.history.Ended["lb/update/w2"] {
		t.Error("the rerun did not update w2")
	}
	journal, _ := os.ReadFile(dir + "/journal.jsonl")
	if !strings.Contains(string(journal), "already done") {
		t.Errorf("the rerun did not journal w1 as already done:\n%s", journal)
	}
}
