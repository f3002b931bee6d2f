package etcdfacts

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

var (
	// ErrQuorumAtRisk means a removal could leave the cluster without quorum.
	ErrQuorumAtRisk = errors.New("etcd quorum at risk")
	// ErrLeaderLeaving means the member to remove leads: leadership must move first.
	ErrLeaderLeaving = errors.New("etcd leader is leaving")
	// ErrNotMember means the member is not (or no longer) in the cluster.
	ErrNotMember = errors.New("not an etcd member")
)

// RefusalError is a removal mastershrink will not do: why, and the way out. Kind is
// ErrQuorumAtRisk or ErrLeaderLeaving, so errors.Is works on both.
type RefusalError struct {
	Kind   error
	Member string // "name (hex id)"
	Reason string
	WayOut string
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("refusing to remove etcd member %s: %s; %s", e.Member, e.Reason, e.WayOut)
}

func (e *RefusalError) Unwrap() error { return e.Kind }

// Quorum is the number of voting members that must agree in a cluster of n voters.
func Quorum(n int) int { return n/2 + 1 }

// CheckRemoval says whether removing member remove is safe given f: the members that stay must
// all be healthy and form a quorum of the membership after removal; the cluster must be able
// to commit the change now; the leaving member must be alive unless offline (then quorum is
// counted without it); it must not lead; and it must not be the last member.
func CheckRemoval(f Facts, remove uint64, offline bool) error {
	leaving, ok := f.Member(remove)
	if !ok {
		return fmt.Errorf("check removal of etcd member %x from cluster %x: %w", remove, f.ClusterID, ErrNotMember)
	}
	who := fmt.Sprintf("%s (%x)", leaving.Name, leaving.ID)
	refuse := func(kind error, reason, wayOut string) error {
		return &RefusalError{Kind: kind, Member: who, Reason: reason, WayOut: wayOut}
	}
	var stay []Member
	for _, m := range f.Members {
		if m.ID != remove {
			stay = append(stay, m)
		}
	}
	if len(stay) == 0 {
		return refuse(ErrQuorumAtRisk, "it is the last member of the cluster",
			"keep at least one member; to retire this etcd, take a snapshot and stop it by hand")
	}
	var votersNow, votersAfter, upNow int
	var sick []string
	for _, m := range f.Members {
		if m.IsLearner {
			continue
		}
		votersNow++
		if m.ID != remove {
			votersAfter++
		}
		if m.Healthy && !(m.ID == remove && offline) {
			upNow++
		}
	}
	for _, m := range stay {
		if !m.Healthy {
			sick = append(sick, fmt.Sprintf("%s (%x): %s", m.Name, m.ID, orUnknown(m.Error)))
		}
	}
	if len(sick) > 0 {
		return refuse(ErrQuorumAtRisk,
			fmt.Sprintf("%d of the %d members that would stay are not healthy: %s", len(sick), len(stay), strings.Join(sick, "; ")),
			"bring them back and check `etcdctl endpoint health --cluster` before removing anything")
	}
	if votersAfter == 0 {
		return refuse(ErrQuorumAtRisk, "only learners would stay, and learners cannot form a quorum",
			"promote a learner first (etcdctl member promote)")
	}
	if !offline && !leaving.Healthy {
		return refuse(ErrQuorumAtRisk,
			fmt.Sprintf("it is not healthy (%s), so quorum cannot be checked with it", orUnknown(leaving.Error)),
			"start it again, or, if its host is gone for good, plan its removal as offline")
	}
	// The removal is itself a raft entry: the current membership must be able to commit it.
	if need := Quorum(votersNow); upNow < need {
		return refuse(ErrQuorumAtRisk,
			fmt.Sprintf("only %d of %d voting members are up, fewer than the quorum of %d needed to commit the removal", upNow, votersNow, need),
			"start the missing member again; if it is lost for good, restore the snapshot into a new cluster (etcdutl snapshot restore)")
	}
	if f.LeaderID == 0 {
		return refuse(ErrQuorumAtRisk, "the cluster has no leader", "wait for an election and observe again")
	}
	if remove == f.LeaderID {
		return refuse(ErrLeaderLeaving, "it is the leader",
			"move leadership to a member that stays first (MoveLeader to PickNewLeader's choice)")
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// InitialClusterFor is the --initial-cluster value for the named survivors
// ("name=https://ip:2380,..."), in the order of f.Members (sorted by name). Names that are not
// members are left out; compare the result with the survivors when that matters.
func InitialClusterFor(f Facts, survivors []string) string {
	var parts []string
	for _, m := range f.Members {
		if !slices.Contains(survivors, m.Name) {
			continue
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, m.Name+"="+u)
		}
	}
	return strings.Join(parts, ",")
}

// ErrNoCandidate means no member can take over leadership.
var ErrNoCandidate = errors.New("no healthy voting member to take leadership")

// PickNewLeader chooses who should lead once the leaving members are gone: the current leader
// when it stays, else the healthy staying voter with the highest raft applied index (the most
// up-to-date log, so the transfer is quickest), ties broken by name.
func PickNewLeader(f Facts, leaving []uint64) (uint64, error) {
	if f.LeaderID != 0 && !slices.Contains(leaving, f.LeaderID) {
		if l, ok := f.Leader(); ok && l.Healthy {
			return l.ID, nil
		}
	}
	var best *Member
	for i := range f.Members {
		m := &f.Members[i]
		if slices.Contains(leaving, m.ID) || !m.Healthy || m.IsLearner {
			continue
		}
		if best == nil || m.RaftAppliedIndex > best.RaftAppliedIndex ||
			(m.RaftAppliedIndex == best.RaftAppliedIndex && m.Name < best.Name) {
			best = m
		}
	}
	if best == nil {
		return 0, fmt.Errorf("pick new etcd leader of cluster %x: %w", f.ClusterID, ErrNoCandidate)
	}
	return best.ID, nil
}
