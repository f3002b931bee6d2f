package etcd

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Self is what one etcd server says about itself: the member it is and the cluster it is in,
// from the header of its own answer.
type Self struct {
	MemberID  uint64
	ClusterID uint64
}

// AskSelf asks the etcd at endpoint who it is, connecting through dial (a host's SSH tunnel, so
// the question is asked from that host and reaches the etcd running there, whatever the names
// and inventories say). It never goes through the cluster's balancer.
func (c *Client) AskSelf(ctx context.Context, endpoint string, dial DialFunc) (Self, error) {
	// A plain connect says at once that nothing listens (a stopped etcd): gRPC would wait
	// for its deadline.
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		d := dial
		if d == nil {
			var nd net.Dialer
			d = nd.DialContext
		}
		dctx, cancel := context.WithTimeout(ctx, connectTimeout)
		conn, err := d(dctx, "tcp", u.Host)
		cancel()
		if err != nil {
			return Self{}, fmt.Errorf("ask etcd at %s who it is: %w", endpoint, err)
		}
		conn.Close()
	}
	cfg := clientv3.Config{
		Endpoints:   []string{endpoint},
		TLS:         c.tls.Clone(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if dial != nil {
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		}))
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return Self{}, fmt.Errorf("ask etcd at %s who it is: %w", endpoint, err)
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	st, err := cli.Status(rctx, endpoint)
	if err != nil {
		return Self{}, fmt.Errorf("ask etcd at %s who it is: %w", endpoint, err)
	}
	return Self{MemberID: st.Header.GetMemberId(), ClusterID: st.Header.GetClusterId()}, nil
}

// MemberList is the linearizable member list: it needs a quorum, so what it says is the
// cluster's committed membership, not one member's possibly stale view.
func (c *Client) MemberList(ctx context.Context) ([]Member, error) {
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	list, err := c.cli.MemberList(rctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members via %v (linearizable): %w", c.endpoints, err)
	}
	var out []Member
	for _, pm := range list.Members {
		out = append(out, Member{ID: pm.ID, Name: pm.Name, IsLearner: pm.IsLearner,
			PeerURLs: append([]string(nil), pm.PeerURLs...), ClientURLs: append([]string(nil), pm.ClientURLs...)})
	}
	return out, nil
}
