package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

func phaseItems(n int) []phaseItem {
	items := make([]phaseItem, n)
	for i := range items {
		host := fmt.Sprintf("w%03d", i)
		items[i] = phaseItem{n: i + 4, st: plan.Step{ID: "lb/update/" + host, Kind: plan.KindLBUpdate, Host: host}}
	}
	return items
}

// The phase runs every step once and never more than its bound at once; it does reach the
// bound (the steps wait for each other until limit of them are in). Results come back in
// plan order.
func TestRunPhaseBoundAndOrder(t *testing.T) {
	const limit, total = 4, 23
	items := phaseItems(total)
	var (
		mu             sync.Mutex
		started        []string
		inFlight, peak int
		full           = make(chan struct{})
		fullOnce       sync.Once
		stillToStart   = total
	)
	do := func(ctx context.Context, it phaseItem) (StepResult, error) {
		mu.Lock()
		started = append(started, it.st.ID)
		inFlight++
		stillToStart--
		peak = max(peak, inFlight)
		// Release everyone once the bound is reached, or once no more can come.
		if inFlight == limit || stillToStart == 0 {
			fullOnce.Do(func() { close(full) })
		}
		mu.Unlock()
		select {
		case <-full:
		case <-ctx.Done():
			return StepResult{}, ctx.Err()
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return StepResult{ID: it.st.ID, Status: StatusDone}, nil
	}
	var ends []phaseCounts
	pr := runPhase(t.Context(), items, limit, nil, nil, do, func(_ phaseItem, _ StepResult, _ error, c phaseCounts) {
		ends = append(ends, c)
	})
	if pr.stopped != nil {
		t.Fatalf("stopped: %v", pr.stopped)
	}
	if peak != limit {
		t.Errorf("peak concurrency %d, want the bound %d", peak, limit)
	}
	var want []string
	for _, it := range items {
		want = append(want, it.st.ID)
	}
	slices.Sort(started)
	if !slices.Equal(started, want) {
		t.Errorf("started %v, want each of %v once", started, want)
	}
	for i, res := range pr.results {
		if res.ID != items[i].st.ID || res.Status != StatusDone || pr.errs[i] != nil {
			t.Errorf("result %d = %+v, %v; want %s done", i, res, pr.errs[i], items[i].st.ID)
		}
	}
	if len(ends) != total || ends[total-1] != (phaseCounts{done: total}) {
		t.Errorf("progress counts end at %v after %d calls, want %d done after %d", ends[len(ends)-1], len(ends), total, total)
	}
	for i, c := range ends {
		if c.done+c.failed+c.remaining != total || c.remaining != total-i-1 {
			t.Errorf("counts after %d ends: %+v", i+1, c)
		}
	}
}

// With a bound of one, the steps run one after another in plan order.
func TestRunPhaseOrder(t *testing.T) {
	items := phaseItems(12)
	var ran []string
	runPhase(t.Context(), items, 1, nil, nil, func(ctx context.Context, it phaseItem) (StepResult, error) {
		ran = append(ran, it.st.ID) // no lock: a bound of one must mean one at a time (-race)
		return StepResult{ID: it.st.ID, Status: StatusDone}, nil
	}, nil)
	var want []string
	for _, it := range items {
		want = append(want, it.st.ID)
	}
	if !slices.Equal(ran, want) {
		t.Errorf("ran %v, want the plan's order %v", ran, want)
	}
}

// A failed node does not stop the others: every step runs, each failure is kept by item.
func TestRunPhaseCollectsFailures(t *testing.T) {
	items := phaseItems(10)
	bad := map[string]bool{"w002": true, "w007": true}
	var mu sync.Mutex
	ran := map[string]bool{}
	pr := runPhase(t.Context(), items, 3, nil, nil, func(ctx context.Context, it phaseItem) (StepResult, error) {
		mu.Lock()
		ran[it.st.Host] = true
		mu.Unlock()
		if bad[it.st.Host] {
			return StepResult{ID: it.st.ID, Status: StatusFailed}, fmt.Errorf("step %s: %s: nginx -t rejected the config", it.st.ID, it.st.Host)
		}
		return StepResult{ID: it.st.ID, Status: StatusDone}, nil
	}, nil)
	if len(ran) != len(items) {
		t.Errorf("%d of %d steps ran after failures", len(ran), len(items))
	}
	for i, it := range items {
		if got := pr.errs[i] != nil; got != bad[it.st.Host] {
			t.Errorf("%s: error %v, want failed=%v", it.st.Host, pr.errs[i], bad[it.st.Host])
		}
	}
}

// Steps that ended in an earlier run are reported already done and not run again.
func TestRunPhaseSkipsEnded(t *testing.T) {
	items := phaseItems(6)
	ended := map[string]bool{"lb/update/w000": true, "lb/update/w003": true}
	var mu sync.Mutex
	var ran []string
	pr := runPhase(t.Context(), items, 2, func(id string) bool { return ended[id] }, nil,
		func(ctx context.Context, it phaseItem) (StepResult, error) {
			mu.Lock()
			ran = append(ran, it.st.ID)
			mu.Unlock()
			return StepResult{ID: it.st.ID, Status: StatusDone}, nil
		}, nil)
	for _, id := range ran {
		if ended[id] {
			t.Errorf("%s ended in an earlier run, yet ran again", id)
		}
	}
	if len(ran) != len(items)-len(ended) {
		t.Errorf("ran %v, want every step but the ended ones", ran)
	}
	for i, it := range items {
		want := StatusDone
		if ended[it.st.ID] {
			want = StatusAlready
		}
		if pr.results[i].Status != want {
			t.Errorf("%s: status %q, want %q", it.st.ID, pr.results[i].Status, want)
		}
	}
}

// A gate that fails (the lock lost) stops the phase from starting more steps; the ones
// started finish, and the phase says why it stopped.
func TestRunPhaseGateStops(t *testing.T) {
	items := phaseItems(8)
	errLost := errors.New("lock lost")
	calls := 0
	gate := func(context.Context) error {
		calls++
		if calls > 3 {
			return errLost
		}
		return nil
	}
	var mu sync.Mutex
	ran := 0
	pr := runPhase(t.Context(), items, 2, nil, gate, func(ctx context.Context, it phaseItem) (StepResult, error) {
		mu.Lock()
		ran++
		mu.Unlock()
		return StepResult{ID: it.st.ID, Status: StatusDone}, nil
	}, nil)
	if ran != 3 {
		t.Errorf("%d steps ran, want the 3 the gate let through", ran)
	}
	if !errors.Is(pr.stopped, errLost) || !strings.Contains(pr.stopped.Error(), "lb/update/w003") {
		t.Errorf("stopped = %v, want the gate's error before lb/update/w003", pr.stopped)
	}
	for i := 3; i < len(items); i++ {
		if pr.results[i].Status != "" {
			t.Errorf("%s has status %q though the phase stopped before it", items[i].st.ID, pr.results[i].Status)
		}
	}
}

func TestNodeErrors(t *testing.T) {
	err := nodeErrors(map[string]error{"w9": errors.New("x"), "w10": errors.New("y")})
	if got := err.Error(); !strings.HasPrefix(got, "2 node proxies failed (w10, w9):") || !strings.Contains(got, "w9: x") {
		t.Errorf("nodeErrors = %q", got)
	}
}

// Old proxy workers are cut at most asideCutBatch per asideCutPause over a run, whoever asks:
// 2x+2 cuts at once take at least asideCutPause past the first batch, and every one is made.
func TestCutOldWorkersPaced(t *testing.T) {
	n := 2*asideCutBatch + 2
	var hosts []plan.Host
	for i := range n {
		hosts = append(hosts, plan.Host{Name: fmt.Sprintf("w%03d", i), Address: fmt.Sprintf("192.0.2.%d", i+1),
			Roles: []inventory.Role{inventory.RoleWorker}, Paths: cpPaths})
	}
	fc, p := newFakes(nil, nil, hosts...)
	for _, h := range fc.hosts {
		h.SetUnit("kube-nginx.service", host.UnitStatus{ActiveState: "active", SubState: "running", UnitFileState: "enabled", MainPID: 500})
		h.RunFunc = nginxShell(h, nil)
	}
	r := hostRun(fc, p)
	names := make([]string, 0, n)
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	start := time.Now()
	errs := host.ForEach(context.Background(), names, n, func(ctx context.Context, name string) error {
		return r.cutOldWorkers(ctx, name)
	})
	took := time.Since(start)
	if len(errs) > 0 {
		t.Fatalf("cuts failed: %v", errs)
	}
	// The first asideCutBatch go at once; the rest at asideCutBatch per asideCutPause.
	if least := asideCutPause * time.Duration(n-asideCutBatch-1) / asideCutBatch; took < least {
		t.Errorf("%d cuts took %s, under the pace's %s", n, took, least)
	}
	for _, name := range names {
		if !slices.ContainsFunc(fc.hosts[name].Commands(), func(c string) bool { return strings.Contains(c, "kill -TERM") }) {
			t.Errorf("%s: no cut among %v", name, fc.hosts[name].Commands())
		}
	}
}
