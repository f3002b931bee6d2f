// Package testenv builds the lab: a real binary-deployed Kubernetes cluster (etcd, kube-apiserver,
// controller-manager, scheduler, nginx stream proxies, kwok fake kubelets, sshd) in systemd-nspawn
// machines on one host, for tests, the demo and benchmarks.
package testenv
