package runner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mastershrink/mastershrink/plan"
)

// DefaultLBConcurrency is how many node proxies apply updates at once, in the proxy phase
// and when an apiserver is taken out of the proxies and put back. Each update is a few SSH
// round trips to its own node (read, write, nginx -t, reload, probe: 0.3-0.7 s), so the bound
// is set by this machine, not the nodes: 64 sessions take 1,000 nodes in 16 rounds (about
// 10 s), while the SSH connections, one per node, stay a few hundred KiB each. A jump host
// carries every session over one connection to it, so sshd's MaxStartups does not apply.
const DefaultLBConcurrency = 64

func (r *run) lbConcurrency() int {
	if r.opts.LBConcurrency > 0 {
		return r.opts.LBConcurrency
	}
	return DefaultLBConcurrency
}

// phaseItem is one step of a phase and its place in the plan.
type phaseItem struct {
	n  int // 1-based position in the plan, for the progress line
	st plan.Step
}

// phaseCounts are the progress of a phase.
type phaseCounts struct {
	done, failed, remaining int
}

func (c phaseCounts) String() string {
	return fmt.Sprintf("%d done, %d failed, %d remaining", c.done, c.failed, c.remaining)
}

// phaseRun is the outcome of runPhase.
type phaseRun struct {
	// results and errs are in the order of the items; a result with an empty Status was not
	// run (the phase stopped first).
	results []StepResult
	errs    []error
	// stopped is why the phase started no more items (the gate's error, or ctx's), or nil.
	stopped error
}

// runPhase runs do for every item, at most limit at once, starting them in plan order. A
// failed item does not stop the others: every node the phase can reach gets its update, and
// the failures are reported together after. An item ended is skipped (done returns true) without
// calling do. gate runs before each start; its error (a lost lock) or ctx's stops the phase
// from starting more items, while the ones running finish. onEnd is called after each item,
// with the counts, serialised.
func runPhase(ctx context.Context, items []phaseItem, limit int, ended func(string) bool,
	gate func(context.Context) error,
	do func(context.Context, phaseItem) (StepResult, error),
	onEnd func(phaseItem, StepResult, error, phaseCounts)) phaseRun {
	if limit < 1 {
		limit = 1
	}
	out := phaseRun{results: make([]StepResult, len(items)), errs: make([]error, len(items))}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		counts = phaseCounts{remaining: len(items)}
		sem    = make(chan struct{}, limit)
	)
	finish := func(i int, res StepResult, err error) {
		mu.Lock()
		defer mu.Unlock()
		out.results[i], out.errs[i] = res, err
		counts.remaining--
		if err != nil {
			counts.failed++
		} else {
			counts.done++
		}
		if onEnd != nil {
			onEnd(items[i], res, err, counts)
		}
	}
	for i, it := range items {
		if ended != nil && ended(it.st.ID) {
			finish(i, StepResult{ID: it.st.ID, Status: StatusAlready, Note: "ended in an earlier run (journal)"}, nil)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if err := ctx.Err(); err != nil {
			out.stopped = err
			break
		}
		if gate != nil {
			if err := gate(ctx); err != nil {
				<-sem
				out.stopped = fmt.Errorf("before step %s: %w", it.st.ID, err)
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := do(ctx, it)
			finish(i, res, err)
		}()
	}
	wg.Wait()
	return out
}

// lbPhase runs a run of consecutive lb/update steps as one phase, up to lbConcurrency at
// once. Each node's step is journaled, audited and printed on its own, as any step: a
// rerun skips the nodes whose step ended (in this plan's journal) and takes up the others.
// A failed node does not stop the others; the run stops after the phase, naming every node
// that failed.
func (r *run) lbPhase(ctx context.Context, items []phaseItem, sum *Summary) error {
	limit := min(r.lbConcurrency(), len(items))
	start := time.Now()
	if len(items) > 1 {
		r.prog.printf("Updating %d node proxies, %d at a time...\n", len(items), limit)
	}
	var (
		mu         sync.Mutex // guards r.history, r.warnings and counts while the phase runs
		counts     = phaseCounts{remaining: len(items)}
		journalErr error
	)
	stopBeat := heartbeatf(r.prog, func() string {
		mu.Lock()
		defer mu.Unlock()
		return "updating node proxies: " + counts.String()
	})
	// A step ended by an earlier run of this plan is not touched again: at a thousand nodes
	// a rerun after one failure would otherwise redo them all. The final check still probes
	// through every proxy. Read before the phase: its steps add to r.history.Ended.
	ended := map[string]bool{}
	for _, it := range items {
		ended[it.st.ID] = r.history.Ended[it.st.ID]
	}
	pr := runPhase(ctx, items, limit,
		func(id string) bool { return ended[id] },
		r.lock.Verify,
		func(ctx context.Context, it phaseItem) (StepResult, error) {
			return r.phaseStep(ctx, &mu, it)
		},
		func(it phaseItem, res StepResult, err error, c phaseCounts) {
			mu.Lock()
			counts = c
			mu.Unlock()
			if ended[it.st.ID] {
				r.prog.step(it.n, it.st.ID, statusAlready, 0, res.Note)
				if jerr := r.journal.Write(Entry{Step: it.st.ID, Event: EventSkip, Result: "already done: " + res.Note}); jerr != nil {
					mu.Lock()
					journalErr = errors.Join(journalErr, jerr)
					mu.Unlock()
				}
			}
		})
	stopBeat()

	var failed []string
	var errs []error
	for i, it := range items {
		res := pr.results[i]
		if res.Status == "" && pr.errs[i] == nil {
			continue // not started: the phase stopped
		}
		if pr.errs[i] != nil {
			res.ID, res.Status = it.st.ID, StatusFailed
		}
		sum.Steps = append(sum.Steps, res)
		if pr.errs[i] != nil {
			failed = append(failed, it.st.Host)
			errs = append(errs, pr.errs[i])
		}
	}
	c := counts
	if len(items) > 1 {
		r.prog.printf("Node proxies: %s, in %s.\n", c, formatDuration(time.Since(start)))
	}
	if pr.stopped != nil {
		errs = append(errs, pr.stopped)
	}
	if journalErr != nil {
		errs = append(errs, journalErr)
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return fmt.Errorf("%d of %d node proxies failed (%s); every other one that ran is updated: %w",
			len(failed), len(items), strings.Join(failed, ", "), errors.Join(errs...))
	}
	return errors.Join(errs...)
}

// phaseStep is step for one step of a concurrent phase: the same journal, audit and
// progress records, with the run's shared state (history, warnings) under mu and the phase's
// own heartbeat instead of one per step.
func (r *run) phaseStep(ctx context.Context, mu *sync.Mutex, it phaseItem) (StepResult, error) {
	st, n := it.st, it.n
	res := StepResult{ID: st.ID}
	start := time.Now()
	ex, err := r.executor(st)
	if err == nil && st.Risk == plan.Irreversible {
		// Not an LB step's risk; kept so that no step ever escapes the snapshot gate.
		err = r.checkSnapshot()
	}
	if err != nil {
		return r.fail(n, st, res, start, err)
	}
	if ex.done != nil {
		done, note, err := ex.done(ctx)
		if err != nil {
			return r.fail(n, st, res, start, fmt.Errorf("check whether done: %w", err))
		}
		if done {
			res.Status, res.Note, res.Duration = StatusAlready, note, time.Since(start)
			r.prog.step(n, st.ID, statusAlready, 0, note)
			if err := r.journal.Write(Entry{Step: st.ID, Event: EventSkip, Seconds: res.Duration.Seconds(), Result: "already done"}); err != nil {
				return res, err
			}
			crashAfter(st.ID)
			return res, nil
		}
	}
	if err := r.journal.Write(Entry{Step: st.ID, Event: EventStart}); err != nil {
		return res, err
	}
	stopCrash := crashIn(st.ID)
	out, err := ex.apply(ctx)
	stopCrash()
	res.Duration = time.Since(start)
	if err != nil {
		return r.fail(n, st, res, start, err)
	}
	for _, c := range out.changes {
		c.Step = st.ID
		if err := r.audit.Record(c); err != nil {
			return res, err
		}
	}
	status := statusDone
	switch {
	case out.already:
		status = statusAlready
	case len(out.warnings) > 0:
		status = statusDegraded
	}
	res.Status, res.Note = status, out.note
	if res.Status == statusDegraded {
		res.Status = StatusDone
	}
	mu.Lock()
	for _, w := range out.warnings {
		r.warnings = append(r.warnings, st.ID+": "+firstLine(w))
	}
	r.history.Ended[st.ID] = true
	mu.Unlock()
	if err := r.journal.Write(Entry{Step: st.ID, Event: EventEnd, Seconds: res.Duration.Seconds(), Result: status + optional(out.note),
		Backups: out.backups}); err != nil {
		return res, err
	}
	r.prog.step(n, st.ID, status, res.Duration, out.note)
	crashAfter(st.ID)
	pauseAfter(st.ID)
	return res, nil
}

// heartbeatf prints "still TEXT [00m20s elapsed]" every heartbeatEvery until stopped, TEXT
// asked of text each time: a phase's counts change while it runs.
func heartbeatf(p *progress, text func() string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.printf("        still %s [%s elapsed]\n", text(), formatElapsed(time.Since(start)))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
