package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mastershrink/mastershrink/plan"
)

// steps runs the plan's steps in order, the lock proven before each; a step the selection
// leaves out is journaled as skipped. Consecutive lb/update steps run as one concurrent
// phase (lbPhase), once the run of them ends.
func (r *run) steps(ctx context.Context, sel Selection, sum *Summary) error {
	var phase []phaseItem
	for i, st := range r.p.Steps {
		n := i + 1
		if len(phase) > 0 && st.Kind != plan.KindLBUpdate {
			if err := r.lbPhase(ctx, phase, sum); err != nil {
				return err
			}
			phase = nil
		}
		if st.Kind == plan.KindLBUpdate && sel.Runs(st) {
			phase = append(phase, phaseItem{n: n, st: st})
			continue
		}
		if err := r.lock.Verify(ctx); err != nil {
			return fmt.Errorf("before step %s: %w", st.ID, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("before step %s: %w", st.ID, err)
		}
		if !sel.Runs(st) {
			r.prog.step(n, st.ID, statusSkipped, 0, "not selected")
			sum.Steps = append(sum.Steps, StepResult{ID: st.ID, Status: StatusSkipped, Note: "not selected"})
			if err := r.journal.Write(Entry{Step: st.ID, Event: EventSkip, Result: "not selected"}); err != nil {
				return err
			}
			continue
		}
		res, err := r.step(ctx, n, st, nil)
		sum.Steps = append(sum.Steps, res)
		if err != nil {
			return err
		}
	}
	if len(phase) > 0 {
		return r.lbPhase(ctx, phase, sum)
	}
	return nil
}

// step runs one step: postcondition, apply, journal, audit, progress. shared is nil for a
// step run alone; in a concurrent phase (lbPhase) it guards the run's history and warnings,
// and the phase prints one heartbeat for all its steps instead of one per step.
func (r *run) step(ctx context.Context, n int, st plan.Step, shared *sync.Mutex) (StepResult, error) {
	locked := func(f func()) {
		if shared != nil {
			shared.Lock()
			defer shared.Unlock()
		}
		f()
	}
	res := StepResult{ID: st.ID}
	start := time.Now()
	ex, err := r.executor(st)
	if err == nil && st.Risk == plan.Irreversible {
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
			var snap *Snapshot
			locked(func() { snap = r.snapshotFor(st) })
			if err := r.journal.Write(Entry{Step: st.ID, Event: EventSkip, Seconds: res.Duration.Seconds(), Result: "already done", Snapshot: snap}); err != nil {
				return res, err
			}
			crashAfter(st.ID)
			pauseAfter(st.ID)
			return res, nil
		}
	}
	if err := r.journal.Write(Entry{Step: st.ID, Event: EventStart}); err != nil {
		return res, err
	}
	stopCrash := crashIn(st.ID)
	stopBeat := func() {}
	if shared == nil {
		stopBeat = r.prog.heartbeat(ex.phase)
	}
	out, err := ex.apply(ctx)
	stopBeat()
	stopCrash()
	res.Duration = time.Since(start)
	if err != nil {
		// What the step did before it failed (a wipe that removed some keys) is audited too.
		for _, c := range out.changes {
			c.Step = st.ID
			if aerr := r.audit.Record(c); aerr != nil {
				err = errors.Join(err, aerr)
			}
		}
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
	locked(func() {
		if out.snapshot != nil {
			r.history.Snapshot = out.snapshot
		}
		for _, w := range out.warnings {
			r.warnings = append(r.warnings, st.ID+": "+firstLine(w))
		}
		r.history.Ended[st.ID] = true
	})
	if err := r.journal.Write(Entry{Step: st.ID, Event: EventEnd, Seconds: res.Duration.Seconds(), Result: status + optional(out.note),
		Backups: out.backups, Snapshot: out.snapshot}); err != nil {
		return res, err
	}
	r.prog.step(n, st.ID, status, res.Duration, out.note)
	crashAfter(st.ID)
	pauseAfter(st.ID)
	return res, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func optional(note string) string {
	if note == "" {
		return ""
	}
	return ": " + note
}

// snapshotFor carries the snapshot forward in the journal when a later run finds the
// snapshot step already done, so the record of every run names it.
func (r *run) snapshotFor(st plan.Step) *Snapshot {
	if st.Kind == plan.KindSnapshot {
		return r.history.Snapshot
	}
	return nil
}

func (r *run) fail(n int, st plan.Step, res StepResult, start time.Time, err error) (StepResult, error) {
	res.Status, res.Duration = StatusFailed, time.Since(start)
	r.prog.step(n, st.ID, statusFailed, res.Duration, "")
	werr := fmt.Errorf("step %s: %w", st.ID, err)
	if jerr := r.journal.Write(Entry{Step: st.ID, Event: EventFail, Seconds: res.Duration.Seconds(), Error: err.Error()}); jerr != nil {
		return res, errors.Join(werr, jerr)
	}
	return res, werr
}
