// Package vip reads keepalived's VRRP configuration and moves a virtual IP off a host that
// leaves the cluster: the VIP that kubeconfigs point at must end on a host that stays, and
// answer there, before the leaving host's apiserver or proxy stops.
//
// Start with Parse (conf.go, pure: the planner uses it) and Release (hostside.go, which reaches
// hosts through host/machine only, so package plan builds without SSH).
package vip
