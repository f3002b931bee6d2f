package nodes

import (
	"errors"
	"io"
	"time"
)

// Verdicts of the pod classification, as kubectl drain's filters give them.
const (
	VerdictEvict  = "evict"
	VerdictSkip   = "skip"
	VerdictRefuse = "refuse"
)

// Errors of a drain, detected here; the command maps them to exit codes.
var (
	// ErrRefused: some pod cannot be evicted safely without the operator's consent, or the
	// remaining nodes cannot take the pods. Nothing was changed.
	ErrRefused = errors.New("drain refused")
	// ErrBlocked: evictions did not complete before a timeout (PDB, stuck termination).
	ErrBlocked = errors.New("drain blocked")
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

// DrainOptions are the operator's choices for a drain. Zero values are safe: every escape
// hatch is off, and durations of 0 mean no timeout.
type DrainOptions struct {
	// GracePeriodSeconds for evictions when positive; 0 or -1 use each pod's own (unlike
	// kubectl, 0 does not mean "kill now": a zero value must not be the harsh choice).
	GracePeriodSeconds int64
	// Timeout bounds each node's drain, GlobalTimeout the whole call.
	Timeout, GlobalTimeout time.Duration
	DeleteEmptyDirData     bool
	// Force evicts pods without a controller (they are gone for good).
	Force            bool
	IgnoreDaemonSets bool
	// AllowSingleReplica evicts the only pod of a controller (downtime until it reschedules).
	AllowSingleReplica bool
	// PDBMaxUnavailable of the temporary PDBs; "" means "25%".
	PDBMaxUnavailable string
	// OperationID marks the temporary PDBs so they can be found and removed; "" generates one.
	OperationID string
	// DeletePodsOfDownNode is the consent to delete (grace 0) the pods of a node confirmed down,
	// where evictions cannot complete.
	DeletePodsOfDownNode bool
	// Progress receives one line per event (nil: discarded).
	Progress io.Writer
}

// DefaultDrainOptions are the settings a shrink plan drains with unless told otherwise:
// DaemonSet pods skipped, everything else needing consent.
func DefaultDrainOptions() DrainOptions {
	return DrainOptions{GracePeriodSeconds: -1, Timeout: 5 * time.Minute, IgnoreDaemonSets: true, PDBMaxUnavailable: "25%"}
}

// Summary is what a drain did, node by node.
type Summary struct {
	OperationID string        `json:"operation_id"`
	Nodes       []NodeSummary `json:"nodes"`
	// Preflight notes: PDBs that will hold evictions back, capacity of the remaining nodes.
	Preflight []string `json:"preflight,omitempty"`
	// TempPDBs were created (Namespace/name) and removed again unless RemoveErr says otherwise.
	TempPDBs  []string `json:"temp_pdbs,omitempty"`
	RemoveErr string   `json:"remove_error,omitempty"`
}

// NodeSummary is the outcome for one node.
type NodeSummary struct {
	Node string `json:"node"`
	Down bool   `json:"down,omitempty"`
	// Evicted pods (namespace/name) went away through the Eviction API; Deleted were deleted
	// with grace 0 on a node confirmed down.
	Evicted []string  `json:"evicted,omitempty"`
	Deleted []string  `json:"deleted,omitempty"`
	Blocked []Blocked `json:"blocked,omitempty"`
	Skipped []Pod     `json:"skipped,omitempty"`
	Refused []Pod     `json:"refused,omitempty"`
}

// Blocked is a pod that was not removed, and why.
type Blocked struct {
	Pod    string `json:"pod"`
	Reason string `json:"reason"`
}
