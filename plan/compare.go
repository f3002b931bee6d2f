package plan

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Equal says whether two steps' params are the same.
func Equal(a, b map[string]string) bool { return maps.Equal(a, b) }

// StepDiffs names how a reviewed step differs from the same step derived now from the live
// cluster: its kind, host, risk, params and every file it rewrites (host, path, content
// before and after). Summaries and details are prose for the reviewer and not compared.
func StepDiffs(reviewed, now Step) []string {
	var out []string
	if reviewed.Kind != now.Kind {
		out = append(out, fmt.Sprintf("step %s is now of kind %s, was %s", now.ID, now.Kind, reviewed.Kind))
	}
	if reviewed.Host != now.Host {
		out = append(out, fmt.Sprintf("step %s would now act on host %s, was %s", now.ID, now.Host, reviewed.Host))
	}
	if reviewed.Risk != now.Risk {
		out = append(out, fmt.Sprintf("step %s is now %s, the reviewed plan says %s", now.ID, now.Risk, reviewed.Risk))
	}
	was, err1 := DecodeParams[RemoveMemberParams](reviewed)
	is, err2 := DecodeParams[RemoveMemberParams](now)
	if err1 == nil && err2 == nil && was.MemberID != is.MemberID {
		out = append(out, fmt.Sprintf("the etcd member at %s is now %s (%s), the plan removes %s (%s): it was replaced since the plan was made",
			strings.Join(is.PeerURLs, ","), is.Member, is.MemberID, was.Member, was.MemberID))
	} else if !Equal(reviewed.Params, now.Params) {
		out = append(out, fmt.Sprintf("step %s would now act differently (%s, was %s)", now.ID, formatParams(now.Params), formatParams(reviewed.Params)))
	}
	out = append(out, FileDiffs(reviewed, now, false)...)
	out = append(out, FileDiffs(Step{ID: reviewed.ID, Files: reviewed.Aside}, Step{ID: now.ID + " (set aside for its restart)", Files: now.Aside}, false)...)
	return out
}

// FileDiffs compares the files of two versions of a step. With partial, files of reviewed
// that now is missing are not reported: a step stopped mid-way has written them already,
// which its executor verifies.
func FileDiffs(reviewed, now Step, partial bool) []string {
	var out []string
	old := map[string][2]string{}
	for _, f := range reviewed.Files {
		old[f.Host+":"+f.Path] = [2]string{f.Before, f.After}
	}
	for _, f := range now.Files {
		k := f.Host + ":" + f.Path
		was, ok := old[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("step %s would now also rewrite %s", now.ID, k))
		case was[0] != f.Before:
			out = append(out, fmt.Sprintf("%s changed since the plan was made (step %s)", k, now.ID))
		case was[1] != f.After:
			out = append(out, fmt.Sprintf("step %s would now write %s differently", now.ID, k))
		}
		delete(old, k)
	}
	if !partial {
		for _, k := range slices.Sorted(maps.Keys(old)) {
			out = append(out, fmt.Sprintf("step %s would no longer rewrite %s", now.ID, k))
		}
	}
	return out
}

// PlanDiffs compares a reviewed plan with the plan derived now, step for step: same steps in
// the same order, each equal by StepDiffs. Empty means apply may run the reviewed plan.
func PlanDiffs(reviewed, now *Plan) []string {
	var out []string
	nowSteps := map[string]Step{}
	for _, s := range now.Steps {
		nowSteps[s.ID] = s
	}
	revIDs := map[string]bool{}
	for _, s := range reviewed.Steps {
		revIDs[s.ID] = true
		n, ok := nowSteps[s.ID]
		if !ok {
			out = append(out, fmt.Sprintf("step %s is no longer needed or possible", s.ID))
			continue
		}
		out = append(out, StepDiffs(s, n)...)
	}
	for _, s := range now.Steps {
		if !revIDs[s.ID] {
			out = append(out, fmt.Sprintf("the plan would now have step %s", s.ID))
		}
	}
	if len(out) == 0 && !slices.Equal(ids(reviewed), ids(now)) {
		out = append(out, fmt.Sprintf("the steps are in another order (%s, now %s)", strings.Join(ids(reviewed), " "), strings.Join(ids(now), " ")))
	}
	return out
}

func ids(p *Plan) []string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, s.ID)
	}
	return out
}

func formatParams(p map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		parts = append(parts, k+"="+p[k])
	}
	return strings.Join(parts, " ")
}
