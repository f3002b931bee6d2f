// Package lb reads every node's nginx stream proxy in front of the apiservers, takes leaving
// apiservers out of it with a minimal text edit, and applies that safely: nginx -t, graceful
// reload, probe, with a backup to go back to.
// It reaches hosts through host/machine only, so the planner can use its parser and rewriters
// without SSH or D-Bus.
package lb
