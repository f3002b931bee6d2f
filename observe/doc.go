// Package observe connects to a cluster through its inventory and gathers the plain facts
// the planner needs: hosts, etcd membership and health, control-plane units and their flags,
// every node's proxy config, referenced certificates, the CA, Kubernetes Nodes and pods. It
// only reads. Start at Open, which gives a Cluster (its hosts, etcd and API connections, each
// made on first use), then Gather: plan.Facts for plan.Build, or for BuildStatus (status).
package observe
