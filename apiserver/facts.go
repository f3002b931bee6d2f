package apiserver

import (
	"github.com/mastershrink/mastershrink/apiserver/apiserverfacts"
)

// The observed components and the rewrite planner live in package apiserverfacts, which the
// planner imports without client-go; these names keep them where the executors and tests
// look for them.
type (
	// Components are the control-plane units of one master as observed.
	Components = apiserverfacts.Components
	// Component is one control-plane unit on one host.
	Component = apiserverfacts.Component
	// Flags are the flags mastershrink reasons about, parsed.
	Flags = apiserverfacts.Flags
	// Kubeconfig is one kubeconfig file a component reads.
	Kubeconfig = apiserverfacts.Kubeconfig
	// KubeconfigServer is one server URL in a kubeconfig.
	KubeconfigServer = apiserverfacts.KubeconfigServer
	// Finding is a place in a survivor's configuration that names something the shrink touches.
	Finding = apiserverfacts.Finding
	// Rewrite is the planned change of one surviving master's control-plane configuration.
	Rewrite = apiserverfacts.Rewrite
)

// Component names, used in findings, step IDs and messages.
const (
	KubeAPIServer         = apiserverfacts.KubeAPIServer
	KubeControllerManager = apiserverfacts.KubeControllerManager
	KubeScheduler         = apiserverfacts.KubeScheduler
)

// DefaultSecurePort is kube-apiserver's --secure-port default.
const DefaultSecurePort = apiserverfacts.DefaultSecurePort

// ErrNoEtcdServers means a surviving apiserver would be left without an etcd endpoint.
var ErrNoEtcdServers = apiserverfacts.ErrNoEtcdServers

// PlanRewrite plans the file changes on one surviving master with what it found and which
// components must restart (see apiserverfacts.PlanRewrite).
func PlanRewrite(c Components, hostName string, survivingEtcdClientURLs []string, survivingMasters int, removedAddrs []string) (Rewrite, error) {
	return apiserverfacts.PlanRewrite(c, hostName, survivingEtcdClientURLs, survivingMasters, removedAddrs)
}
