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
	stopBeat := r.prog.heartbeatf(func() string {
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
			return r.step(ctx, it.n, it.st, &mu)
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
				// As for a step found done by its check: a crash test asking to stop after
				// this step stops here, whichever run ended it.
				crashAfter(it.st.ID)
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
