// Package runner applies a reviewed shrink plan: it refuses a stale, foreign or edited plan,
// holds a cluster-wide lock in etcd, runs each step after checking its postcondition (so a
// rerun after a crash resumes), and keeps a journal and an audit log next to the plan.
//
// Start at Run (runner.go): selection and prerequisites (select.go), the lock (lock.go), the
// re-derivation that every run, resumed or not, checks the plan against (fresh.go), then one
// step at a time. Each step kind's executor (its postcondition and its action, which proves
// its precondition on the live cluster first) is in exec_<family>.go, dispatched in steps.go.
package runner
