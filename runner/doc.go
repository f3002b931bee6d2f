// Package runner applies a reviewed shrink plan: it refuses a stale, foreign or edited plan,
// holds a cluster-wide lock in etcd, runs each step after checking its postcondition (so a
// rerun after a crash resumes), and keeps a journal and an audit log next to the plan.
//
// Start at Run (runner.go): selection and prerequisites (select.go), the lock (lock.go), the
// re-derivation that every run, resumed or not, checks the plan against (fresh.go), then one
// step at a time (step.go), the node proxies as one concurrent phase (lbphase.go), and a
// survivor's apiserver taken out of them for its restart and put back (lbdrain.go). Each
// kind's executor (its postcondition and its action, which proves its precondition on the
// live cluster first) is in exec_<family>.go, registered there in the registry of steps.go
// with the kind's typed params (plan's build_<family>.go). undo.go and undorun.go put back
// what the reversible steps changed.
package runner
