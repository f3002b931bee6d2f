// Package apiserverfacts is the pure half of package apiserver: the control-plane units of a
// master as observed (Components, their flags and kubeconfigs) and PlanRewrite, which turns
// them into the file changes and restarts a survivor needs. Start at Components. The planner
// imports this package; package apiserver observes, restarts and retires the units, and
// re-exports every name here.
package apiserverfacts
