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
	"golang.org/x/time/rate"
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
	// lbExecs are the node proxies' executors by node (*lb.Executor), each remembering what
	// it learnt of its node for the later fan-outs of the run.
	lbExecs sync.Map
	// sel is the run's step selection (--only, --skip).
	sel Selection
	// staged are the nodes whose proxy runs without a restarted apiserver until their
	// lb/update step reloads it (putBack), with that apiserver's address.
	staged sync.Map
	// cutPace paces the ends of old proxy workers over the run (see asideCutBatch).
	cutPace     *rate.Limiter
	cutPaceOnce sync.Once
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
		id: fmt.Sprintf("%s-%d", time.Now().UTC().Format("20060102T150405Z"), os.Getpid()), sel: sel}
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
