package etcd

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Observe lists the members and asks each one for its status and a linearizable read. A member
// that cannot be reached is reported unhealthy with the reason, not as an error; only a cluster
// that cannot even list its members is an error.
func (c *Client) Observe(ctx context.Context) (Facts, error) {
	// A serializable list answers even without a quorum, so a broken cluster is still
	// described; it is replaced by the linearizable list whenever a quorum exists.
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	list, err := c.cli.MemberList(rctx, clientv3.WithSerializable())
	cancel()
	if err != nil {
		return Facts{}, fmt.Errorf("list etcd members via %v: %w", c.endpoints, err)
	}
	f := c.probeAll(ctx, list)
	if !slices.ContainsFunc(f.Members, func(m Member) bool { return m.Healthy }) {
		return f, nil
	}
	rctx, cancel = context.WithTimeout(ctx, rpcTimeout)
	lin, err := c.cli.MemberList(rctx)
	cancel()
	if err != nil {
		return Facts{}, fmt.Errorf("list etcd members via %v (linearizable): %w", c.endpoints, err)
	}
	if !sameMembers(list, lin) {
		f = c.probeAll(ctx, lin)
	}
	f.ClusterID = lin.Header.GetClusterId()
	return f, nil
}

func sameMembers(a, b *clientv3.MemberListResponse) bool {
	if len(a.Members) != len(b.Members) {
		return false
	}
	for i := range a.Members {
		x, y := a.Members[i], b.Members[i]
		if x.ID != y.ID || x.Name != y.Name || x.IsLearner != y.IsLearner ||
			!slices.Equal(x.PeerURLs, y.PeerURLs) || !slices.Equal(x.ClientURLs, y.ClientURLs) {
			return false
		}
	}
	return true
}

// probeAll probes every listed member in parallel.
func (c *Client) probeAll(ctx context.Context, list *clientv3.MemberListResponse) Facts {
	f := Facts{ClusterID: list.Header.GetClusterId()}
	f.Members = make([]Member, len(list.Members))
	leaders := make([]uint64, len(list.Members))
	var wg sync.WaitGroup
	for i, pm := range list.Members {
		f.Members[i] = Member{
			ID: pm.ID, Name: pm.Name, IsLearner: pm.IsLearner,
			PeerURLs: append([]string(nil), pm.PeerURLs...), ClientURLs: append([]string(nil), pm.ClientURLs...),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			leaders[i] = c.probe(ctx, &f.Members[i])
		}()
	}
	wg.Wait()
	f.LeaderID = agreedLeader(f.Members, leaders)
	for i := range f.Members {
		f.Members[i].IsLeader = f.LeaderID != 0 && f.Members[i].ID == f.LeaderID
	}
	sort.Slice(f.Members, func(i, j int) bool {
		a, b := f.Members[i], f.Members[j]
		if (a.Name == "") != (b.Name == "") {
			return b.Name == ""
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ID < b.ID
	})
	return f
}

// agreedLeader is the leader named by most healthy members; a stale member may name an old one.
func agreedLeader(ms []Member, leaders []uint64) uint64 {
	votes := map[uint64]int{}
	var best uint64
	for i, m := range ms {
		if !m.Healthy || leaders[i] == 0 {
			continue
		}
		votes[leaders[i]]++
		if votes[leaders[i]] > votes[best] || (votes[leaders[i]] == votes[best] && leaders[i] < best) {
			best = leaders[i]
		}
	}
	return best
}

// probe fills m's status and health and returns the leader it reports.
func (c *Client) probe(ctx context.Context, m *Member) uint64 {
	if len(m.ClientURLs) == 0 {
		m.Error = "member has not started (no client URLs)"
		return 0
	}
	ep := m.ClientURLs[0]
	// gRPC waits for a connection until the deadline; a plain connect says at once that
	// nothing listens, so a stopped member costs milliseconds, not the request timeout.
	if err := c.reachable(ctx, ep); err != nil {
		m.Error = err.Error()
		return 0
	}
	cli, err := c.member(ep)
	if err != nil {
		m.Error = err.Error()
		return 0
	}
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	st, err := cli.Status(rctx, ep)
	if err != nil {
		m.Error = fmt.Sprintf("status from %s: %v", ep, err)
		return 0
	}
	m.Version = st.Version
	m.DBSize = st.DbSize
	m.RaftTerm = st.RaftTerm
	m.RaftIndex = st.RaftIndex
	m.RaftAppliedIndex = st.RaftAppliedIndex
	var problems []string
	problems = append(problems, st.Errors...)
	if st.Leader == 0 {
		// Without a leader the read below could only time out.
		problems = append(problems, "no leader")
	} else {
		// As etcdctl endpoint health: a linearizable read needs the member to reach a
		// quorum. Permission denied still proves that.
		hctx, hcancel := context.WithTimeout(ctx, healthTimeout)
		_, err := cli.Get(hctx, "health")
		hcancel()
		if err != nil && !isEtcdError(err, rpctypes.ErrPermissionDenied) {
			problems = append(problems, fmt.Sprintf("linearizable read from %s: %v", ep, err))
		}
	}
	if len(problems) > 0 {
		m.Error = strings.Join(problems, "; ")
		return st.Leader
	}
	m.Healthy = true
	return st.Leader
}

// healthTimeout is etcdctl endpoint health's own timeout.
const healthTimeout = 5 * time.Second

// connectTimeout bounds the reachability check of one member.
const connectTimeout = 3 * time.Second

func (c *Client) reachable(ctx context.Context, ep string) error {
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" {
		return nil // not a URL this check understands; the status request will tell
	}
	dial := c.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := dial(dctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", ep, err)
	}
	conn.Close()
	return nil
}
