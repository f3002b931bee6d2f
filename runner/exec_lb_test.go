package runner

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
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
	log, cmds := w1.Log(), commands(w1)
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
	// Already done: nginx runs the new config and answers through it.
	before := len(w1.Log())
	out, err = apply(t, f.r, st)
	if err != nil || !out.already {
		t.Fatalf("rerun: %v, already %v", err, out.already)
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
