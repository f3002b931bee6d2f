package nodes

import (
	"errors"
	"io"
	"time"
)

// Errors of a drain, detected here; the command maps them to exit codes.
var (
	// ErrRefused: some pod cannot be evicted safely without the operator's consent, or the
	// remaining nodes cannot take the pods. Nothing was changed.
	ErrRefused = errors.New("drain refused")
	// ErrBlocked: evictions did not complete before a timeout (PDB, stuck termination).
	ErrBlocked = errors.New("drain blocked")
)

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
