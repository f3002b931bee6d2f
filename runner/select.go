package runner

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mastershrink/mastershrink/plan"
)

// SelectionError is an --only or --skip pattern that names no step of the plan.
type SelectionError struct {
	Flag    string
	Pattern string
	Known   []string
}

func (e *SelectionError) Error() string {
	return fmt.Sprintf("--%s %q names no step of the plan; steps are: %s", e.Flag, e.Pattern, strings.Join(e.Known, ", "))
}

// matches says whether pattern names the step: its ID exactly, or a prefix ending at a "/"
// ("etcd" and "etcd/remove-member" both name "etcd/remove-member/m2", "etcd/rem" does not).
func matches(pattern, id string) bool {
	pattern = strings.TrimSuffix(pattern, "/")
	return pattern != "" && (id == pattern || strings.HasPrefix(id, pattern+"/"))
}

// Selection says which steps of a plan run.
type Selection struct {
	only, skip []string
}

// Select validates --only and --skip against the plan's step IDs, before anything runs.
func Select(p *plan.Plan, only, skip []string) (Selection, error) {
	var ids []string
	for _, s := range p.Steps {
		ids = append(ids, s.ID)
	}
	check := func(flag string, patterns []string) ([]string, error) {
		var out []string
		for _, pat := range patterns {
			pat = strings.TrimSpace(pat)
			if pat == "" {
				continue
			}
			found := false
			for _, id := range ids {
				if matches(pat, id) {
					found = true
					break
				}
			}
			if !found {
				return nil, &SelectionError{Flag: flag, Pattern: pat, Known: ids}
			}
			out = append(out, pat)
		}
		return out, nil
	}
	var sel Selection
	var err error
	if sel.only, err = check("only", only); err != nil {
		return Selection{}, err
	}
	if sel.skip, err = check("skip", skip); err != nil {
		return Selection{}, err
	}
	return sel, nil
}

// Runs says whether the step runs. Preflight always runs unless skipped by name: it only
// reads, and every other step relies on it.
func (s Selection) Runs(st plan.Step) bool {
	for _, pat := range s.skip {
		if matches(pat, st.ID) {
			return false
		}
	}
	if k, _ := plan.Kind(st.Kind); len(s.only) == 0 || k.AlwaysRuns {
		return true
	}
	for _, pat := range s.only {
		if matches(pat, st.ID) {
			return true
		}
	}
	return false
}

// ErrPrerequisite means the selection runs a step without a step it depends on.
var ErrPrerequisite = errors.New("the selection leaves out a step that must come first")

// PrerequisiteError names the step that would run and the one it needs.
type PrerequisiteError struct {
	Step, Missing, Why string
}

func (e *PrerequisiteError) Error() string {
	return fmt.Sprintf("%v: step %s needs %s to have ended first (%s); select %s too (or drop it from --skip), or leave %s out",
		ErrPrerequisite, e.Step, e.Missing, e.Why, e.Missing, e.Step)
}

func (e *PrerequisiteError) Unwrap() error { return ErrPrerequisite }

// CheckPrerequisites refuses, before anything runs, a selection that runs a step while one of
// its prerequisites neither runs ahead of it nor ended in an earlier run of the plan (ended).
// Every such pair is named.
func (s Selection) CheckPrerequisites(p *plan.Plan, ended map[string]bool) error {
	var errs []error
	for _, st := range p.Steps {
		if !s.Runs(st) || ended[st.ID] {
			continue
		}
		for _, pre := range p.Prerequisites(st) {
			if !ended[pre.ID] && !s.Runs(pre) {
				errs = append(errs, &PrerequisiteError{Step: st.ID, Missing: pre.ID, Why: plan.Why(st, pre)})
			}
		}
	}
	return errors.Join(errs...)
}
