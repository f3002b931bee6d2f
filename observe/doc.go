// Package observe connects to a cluster through its inventory and gathers the plain facts
// the planner needs: hosts, etcd membership and health, control-plane units and their flags,
// every node's proxy config, referenced certificates, the CA, Kubernetes Nodes and pods. It
// only reads.
package observe
