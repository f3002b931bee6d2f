package nodes

import "github.com/mastershrink/mastershrink/nodes/nodefacts"

// The planner's view of Nodes, pods and PDBs lives in package nodefacts, free of client-go;
// these names keep it where the drain and the tests look for it.
type (
	// Node is what the planner needs to know of one Kubernetes Node.
	Node = nodefacts.Node
	// Pod is one pod on a node to drain, with the facts its classification rests on.
	Pod = nodefacts.Pod
	// PDB is a PodDisruptionBudget as the planner and the preflight see it.
	PDB = nodefacts.PDB
)

// Verdicts of the pod classification, as kubectl drain's filters give them.
const (
	VerdictEvict  = nodefacts.VerdictEvict
	VerdictSkip   = nodefacts.VerdictSkip
	VerdictRefuse = nodefacts.VerdictRefuse
)
