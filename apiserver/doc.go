// Package apiserver observes and changes the control-plane units of the masters
// (kube-apiserver, kube-controller-manager, kube-scheduler): rewrite their flags for the
// survivors, restart them one at a time gated on readiness, and retire the leaving ones.
// The observed Components and PlanRewrite live in apiserverfacts, which the planner imports;
// this package re-exports them.
package apiserver
