// Package lb reads every node's apiserver proxy (an nginx stream proxy, or haproxy), takes
// leaving apiservers out of it with a minimal text edit, and applies that safely: nginx -t or
// haproxy -c, graceful reload, proof that the new config runs, probe, with a backup to go
// back to.
// It reaches hosts through host/machine only, so the planner can use its parser and rewriters
// without SSH or D-Bus.
package lb
