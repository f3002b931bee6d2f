package plan

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Step kinds. A kind is also the first parts of its steps' IDs ("etcd/remove-member" for
// "etcd/remove-member/m2"), so one vocabulary serves the plan, --only/--skip and the journal.
const (
	KindPreflight        = "preflight"
	KindSnapshot         = "etcd/snapshot"
	KindAPIServerRewrite = "apiserver/update"
	KindLBUpdate         = "lb/update"
	KindVIPRelease       = "vip/release"
	KindVIPUpdate        = "vip/update"
	KindRetire           = "components/retire"
	KindMoveLeader       = "etcd/move-leader"
	KindRemoveMember     = "etcd/remove-member"
	KindStopEtcd         = "etcd/stop"
	KindInitialCluster   = "etcd/initial-cluster"
	KindCertResign       = "certs/resign"
	KindDrain            = "nodes/drain"
	KindDeleteNode       = "nodes/delete"
	KindCleanup          = "nodes/cleanup"
	KindLBStop           = "lb/stop"
	KindWipe             = "nodes/wipe"
	KindVerify           = "verify/final"
)

// Scope says which steps of a prerequisite kind a step waits for.
type Scope int

const (
	// SameHost: the prerequisite's steps on the step's own host (its member, its node).
	SameHost Scope = iota
	// AnyHost: every step of the prerequisite kind in the plan.
	AnyHost
)

// Prerequisite is a kind whose steps (in Scope) must have ended before a step may run:
// in this run, ahead of it, or in an earlier run of the same plan.
type Prerequisite struct {
	Kind  string
	Scope Scope
	// Why is told to the operator whose selection leaves it out.
	Why string
}

// KindInfo is everything the planner, the runner, the summary and the benchmarks know about
// a kind: this table is the one place that says it.
type KindInfo struct {
	Kind string
	// One and Many count the kind's steps in the plan's summary line; empty leaves it out.
	One, Many string
	// ReadOnly steps change nothing the cluster serves from: an earlier run that got only
	// this far has not begun the shrink.
	ReadOnly bool
	// AlwaysRuns steps run under --only too: the other steps rely on what they check.
	AlwaysRuns bool
	// Phase names the kind's part of an apply in the benchmarks' breakdown.
	Phase    string
	Requires []Prerequisite
	// Params is the zero value of the kind's params struct (params.go); nil when the kind's
	// steps take none.
	Params Params
}

// Kinds lists every kind in the order the plan runs them.
var Kinds = []KindInfo{
	{Kind: KindPreflight, ReadOnly: true, AlwaysRuns: true, Phase: "preflight"},
	{Kind: KindSnapshot, One: "snapshot", Many: "snapshots", ReadOnly: true, Phase: "snapshot"},
	{Kind: KindVIPRelease, Params: VIPReleaseParams{}, One: "keepalived on a leaving host to stop", Many: "keepalived on leaving hosts to stop", Phase: "VIPs"},
	{Kind: KindVIPUpdate, Params: VIPUpdateParams{}, One: "keepalived peer list to update", Many: "keepalived peer lists to update", Phase: "VIPs",
		Requires: []Prerequisite{{KindVIPRelease, AnyHost, "a staying keepalived that forgets a leaving peer still holding the VIP may take the VIP too: two holders"}}},
	{Kind: KindAPIServerRewrite, Params: APIServerUpdateParams{}, One: "apiserver to update", Many: "apiservers to update", Phase: "survivor restarts",
		Requires: []Prerequisite{{KindVIPRelease, AnyHost, "a VIP on a leaving host sends its clients through that host's proxy, which is not taken off the restarting apiserver"}}},
	{Kind: KindLBUpdate, Params: LBUpdateParams{}, One: "load balancer to update", Many: "load balancers to update", Phase: "node proxies"},
	{Kind: KindRetire, Params: RetireParams{}, One: "master to retire", Many: "masters to retire", Phase: "retire control plane",
		Requires: []Prerequisite{
			{KindLBUpdate, AnyHost, "the proxies would still send requests to the apiserver it stops"},
			{KindVIPRelease, AnyHost, "a VIP on a leaving host sends its clients through that host's proxy to the apiserver it stops"},
		}},
	{Kind: KindMoveLeader, Params: MoveLeaderParams{}, Phase: "etcd membership"},
	{Kind: KindRemoveMember, Params: RemoveMemberParams{}, One: "etcd member to remove", Many: "etcd members to remove", Phase: "etcd membership",
		Requires: []Prerequisite{{KindSnapshot, AnyHost, "no member is removed without a verified snapshot of this run"}}},
	{Kind: KindStopEtcd, Params: StopEtcdParams{}, Phase: "etcd membership",
		Requires: []Prerequisite{{KindRemoveMember, SameHost, "stopping a member that was not removed costs the cluster a voter and can lose quorum"}}},
	{Kind: KindInitialCluster, Params: InitialClusterParams{}, One: "etcd unit to rewrite", Many: "etcd units to rewrite", Phase: "etcd membership"},
	{Kind: KindCertResign, Params: CertResignParams{}, One: "certificate to re-sign", Many: "certificates to re-sign", Phase: "certificates"},
	{Kind: KindDrain, Params: DrainParams{}, One: "node to drain", Many: "nodes to drain", Phase: "nodes"},
	{Kind: KindDeleteNode, Params: DeleteNodeParams{}, Phase: "nodes",
		Requires: []Prerequisite{{KindDrain, SameHost, "deleting a Node that was not drained orphans its pods"}}},
	{Kind: KindCleanup, One: "host to clean", Many: "hosts to clean", Phase: "nodes",
		Requires: []Prerequisite{
			{KindDrain, SameHost, "cleaning a host that still runs pods kills them without eviction"},
			{KindDeleteNode, SameHost, "the Node would come back NotReady"},
			{KindRetire, SameHost, "cleaning removes the PKI of control-plane units still running there"},
			{KindStopEtcd, SameHost, "cleaning removes the PKI of an etcd still running there"},
		}},
	{Kind: KindLBStop, Params: LBStopParams{}, One: "leaving proxy to stop", Many: "leaving proxies to stop", Phase: "node proxies",
		Requires: []Prerequisite{
			{KindRetire, SameHost, "the control plane there reaches the apiservers through this proxy until it is stopped"},
			{KindDrain, SameHost, "the kubelet and pods there reach the apiservers through this proxy until they are drained"},
			{KindVIPRelease, SameHost, "the VIP held there reaches the apiservers through this proxy"},
		}},
	{Kind: KindWipe, Params: WipeParams{}, One: "leaving host to wipe of its secrets", Many: "leaving hosts to wipe of their secrets", Phase: "nodes",
		Requires: []Prerequisite{
			{KindSnapshot, AnyHost, "the last copies of the cluster's data go only once a verified snapshot of this run exists"},
			{KindStopEtcd, SameHost, "etcd's data is never taken from under a running etcd"},
			{KindRetire, SameHost, "the control plane there still reads its keys"},
			{KindLBStop, SameHost, "the proxy there still runs"},
		}},
	{Kind: KindVerify, ReadOnly: true, Phase: "final check"},
}

// Kind returns the table entry of a kind.
func Kind(kind string) (KindInfo, bool) {
	for _, k := range Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindInfo{}, false
}

// KindOfID returns the kind a step ID starts with ("etcd/remove-member/m2": etcd/remove-member).
func KindOfID(id string) (KindInfo, bool) {
	var best KindInfo
	found := false
	for _, k := range Kinds {
		if (id == k.Kind || strings.HasPrefix(id, k.Kind+"/")) && len(k.Kind) > len(best.Kind) {
			best, found = k, true
		}
	}
	return best, found
}

// ErrStepKind means a plan has a step this mastershrink cannot run: refused before anything.
var ErrStepKind = errors.New("the plan has a step this mastershrink cannot run")

// ErrUnknownKind means a plan names a kind this mastershrink cannot run.
type ErrUnknownKind struct{ Step, Kind string }

func (e *ErrUnknownKind) Error() string {
	return fmt.Sprintf("step %s has kind %q, which this mastershrink does not know: make the plan again with this version", e.Step, e.Kind)
}

func (e *ErrUnknownKind) Unwrap() error { return ErrStepKind }

// CheckKinds refuses a plan with a step whose kind is not in the table, whose ID does not
// start with its kind, or whose params its kind does not declare.
func CheckKinds(p *Plan) error {
	for _, s := range p.Steps {
		k, ok := Kind(s.Kind)
		if !ok {
			return &ErrUnknownKind{Step: s.ID, Kind: s.Kind}
		}
		var t reflect.Type
		if k.Params != nil {
			t = reflect.TypeOf(k.Params)
		}
		if err := checkParamKeys(s, t); err != nil {
			return err
		}
		if s.ID != s.Kind && !strings.HasPrefix(s.ID, s.Kind+"/") {
			return fmt.Errorf("%w: step %s has kind %s, and a step's ID starts with its kind; make the plan again", ErrStepKind, s.ID, s.Kind)
		}
	}
	return nil
}

// Prerequisites lists the steps of p that must have ended before st runs, in plan order.
func (p *Plan) Prerequisites(st Step) []Step {
	k, ok := Kind(st.Kind)
	if !ok {
		return nil
	}
	var out []Step
	for _, s := range p.Steps {
		if s.ID == st.ID {
			break
		}
		for _, r := range k.Requires {
			if s.Kind == r.Kind && (r.Scope == AnyHost || (s.Host != "" && s.Host == st.Host)) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Why returns the reason st needs pre, from the table.
func Why(st, pre Step) string {
	k, _ := Kind(st.Kind)
	for _, r := range k.Requires {
		if r.Kind == pre.Kind {
			return r.Why
		}
	}
	return ""
}
