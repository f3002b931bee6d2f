// Package kubetest starts a real, fast Kubernetes control plane on loopback for tests: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler as processes, with kwok as the
// kubelet of fake nodes, so PDB status, scheduling and Node readiness are real. Start at
// Start; StartSeeded adds the drain workloads, and PodsOn, NodeRunning and Unschedulable are
// the queries the drain tests share.
package kubetest
