// Package nodes takes workers out of a cluster: it observes Nodes, pods and PDBs for the
// planner, cordons, guards and drains through the Eviction API (start at Drain), deletes the
// Node, and cleans and verifies the host (Cleanup, Verify; GuardCleanup first refuses a host
// that still serves). ResolveNodes and Node.OfHost are the one way from an inventory host to
// its Node. The planner's view (Node, Pod, PDB) lives in nodefacts, free of client-go; this
// package re-exports it.
package nodes
