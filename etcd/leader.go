package etcd

import (
	"context"
	"fmt"
	"time"
)

// leaderWait bounds the wait for a new leader to be confirmed.
var leaderWait = 30 * time.Second

// MoveLeader transfers leadership to member to and waits until the cluster confirms it. It is a
// no-op when to already leads.
func (c *Client) MoveLeader(ctx context.Context, to uint64) error {
	f, err := c.Observe(ctx)
	if err != nil {
		return fmt.Errorf("move etcd leader to %x: %w", to, err)
	}
	target, ok := f.Member(to)
	if !ok {
		return fmt.Errorf("move etcd leader to %x: not a member of cluster %x", to, f.ClusterID)
	}
	if f.LeaderID == to {
		return nil
	}
	switch {
	case target.IsLearner:
		return fmt.Errorf("move etcd leader to %s (%x): a learner cannot lead", target.Name, to)
	case !target.Healthy:
		return fmt.Errorf("move etcd leader to %s (%x): target not healthy: %s", target.Name, to, target.Error)
	}
	leader, ok := f.Leader()
	if !ok || !leader.Healthy || len(leader.ClientURLs) == 0 {
		return fmt.Errorf("move etcd leader to %s (%x): no healthy leader to hand over", target.Name, to)
	}
	cli, err := c.member(leader.ClientURLs[0])
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	_, err = cli.MoveLeader(rctx, to)
	cancel()
	if err != nil {
		return fmt.Errorf("move etcd leader from %s to %s (%x): %w", leader.Name, target.Name, to, err)
	}
	if err := c.waitLeader(ctx, target, func(id uint64) bool { return id == to }); err != nil {
		return fmt.Errorf("move etcd leader to %s (%x): %w", target.Name, to, err)
	}
	return nil
}

// waitLeader polls m until it reports a leader that satisfies ok.
func (c *Client) waitLeader(ctx context.Context, m Member, ok func(uint64) bool) error {
	if len(m.ClientURLs) == 0 {
		return fmt.Errorf("member %s has no client URL", m.Name)
	}
	ep := m.ClientURLs[0]
	cli, err := c.member(ep)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	var last string
	for {
		rctx, rcancel := context.WithTimeout(wctx, 2*time.Second)
		st, err := cli.Status(rctx, ep)
		rcancel()
		switch {
		case err != nil:
			last = err.Error()
		case ok(st.Leader):
			return nil
		default:
			last = fmt.Sprintf("%s reports leader %x", m.Name, st.Leader)
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("leader not confirmed within %s: %s: %w", leaderWait, last, wctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
