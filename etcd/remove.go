package etcd

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type etcdMember = etcdserverpb.Member

// removeWait bounds the retries of a member removal and the wait for it to show.
var removeWait = 60 * time.Second

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
