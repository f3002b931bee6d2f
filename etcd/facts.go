package etcd

import (
	"github.com/mastershrink/mastershrink/etcd/etcdfacts"
	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/unitfile"
)

// The facts and the pure rules live in package etcdfacts, which the planner imports without
// the etcd client; these names keep them where the executors and tests look for them.
type (
	// Member is one etcd member as the cluster lists it and as it answers for itself.
	Member = etcdfacts.Member
	// Facts is what Observe found: the cluster, its leader and every member.
	Facts = etcdfacts.Facts
	// RefusalError is a removal mastershrink will not do: why, and the way out.
	RefusalError = etcdfacts.RefusalError
)

// Errors of the removal rules and of the leader choice (see etcdfacts).
var (
	ErrQuorumAtRisk  = etcdfacts.ErrQuorumAtRisk
	ErrLeaderLeaving = etcdfacts.ErrLeaderLeaving
	ErrNotMember     = etcdfacts.ErrNotMember
	ErrNoCandidate   = etcdfacts.ErrNoCandidate
)

// FormatID prints a member or cluster ID as etcdctl does.
func FormatID(id uint64) string { return etcdfacts.FormatID(id) }

// ParseID reads an ID printed by FormatID or etcdctl.
func ParseID(s string) (uint64, error) { return etcdfacts.ParseID(s) }

// Quorum is the number of voting members that must agree in a cluster of n voters.
func Quorum(n int) int { return etcdfacts.Quorum(n) }

// CheckRemoval says whether removing member remove is safe given f (see etcdfacts.CheckRemoval).
func CheckRemoval(f Facts, remove uint64, offline bool) error {
	return etcdfacts.CheckRemoval(f, remove, offline)
}

// PickNewLeader chooses who should lead once the leaving members are gone (see
// etcdfacts.PickNewLeader).
func PickNewLeader(f Facts, leaving []uint64) (uint64, error) {
	return etcdfacts.PickNewLeader(f, leaving)
}

// InitialClusterFor is the --initial-cluster value for the named survivors (see
// etcdfacts.InitialClusterFor).
func InitialClusterFor(f Facts, survivors []string) string {
	return etcdfacts.InitialClusterFor(f, survivors)
}

// PlanSurvivorUnit computes the rewrite of a surviving member's unit (see
// etcdfacts.PlanSurvivorUnit).
func PlanSurvivorUnit(u *unitfile.Unit, hostName, initialCluster string) ([]machine.FileChange, error) {
	return etcdfacts.PlanSurvivorUnit(u, hostName, initialCluster)
}
