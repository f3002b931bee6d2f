// Package nodes takes workers out of a cluster: it observes Nodes, pods and PDBs for the
// planner, cordons, guards and drains through the Eviction API, deletes the Node, and cleans
// and verifies the host.
package nodes
