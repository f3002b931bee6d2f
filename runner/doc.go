// Package runner applies a reviewed shrink plan: it refuses a stale, foreign or edited plan,
// holds a cluster-wide lock in etcd, runs each step after checking its postcondition (so a
// rerun after a crash resumes), and keeps a journal and an audit log next to the plan.
package runner
