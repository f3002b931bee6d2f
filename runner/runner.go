package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/plan"
)

// ErrRefusedPlan means the plan carries refusals: it was never meant to be applied.
var ErrRefusedPlan = errors.New("the plan was refused when it was made")

// ErrNoSnapshot means an irreversible step was reached without a verified snapshot of this
// plan in the journal.
var ErrNoSnapshot = errors.New("no verified etcd snapshot of this plan in the journal")

// DefaultSnapshotMaxAge bounds the age of the snapshot that gates the irreversible steps: a
// resume a day later must not rely on yesterday's data.
const DefaultSnapshotMaxAge = 15 * time.Minute

// ErrPreflight means the cluster is not in a state the plan may be applied to.
var ErrPreflight = errors.New("preflight check failed")

// Options say what to apply and where to keep the records.
type Options struct {
	// PlanPath is the plan file; the journal, audit log and snapshot go next to it by default.
	PlanPath string
	// Plan is the decoded plan; nil reads and checks PlanPath.
	Plan *plan.Plan
	// Cluster reaches the cluster (from the inventory).
	Cluster *observe.Cluster
	// Only and Skip select steps by ID or ID prefix; unknown names fail before anything runs.
	Only, Skip []string
	// Progress receives a line per step, heartbeats and the summary (stderr).
	Progress io.Writer
	// Terminal colours the progress; Verbose adds the executors' own detail lines.
	Terminal, Verbose bool
	// JournalPath defaults to PLAN.journal.jsonl, AuditPath to PLAN.audit.jsonl, SnapshotDir to
	// PLAN.snapshot/.
	JournalPath, AuditPath, SnapshotDir string
	// LockTTL is the lease of the cluster lock (DefaultLockTTL).
	LockTTL time.Duration
	// SnapshotMaxAge is how old a snapshot of this plan may be and still gate the irreversible
	// steps (DefaultSnapshotMaxAge); an older one is taken again.
	SnapshotMaxAge time.Duration
	// ToolVersion is this mastershrink's version: a plan of another version is refused, and a
	// fresh plan made with it for the fingerprint check.
	ToolVersion string
	// LBConcurrency bounds how many node proxies are updated at once, in the proxy phase and
	// when an apiserver is taken out of the proxies for its restart (DefaultLBConcurrency).
	LBConcurrency int
}

// StepResult is what happened to one step in this run.
type StepResult struct {
	ID       string        `json:"id"`
	Status   string        `json:"status"`
	Duration time.Duration `json:"duration"`
	Note     string        `json:"note,omitempty"`
}

// Summary is the outcome of a run.
type Summary struct {
	Steps    []StepResult  `json:"steps"`
	Duration time.Duration `json:"duration"`
	// Resumed is true when an earlier run of the plan had started changing the cluster.
	Resumed  bool      `json:"resumed"`
	Journal  string    `json:"journal"`
	Audit    string    `json:"audit"`
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// Count returns how many steps ended with status.
func (s Summary) Count(status string) int {
	n := 0
	for _, r := range s.Steps {
		if r.Status == status {
			n++
		}
	}
	return n
}

// Statuses of StepResult.
const (
	StatusDone    = statusDone
	StatusAlready = statusAlready
	StatusSkipped = statusSkipped
	StatusFailed  = statusFailed
)

func (o *Options) defaults() {
	if abs, err := filepath.Abs(o.PlanPath); err == nil {
		o.PlanPath = abs
	}
	// One place says where a plan's records are, for apply and undo alike (RecordPaths); the
	// snapshot gets a folder of its own, made 0700: it holds every Secret of the cluster, and
	// the plan's folder is often a shared working directory.
	journal, audit, snapshots := RecordPaths(o.PlanPath)
	if o.JournalPath == "" {
		o.JournalPath = journal
	}
	if o.AuditPath == "" {
		o.AuditPath = audit
	}
	if o.SnapshotDir == "" {
		o.SnapshotDir = snapshots
	}
	if o.LockTTL <= 0 {
		o.LockTTL = DefaultLockTTL
	}
	if o.SnapshotMaxAge <= 0 {
		o.SnapshotMaxAge = DefaultSnapshotMaxAge
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// LoadPlan reads a plan file and refuses one that was edited, made by another version of the
// tool, or refused when it was made.
func LoadPlan(path, toolVersion string) (*plan.Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	p, err := plan.Decode(data, toolVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(p.Refusals) > 0 {
		return nil, fmt.Errorf("%s: %w: %s", path, ErrRefusedPlan, p.Refusals[0])
	}
	if err := plan.CheckKinds(p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// readOnly steps change nothing the cluster serves from: an earlier run that got only this
// far leaves the fingerprint valid.
func readOnly(p *plan.Plan) func(id string) bool {
	return func(id string) bool {
		s, ok := p.Step(id)
		if !ok {
			return false
		}
		k, known := plan.Kind(s.Kind)
		return known && k.ReadOnly
	}
}

// run is the state of one Run.
type run struct {
	opts Options
	p    *plan.Plan
	// c is what the executors use of the cluster; cluster is the same, for observe.Gather.
	c        clusterAPI
	cluster  *observe.Cluster
	prog     *progress
	journal  *Journal
	audit    *Audit
	history  History
	lock     *Lock
	id       string
	warnings []string
}

// Run applies the plan: it validates the step selection, takes the cluster lock, refuses a
// stale plan (unless an earlier run of it already began changing the cluster, in which case
// each step's postcondition decides), then runs the steps in order, each skipped when its
// postcondition already holds. The error of a failed step is wrapped with its ID.
func Run(ctx context.Context, opts Options) (Summary, error) {
	start := time.Now()
	opts.defaults()
	var sum Summary
	p := opts.Plan
	if p == nil {
		var err error
		if p, err = LoadPlan(opts.PlanPath, opts.ToolVersion); err != nil {
			return sum, err
		}
	}
	if len(p.Refusals) > 0 {
		return sum, fmt.Errorf("%w: %s", ErrRefusedPlan, p.Refusals[0])
	}
	sel, err := Select(p, opts.Only, opts.Skip)
	if err != nil {
		return sum, err
	}
	if opts.Cluster == nil {
		return sum, errors.New("apply: no cluster connection")
	}
	sum.Journal, sum.Audit = opts.JournalPath, opts.AuditPath
	var ids []string
	for _, s := range p.Steps {
		ids = append(ids, s.ID)
	}
	r := &run{opts: opts, p: p, c: opts.Cluster, cluster: opts.Cluster, prog: newProgress(opts.Progress, opts.Terminal, ids),
		id: fmt.Sprintf("%s-%d", time.Now().UTC().Format("20060102T150405Z"), os.Getpid())}
	if err := plan.CheckKinds(p); err != nil {
		return sum, err
	}
	if r.history, err = ReadJournal(opts.JournalPath, p.Checksum); err != nil {
		return sum, err
	}
	if err := sel.CheckPrerequisites(p, r.history.Ended); err != nil {
		return sum, err
	}
	sum.Resumed = r.history.Resumed(readOnly(p))

	kv, err := r.c.EtcdKV(ctx)
	if err != nil {
		return sum, fmt.Errorf("connect to etcd for the lock: %w", err)
	}
	defer kv.Close()
	if r.lock, err = AcquireLock(ctx, kv, p.Checksum, opts.LockTTL, opts.Progress); err != nil {
		return sum, err
	}
	defer func() {
		if err := r.lock.Release(ctx); err != nil {
			r.prog.printf("warning: %v (it expires by itself within %s)\n", err, opts.LockTTL)
		}
	}()
	r.prog.printf("Lock %s taken for plan %s.\n", LockKey, short(p.Checksum))

	if err := r.checkFresh(ctx, sel, sum.Resumed); err != nil {
		return sum, err
	}

	if r.journal, err = OpenJournal(opts.JournalPath, p.Checksum, r.id); err != nil {
		return sum, err
	}
	defer r.journal.Close()
	if r.audit, err = OpenAudit(opts.AuditPath, p.Checksum, r.id); err != nil {
		return sum, err
	}
	defer r.audit.Close()
	if err := r.journal.Write(Entry{Event: EventRunStart, Result: "plan " + opts.PlanPath}); err != nil {
		return sum, err
	}

	runErr := r.steps(ctx, sel, &sum)
	r.warnOffline()
	sum.Duration = time.Since(start)
	sum.Snapshot = r.history.Snapshot
	sum.Warnings = r.warnings
	end := Entry{Event: EventRunEnd, Seconds: sum.Duration.Seconds(), Result: "ok"}
	if runErr != nil {
		end.Result, end.Error = "failed", runErr.Error()
	}
	if err := r.journal.Write(end); err != nil && runErr == nil {
		runErr = err
	}
	r.summary(sum, runErr)
	return sum, runErr
}

// warnOffline says, for every host planned --offline, that nothing was done on it: the plan
// has no step there (its units could not be read), so no step's own warning would say so.
func (r *run) warnOffline() {
	for _, name := range r.p.Target.Offline {
		said := false
		for _, w := range r.warnings {
			said = said || strings.Contains(w, name+" is offline")
		}
		if !said {
			r.warnings = append(r.warnings, fmt.Sprintf("%s is offline: its host-side steps were skipped; if it comes back, stop and disable etcd and the control plane there by hand before it rejoins", name))
		}
	}
}

func (r *run) steps(ctx context.Context, sel Selection, sum *Summary) error {
	// Consecutive lb/update steps run as one concurrent phase (lbPhase), once the run of
	// them ends.
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

func (r *run) summary(sum Summary, err error) {
	var parts []string
	for _, s := range []string{StatusDone, StatusAlready, StatusSkipped, StatusFailed} {
		if n := sum.Count(s); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, strings.ToLower(s)))
		}
	}
	verb := "Applied"
	if err != nil {
		verb = "Stopped"
	}
	r.prog.printf("\n%s plan %s in %s: %s.\n", verb, short(r.p.Checksum), formatDuration(sum.Duration), strings.Join(parts, ", "))
	if sum.Snapshot != nil {
		r.prog.printf("  snapshot: %s (revision %d, %d keys; it contains every Secret of the cluster: keep it 0600, delete it when done)\n",
			sum.Snapshot.Path, sum.Snapshot.Revision, sum.Snapshot.Keys)
	}
	r.prog.printf("  journal:  %s\n  audit:    %s\n", sum.Journal, sum.Audit)
	if len(sum.Warnings) > 0 {
		r.prog.printf("  %d warning(s):\n", len(sum.Warnings))
		for _, w := range sum.Warnings {
			r.prog.printf("    - %s\n", w)
		}
	}
	if err != nil {
		r.prog.printf("  A rerun of the same command resumes from the failed step once its cause is fixed.\n")
	}
}
