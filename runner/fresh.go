package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/plan"
)

// checkFresh re-observes the cluster and derives the plan again, on every run: the reviewed
// plan is the approval, the live cluster is what is true. A first run needs the same
// fingerprint and the same steps, step for step (risk included): an edited plan whose
// checksum was recomputed runs only if it is what the cluster calls for. A resumed run needs
// every step it will still run to match (see resumeDrift).
func (r *run) checkFresh(ctx context.Context, sel Selection, resumed bool) error {
	start := time.Now()
	r.prog.printf("Re-observing the cluster to check the plan still holds...\n")
	facts, err := r.gather(ctx)
	if err != nil {
		return fmt.Errorf("re-observe the cluster: %w", err)
	}
	if resumed {
		r.unsetAside(&facts)
	}
	secret := plan.BuildWithSecrets(facts, r.p.Target, r.opts.ToolVersion, time.Now())
	now := plan.Redacted(secret)
	if resumed {
		if changes := r.resumeDrift(ctx, sel, now); len(changes) > 0 {
			return &StaleError{Changes: changes}
		}
		if err := r.withSecrets(ctx, secret); err != nil {
			return err
		}
		r.prog.printf("Resuming: an earlier run of this plan changed the cluster (journal %s); every step left\n"+
			"to run still matches what the live cluster calls for (checked in %s).\n", r.opts.JournalPath, formatDuration(time.Since(start)))
		return nil
	}
	if now.Fingerprint != r.p.Fingerprint {
		return &StaleError{Changes: staleness(r.p, now)}
	}
	if diffs := plan.PlanDiffs(r.p, now); len(diffs) > 0 {
		return &StaleError{Changes: append([]string{"the plan's steps are not the ones derived from the live cluster (edited?)"}, diffs...)}
	}
	if err := r.withSecrets(ctx, secret); err != nil {
		return err
	}
	r.prog.printf("The cluster matches the plan (fingerprint %s, checked in %s).\n", short(r.p.Fingerprint), formatDuration(time.Since(start)))
	return nil
}

// regatherFor is how long a failed observation is tried again: a run stopped in the middle of
// an apiserver's restart leaves that apiserver (maybe the kubeconfig's) coming back for up to
// its ready deadline.
var regatherFor = 2 * time.Minute

// gather observes the cluster, trying again while it fails, within regatherFor, and saying so.
func (r *run) gather(ctx context.Context) (plan.Facts, error) {
	deadline := time.Now().Add(regatherFor)
	for {
		facts, err := observe.Gather(ctx, r.cluster, r.p.Target)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return facts, err
		}
		r.prog.printf("  observing failed (%v); trying again until %s\n", firstLine(err.Error()), deadline.Format("15:04:05"))
		select {
		case <-ctx.Done():
			return facts, ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

// withSecrets gives the steps about to run the real content of the files they write: the
// reviewed plan holds markers where secrets are. A file derived again now (equal to the
// reviewed one but for the secrets, as checked) takes its content from there; a file no
// longer derived (written by an earlier run) has its markers filled from the live file.
func (r *run) withSecrets(ctx context.Context, secret *plan.Plan) error {
	for i := range r.p.Steps {
		st := &r.p.Steps[i]
		derived, _ := secret.Step(st.ID)
		for j := range st.Files {
			f := &st.Files[j]
			if derived != nil {
				if real, ok := fileOf(derived, f.Host, f.Path); ok && plan.Redact(real.Before) == f.Before && plan.Redact(real.After) == f.After {
					*f = real
					continue
				}
			}
			if !strings.Contains(f.Before+f.After, "<redacted:sha256:") {
				continue
			}
			h, err := r.c.Host(ctx, f.Host)
			if err != nil {
				return err
			}
			live, err := h.ReadFile(ctx, f.Path)
			if err != nil {
				return fmt.Errorf("step %s: read %s:%s for its secrets: %w", st.ID, f.Host, f.Path, err)
			}
			if f.Before, err = plan.Restore(f.Before, string(live)); err == nil {
				f.After, err = plan.Restore(f.After, string(live))
			}
			if err != nil {
				return fmt.Errorf("%w: step %s, %s:%s: %v", plan.ErrStalePlan, st.ID, f.Host, f.Path, err)
			}
		}
	}
	return nil
}

func fileOf(st *plan.Step, hostName, path string) (host.FileChange, bool) {
	for _, f := range st.Files {
		if f.Host == hostName && f.Path == path {
			return f, true
		}
	}
	return host.FileChange{}, false
}

// resumeDrift compares the steps this run will still run (selected, not ended in the journal)
// with the plan derived now. A step there must be equal, but for files it already wrote; a
// step no longer derived must be done already (its postcondition, or every file it rewrites
// in its new state). A start in the journal is not progress: only an end is.
func (r *run) resumeDrift(ctx context.Context, sel Selection, now *plan.Plan) []string {
	var out []string
	for _, rf := range now.Refusals {
		out = append(out, "a new plan would be refused: "+rf.Reason)
	}
	if len(out) > 0 {
		return out
	}
	for _, st := range r.p.Steps {
		if !sel.Runs(st) || r.history.Ended[st.ID] {
			continue
		}
		if n, ok := now.Step(st.ID); ok {
			d := plan.StepDiffs(st, *n)
			if len(st.Files) > 0 {
				// Files the step wrote before the run stopped are no longer derived.
				d = slices.DeleteFunc(d, func(s string) bool { return strings.Contains(s, "would no longer rewrite") })
				d = append(d, r.writtenFiles(ctx, st, *n)...)
			}
			out = append(out, d...)
			continue
		}
		if done, why := r.doneAlready(ctx, st); !done {
			out = append(out, fmt.Sprintf("step %s is no longer what the live cluster calls for, and it is not done (%s)", st.ID, why))
		}
	}
	return out
}

// unsetAside undoes, in facts observed on a resume, what an apiserver restart stopped mid-way
// leaves in the proxies: its apiserver marked down. Its executor puts it back (once ready)
// before any proxy step runs, so a proxy that differs from the plan by exactly that is read
// as planned.
func (r *run) unsetAside(facts *plan.Facts) {
	for _, st := range r.p.Steps {
		if st.Kind != plan.KindAPIServerRewrite || !r.history.Started[st.ID] || r.history.Ended[st.ID] {
			continue
		}
		for node, cfg := range facts.LB {
			changes := asideOn(st, node)
			if len(changes) == 0 {
				continue
			}
			aside := true
			for _, c := range changes {
				aside = aside && cfg.Files[c.Path] == c.After
			}
			if aside {
				facts.LB[node] = r.p.Facts.LB[node]
			}
		}
	}
}

// writtenFiles checks the reviewed files a derived step no longer has: each must hold what
// the reviewed step writes.
func (r *run) writtenFiles(ctx context.Context, st, now plan.Step) []string {
	have := map[string]bool{}
	for _, f := range now.Files {
		have[f.Host+":"+f.Path] = true
	}
	var out []string
	for _, f := range st.Files {
		if have[f.Host+":"+f.Path] {
			continue
		}
		h, err := r.c.Host(ctx, f.Host)
		if err != nil {
			out = append(out, fmt.Sprintf("step %s: %v", st.ID, err))
			continue
		}
		cur, err := h.ReadFile(ctx, f.Path)
		if err != nil || plan.Redact(string(cur)) != f.After {
			out = append(out, fmt.Sprintf("%s:%s changed since the plan was made (step %s)", f.Host, f.Path, st.ID))
		}
	}
	return out
}

// doneAlready says whether a step the live cluster no longer calls for is done: for a step
// that rewrites files, every file holds its new content (what is left, a restart or a reload,
// its executor finishes); for the others, its own postcondition holds.
func (r *run) doneAlready(ctx context.Context, st plan.Step) (bool, string) {
	if len(st.Files) > 0 {
		for _, f := range st.Files {
			h, err := r.c.Host(ctx, f.Host)
			if err != nil {
				return false, err.Error()
			}
			cur, err := h.ReadFile(ctx, f.Path)
			if err != nil {
				return false, err.Error()
			}
			switch plan.Redact(string(cur)) {
			case f.After:
			case f.Before:
				return false, fmt.Sprintf("%s:%s still holds what the plan was made from, and the live cluster no longer calls for the rewrite", f.Host, f.Path)
			default:
				return false, fmt.Sprintf("%s:%s holds neither the planned content nor what the plan was made from", f.Host, f.Path)
			}
		}
		return true, ""
	}
	ex, err := r.executor(st)
	if err != nil {
		return false, err.Error()
	}
	if ex.done == nil {
		return false, "nothing shows it ran"
	}
	done, _, err := ex.done(ctx)
	if err != nil {
		return false, err.Error()
	}
	return done, "its postcondition does not hold"
}
