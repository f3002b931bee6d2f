// Package nodes takes workers out of a cluster: it observes Nodes, pods and PDBs for the
// planner, cordons, guards and drains through the Eviction API, deletes the Node, and cleans
// and verifies the host. The planner's view (Node, Pod, PDB) lives in nodefacts, free of
// client-go; this package re-exports it.
package nodes
