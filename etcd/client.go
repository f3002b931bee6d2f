package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// rpcTimeout bounds one unary request, because clientv3 waits forever for an endpoint that
// never answers.
const rpcTimeout = 10 * time.Second

// TLSFiles is the client side of a cluster's TLS: PEM contents, read from a host by the caller.
type TLSFiles struct {
	CA   []byte
	Cert []byte
	Key  []byte
}

// DialFunc opens a TCP connection to addr ("ip:port"); nil dials directly. SSH tunnels and the
// lab's network namespace pass one.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Client talks to one etcd cluster. It keeps one connection to all endpoints for cluster-wide
// requests and opens single-endpoint connections where a request must reach one member.
type Client struct {
	endpoints []string
	tls       *tls.Config
	dial      DialFunc
	cli       *clientv3.Client

	mu     sync.Mutex
	single map[string]*clientv3.Client
}

// Dial connects to the cluster and checks that it answers (a member list). Every request the
// client makes is bounded by ctx and by its own timeout.
func Dial(ctx context.Context, endpoints []string, files TLSFiles, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("dial etcd: no endpoints")
	}
	tlsConf, err := tlsConfig(files)
	if err != nil {
		return nil, fmt.Errorf("dial etcd %v: %w", endpoints, err)
	}
	c := &Client{endpoints: append([]string(nil), endpoints...), tls: tlsConf, dial: dial, single: map[string]*clientv3.Client{}}
	if c.cli, err = c.newClient(endpoints...); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if _, err := c.cli.MemberList(rctx, clientv3.WithSerializable()); err != nil {
		c.cli.Close()
		return nil, fmt.Errorf("dial etcd %v: %w", endpoints, err)
	}
	return c, nil
}

// tlsConfig builds the client TLS configuration from PEM bytes, so no key touches the disk.
func tlsConfig(files TLSFiles) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(files.CA) {
		return nil, errors.New("etcd CA: no PEM certificate found")
	}
	pair, err := tls.X509KeyPair(files.Cert, files.Key)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate and key: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

func (c *Client) newClient(endpoints ...string) (*clientv3.Client, error) {
	return c.newClientWith(nil, endpoints...)
}

// newClientWith is newClient with extra gRPC dial options (the snapshot's codec).
func (c *Client) newClientWith(opts []grpc.DialOption, endpoints ...string) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		TLS:         c.tls.Clone(),
		DialTimeout: 5 * time.Second,
		// Without keepalives a tunnel that died silently would hang a snapshot stream.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
		MaxCallRecvMsgSize:   64 << 20,
		Logger:               zap.NewNop(),
		DialOptions:          opts,
	}
	if c.dial != nil {
		dial := c.dial
		// clientv3 appends DialOptions after its own dialer, so this one wins.
		cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		}))
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// member returns a client whose only endpoint is ep: MoveLeader and Snapshot must reach the
// leader itself, and a health probe must test one member, not the balancer's choice.
func (c *Client) member(ep string) (*clientv3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cli, ok := c.single[ep]; ok {
		return cli, nil
	}
	cli, err := c.newClient(ep)
	if err != nil {
		return nil, err
	}
	c.single[ep] = cli
	return cli, nil
}

// Endpoints returns the endpoints the client was dialled with.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for ep, cli := range c.single {
		if err := cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("close etcd client %s: %w", ep, err))
		}
		delete(c.single, ep)
	}
	if err := c.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("close etcd client: %w", err))
	}
	return errors.Join(errs...)
}

// isEtcdError compares by description: depending on the path an error takes through clientv3
// it is a gRPC status or an rpctypes.EtcdError.
func isEtcdError(err, target error) bool {
	return err != nil && rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(target)
}

// Diagnose says, for each endpoint, why it does not answer: nothing listens, the connection
// times out, TLS fails (whose certificate, and which way), or it answers. An error of Dial
// names the endpoints; this names the cause at each, so an unreachable etcd does not read as
// lock contention or a bad certificate as a network problem.
func Diagnose(ctx context.Context, endpoints []string, files TLSFiles, dial DialFunc) []string {
	conf, err := tlsConfig(files)
	if err != nil {
		return []string{err.Error()}
	}
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	var out []string
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" {
			out = append(out, fmt.Sprintf("%s: not a URL", ep))
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := dial(dctx, "tcp", u.Host)
		cancel()
		if err != nil {
			out = append(out, fmt.Sprintf("%s: cannot connect (%v)", ep, err))
			continue
		}
		c := conf.Clone()
		c.ServerName = u.Hostname()
		tc := tls.Client(conn, c)
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		err = tc.HandshakeContext(hctx)
		hcancel()
		if err == nil {
			// With TLS 1.3 the server judges our certificate after the handshake: its verdict
			// is an alert on the first read; a server that took it waits for our request.
			tc.SetReadDeadline(time.Now().Add(time.Second))
			var b [1]byte
			if _, rerr := tc.Read(b[:]); rerr != nil && strings.Contains(rerr.Error(), "remote error") {
				err = rerr
			}
		}
		tc.Close()
		var unknown x509.UnknownAuthorityError
		var host x509.HostnameError
		switch {
		case err == nil:
			out = append(out, fmt.Sprintf("%s: TLS works; etcd itself does not answer (no quorum, or still starting?)", ep))
		case errors.As(err, &unknown):
			out = append(out, fmt.Sprintf("%s: its certificate is not signed by the etcd CA given (etcd_ca_cert in the inventory)", ep))
		case errors.As(err, &host):
			out = append(out, fmt.Sprintf("%s: its certificate does not name %s (%v)", ep, u.Hostname(), err))
		case strings.Contains(err.Error(), "bad certificate") || strings.Contains(err.Error(), "unknown certificate authority"):
			out = append(out, fmt.Sprintf("%s: etcd refused our client certificate (etcd_cert and etcd_key in the inventory: signed by its --trusted-ca-file?)", ep))
		default:
			out = append(out, fmt.Sprintf("%s: TLS handshake failed: %v", ep, err))
		}
	}
	return out
}
