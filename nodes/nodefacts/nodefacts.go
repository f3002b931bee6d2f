package nodefacts

// Verdicts of the pod classification, as kubectl drain's filters give them.
const (
	VerdictEvict  = "evict"
	VerdictSkip   = "skip"
	VerdictRefuse = "refuse"
)

// Node is what the planner needs to know of one Kubernetes Node.
type Node struct {
	Name          string   `json:"name"`
	Ready         bool     `json:"ready"`
	Unschedulable bool     `json:"unschedulable,omitempty"`
	Taints        []string `json:"taints,omitempty"`
	Addresses     []string `json:"addresses,omitempty"`
	Roles         []string `json:"roles,omitempty"`
	Pods          []Pod    `json:"pods,omitempty"`
}

// Pod is one pod on a node to drain, with the facts its classification rests on.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Owner is the controlling object as Kind/name ("ReplicaSet/web-5d9f"), empty when none.
	Owner   string `json:"owner,omitempty"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason,omitempty"`
	Hint    string `json:"hint,omitempty"`
	// Replicas is the owner's desired replica count (ReplicaSet, StatefulSet, CloneSet).
	Replicas int32 `json:"replicas,omitempty"`
	HasPDB   bool  `json:"has_pdb,omitempty"`

	// Facts for Classify.
	Mirror    bool `json:"mirror,omitempty"`
	EmptyDir  bool `json:"empty_dir,omitempty"`
	Finished  bool `json:"finished,omitempty"`
	NodeDown  bool `json:"node_down,omitempty"`
	OwnerGone bool `json:"owner_gone,omitempty"`
}

// OwnerKind is the kind part of Owner.
func (p Pod) OwnerKind() string {
	for i := range len(p.Owner) {
		if p.Owner[i] == '/' {
			return p.Owner[:i]
		}
	}
	return ""
}

// PDB is a PodDisruptionBudget as the planner and the preflight see it.
type PDB struct {
	Namespace          string `json:"namespace"`
	Name               string `json:"name"`
	Selector           string `json:"selector"`
	MinAvailable       string `json:"min_available,omitempty"`
	MaxUnavailable     string `json:"max_unavailable,omitempty"`
	DisruptionsAllowed int32  `json:"disruptions_allowed"`
	CurrentHealthy     int32  `json:"current_healthy"`
	DesiredHealthy     int32  `json:"desired_healthy"`
	ExpectedPods       int32  `json:"expected_pods"`
	// OperationID is set on the temporary PDBs a drain created.
	OperationID string `json:"operation_id,omitempty"`
}
