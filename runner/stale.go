package runner

import (
	"fmt"
	"slices"

	"github.com/mastershrink/mastershrink/plan"
)

// StaleError is plan.ErrStalePlan with what changed since the plan was made.
type StaleError struct {
	Changes []string
}

func (e *StaleError) Error() string {
	msg := plan.ErrStalePlan.Error()
	for i, c := range e.Changes {
		if i == 0 {
			msg += ": " + c
		} else {
			msg += "; " + c
		}
	}
	return msg + "; make a fresh plan with mastershrink plan and review it"
}

func (e *StaleError) Unwrap() error { return plan.ErrStalePlan }

// staleness names what differs between the plan as made and the plan made now from fresh
// facts: membership, reachability, steps and the files they rewrite.
func staleness(old, now *plan.Plan) []string {
	var out []string
	oldM := map[uint64]string{}
	for _, m := range old.Facts.Etcd.Members {
		oldM[m.ID] = m.Name
	}
	nowM := map[uint64]bool{}
	for _, m := range now.Facts.Etcd.Members {
		nowM[m.ID] = true
		name, was := oldM[m.ID]
		switch {
		case !was:
			out = append(out, fmt.Sprintf("etcd member %s (%x) joined since the plan was made", m.Name, m.ID))
		case name != m.Name:
			out = append(out, fmt.Sprintf("etcd member %x is now called %s, was %s", m.ID, m.Name, name))
		}
	}
	for _, m := range old.Facts.Etcd.Members {
		if !nowM[m.ID] {
			out = append(out, fmt.Sprintf("etcd member %s (%x) is gone since the plan was made", m.Name, m.ID))
		}
	}
	for _, m := range old.Facts.Etcd.Members {
		for _, n := range now.Facts.Etcd.Members {
			if m.ID == n.ID && m.Healthy != n.Healthy {
				state := "unhealthy: " + n.Error
				if n.Healthy {
					state = "healthy again"
				}
				out = append(out, fmt.Sprintf("etcd member %s is %s", n.Name, state))
			}
		}
	}
	for _, h := range old.Facts.Hosts {
		if n, ok := now.Facts.Host(h.Name); ok && n.Reachable != h.Reachable {
			state := "unreachable: " + n.Error
			if n.Reachable {
				state = "reachable again"
			}
			out = append(out, fmt.Sprintf("host %s is %s", h.Name, state))
		}
	}
	out = append(out, plan.PlanDiffs(old, now)...)
	for _, r := range now.Refusals {
		out = append(out, "a new plan would be refused: "+r.Reason)
	}
	if len(out) == 0 {
		out = append(out, "the fingerprint differs (fingerprint "+short(old.Fingerprint)+" in the plan, "+short(now.Fingerprint)+" now)")
	}
	return slices.Compact(out)
}
