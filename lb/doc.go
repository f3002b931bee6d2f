// Package lb reads every node's apiserver proxy (an nginx stream proxy, or haproxy), takes
// leaving apiservers out of it with a minimal text edit, and applies that safely: nginx -t or
// haproxy -c, graceful reload, proof that the new config runs, probe, with a backup to go
// back to.
//
// Start at Observe (what a node's proxy fronts), Rewrite (the planned edit) and
// Executor.Apply (one node's change on the live host); apply keeps one Executor per node for
// the run (NewNodeExecutor), and Executor.Stage writes a config for a later Apply to load.
// It reaches hosts through host/machine only, so the planner can use its parser and rewriters
// without SSH or D-Bus.
package lb
