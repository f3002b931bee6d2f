package plan

import (
	"time"

	host "github.com/mastershrink/mastershrink/host/machine"
)

// FormatVersion is the version of the plan file's JSON; a plan of another version is refused.
// Version 2: kinds named as their steps' IDs, member identity (peer URLs) in the steps.
// Version 3: each apiserver/update step carries the proxy rewrites of its restart (Aside);
// a version-2 plan has none, and apply would compute them itself.
const FormatVersion = 3

// Risk says what a step can do to the cluster.
type Risk string

const (
	// Safe steps change nothing the cluster serves from (reads, snapshots, unit files that
	// only take effect on a later restart).
	Safe Risk = "safe"
	// Disruptive steps restart or reload something, or take a host out of service; they can
	// be undone.
	Disruptive Risk = "disruptive"
	// Irreversible steps cannot be undone short of restoring the snapshot.
	Irreversible Risk = "irreversible"
)

// Plan is what `mastershrink plan` writes and `mastershrink apply` runs.
type Plan struct {
	FormatVersion int       `json:"format_version"`
	ToolVersion   string    `json:"tool_version"`
	CreatedAt     time.Time `json:"created_at"`
	Cluster       string    `json:"cluster"`
	Target        Target    `json:"target"`
	// Fingerprint covers every fact a step relies on; apply re-observes and refuses a plan
	// whose fingerprint no longer matches.
	Fingerprint string `json:"fingerprint"`
	// PointOfNoReturn is the ID of the first irreversible step, empty if there is none.
	PointOfNoReturn string    `json:"point_of_no_return,omitempty"`
	Steps           []Step    `json:"steps"`
	Refusals        []Refusal `json:"refusals,omitempty"`
	Warnings        []string  `json:"warnings,omitempty"`
	Summary         string    `json:"summary"`
	// Facts are the observations the plan was computed from, kept for review and audit.
	Facts Facts `json:"facts"`
	// Checksum is the SHA-256 of the plan file with this field empty; an edited plan is refused.
	Checksum string `json:"checksum,omitempty"`
}

// Target is what the operator asked for.
type Target struct {
	Remove  []string `json:"remove"`
	Drain   []string `json:"drain,omitempty"`
	Offline []string `json:"offline,omitempty"`
	// LBMode is "down" (mark leaving servers down, the default) or "remove".
	LBMode string `json:"lb_mode"`
	// WipeLeaving is what becomes of the secrets leaving hosts still hold after the shrink:
	// "" keeps them (the final check lists them), "move" removes the private keys and moves
	// etcd's data directory aside into a 0700 folder, "remove" removes both.
	WipeLeaving string `json:"wipe_leaving,omitempty"`
}

// Step is one unit of work, applied by the runner and skipped when already done.
type Step struct {
	// ID is stable and hierarchical: "etcd/remove-member/m3".
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Host    string `json:"host,omitempty"`
	Risk    Risk   `json:"risk"`
	Summary string `json:"summary"`
	// Details are extra lines for the human view (SANs before and after, pods to evict).
	Details []string `json:"details,omitempty"`
	// Files are the exact rewrites the step makes.
	Files []host.FileChange `json:"files,omitempty"`
	// Aside are the node-proxy rewrites an apiserver/update step makes for the time of its
	// restart: each marks the restarting apiserver down, and is reversed (After back to
	// Before) once it is ready again.
	Aside []host.FileChange `json:"aside,omitempty"`
	// Params are what the executor needs beyond Files, as plain strings.
	Params map[string]string `json:"params,omitempty"`
	// Quorum is set on etcd membership steps.
	Quorum *Quorum `json:"quorum,omitempty"`
	// Relies names the facts the step depends on (for review; the fingerprint covers them).
	Relies []string `json:"relies,omitempty"`
	// PastNoReturn is true for the point of no return and every step after it.
	PastNoReturn bool `json:"past_no_return,omitempty"`
}

// Quorum describes etcd membership around a step.
type Quorum struct {
	MembersBefore int `json:"members_before"`
	MembersAfter  int `json:"members_after"`
	QuorumBefore  int `json:"quorum_before"`
	QuorumAfter   int `json:"quorum_after"`
	// HealthyAfter counts the healthy members that stay.
	HealthyAfter int `json:"healthy_after"`
}

// Refusal is a reason the plan will not be carried out, with the way out.
type Refusal struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
	WayOut string `json:"way_out"`
}

func (r Refusal) String() string { return r.Reason + " (" + r.WayOut + ")" }

// Step returns the step with the given ID.
func (p *Plan) Step(id string) (*Step, bool) {
	for i := range p.Steps {
		if p.Steps[i].ID == id {
			return &p.Steps[i], true
		}
	}
	return nil, false
}

// Quorum is the majority of n members.
func quorumOf(n int) int { return n/2 + 1 }
