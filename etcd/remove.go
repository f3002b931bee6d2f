package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	// ErrQuorumAtRisk means a removal could leave the cluster without quorum.
	ErrQuorumAtRisk = errors.New("etcd quorum at risk")
	// ErrLeaderLeaving means the member to remove leads: leadership must move first.
	ErrLeaderLeaving = errors.New("etcd leader is leaving")
	// ErrNotMember means the member is not (or no longer) in the cluster.
	ErrNotMember = errors.New("not an etcd member")
)

type etcdMember = etcdserverpb.Member

// removeWait bounds the retries of a member removal and the wait for it to show.
var removeWait = 60 * time.Second

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

// RemoveMember removes member id after CheckRemoval passes on freshly observed facts, retrying
// while etcd answers "unhealthy cluster" (it does until peers have been connected for 5 s),
// then waits until the member list lacks it and a leader exists. A member that is already gone
// is success, so a rerun after a crash resumes.
func (c *Client) RemoveMember(ctx context.Context, id uint64, offline bool) error {
	f, err := c.Observe(ctx)
	if err != nil {
		return fmt.Errorf("remove etcd member %x: %w", id, err)
	}
	leaving, present := f.Member(id)
	name := fmt.Sprintf("%x", id)
	if present {
		name = fmt.Sprintf("%s (%x)", leaving.Name, id)
	}
	var stay []Member
	var eps []string
	for _, m := range f.Members {
		if m.ID != id {
			stay = append(stay, m)
			if m.Healthy && len(m.ClientURLs) > 0 {
				eps = append(eps, m.ClientURLs[0])
			}
		}
	}
	if present {
		if err := CheckRemoval(f, id, offline); err != nil {
			return err
		}
	}
	if len(eps) == 0 {
		return fmt.Errorf("remove etcd member %s: no healthy member that stays to ask", name)
	}
	// Ask only members that stay: the leaving one may go away mid-request.
	cli, err := c.newClient(eps...)
	if err != nil {
		return err
	}
	defer cli.Close()

	wctx, cancel := context.WithTimeout(ctx, removeWait)
	defer cancel()
	if present {
		// Leadership may have moved to the leaving member since the facts were read: ask a
		// member that stays right before the request. (etcd would take the removal, but a
		// 2-member cluster whose leader removes itself can be left without one.)
		if l := c.leaderAmong(ctx, stay, 0); l == id {
			return &RefusalError{Kind: ErrLeaderLeaving, Member: name, Reason: "it became the leader again just before its removal",
				WayOut: "move leadership to a member that stays first"}
		}
		if err := removeWithRetry(wctx, cli, id); err != nil {
			return fmt.Errorf("remove etcd member %s: %w", name, err)
		}
	}
	if err := c.waitRemoved(wctx, cli, id, stay); err != nil {
		return &UnconfirmedError{Member: name, Err: err}
	}
	return nil
}

// UnconfirmedError means a removal was sent but not confirmed: the member list still has the
// member, or no member that stays reports a leader. The cluster needs a look by hand.
type UnconfirmedError struct {
	Member string
	Err    error
}

func (e *UnconfirmedError) Error() string {
	return fmt.Sprintf("remove etcd member %s: %v", e.Member, e.Err)
}

func (e *UnconfirmedError) Unwrap() error { return e.Err }

// transient are answers after which the removal may simply be asked again: it either did not
// happen, or it did and the next attempt says "member not found".
var transient = []error{
	rpctypes.ErrUnhealthy, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
	rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader,
}

func removeWithRetry(ctx context.Context, cli *clientv3.Client, id uint64) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		_, err := cli.MemberRemove(rctx, id)
		cancel()
		if err == nil || isEtcdError(err, rpctypes.ErrMemberNotFound) {
			return nil
		}
		if !slices.ContainsFunc(transient, func(t error) bool { return isEtcdError(err, t) }) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still refused after retrying: %w (%w)", err, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitRemoved polls until a linearizable member list lacks id and a member that stays reports
// a leader other than id.
func (c *Client) waitRemoved(ctx context.Context, cli *clientv3.Client, id uint64, stay []Member) error {
	var last string
	for {
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		list, err := cli.MemberList(rctx)
		cancel()
		switch {
		case err != nil:
			last = fmt.Sprintf("member list: %v", err)
		case slices.ContainsFunc(list.Members, func(m *etcdMember) bool { return m.ID == id }):
			last = "still in the member list"
		default:
			if leader := c.leaderAmong(ctx, stay, id); leader != 0 {
				return nil
			}
			last = "no leader among the members that stay"
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("removal not confirmed: %s: %w", last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// leaderAmong returns the leader a staying member reports, 0 when none does.
func (c *Client) leaderAmong(ctx context.Context, stay []Member, removed uint64) uint64 {
	for _, m := range stay {
		if len(m.ClientURLs) == 0 {
			continue
		}
		cli, err := c.member(m.ClientURLs[0])
		if err != nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(rctx, m.ClientURLs[0])
		cancel()
		if err == nil && st.Leader != 0 && st.Leader != removed {
			return st.Leader
		}
	}
	return 0
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
