package observe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/mastershrink/mastershrink/inventory"
)

// EtcdKV returns a plain etcd v3 client for keys, leases and transactions (the apply lock),
// with the same TLS material and routes as Etcd. The caller closes it.
func (c *Cluster) EtcdKV(ctx context.Context) (*clientv3.Client, error) {
	var endpoints []string
	var tlsConf *tls.Config
	var lastErr error
	for _, ih := range c.Inv.HostsWithRole(inventory.RoleEtcd) {
		endpoints = append(endpoints, net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.EtcdClientPort)))
		if tlsConf != nil {
			continue
		}
		h, err := c.Host(ctx, ih.Name)
		if err != nil {
			lastErr = err
			continue
		}
		files, err := readAll(ctx, h, ih.Paths.EtcdCACert, ih.Paths.EtcdCert, ih.Paths.EtcdKey)
		if err != nil {
			lastErr = fmt.Errorf("read etcd client TLS material on %s: %w", ih.Name, err)
			continue
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(files[0]) {
			lastErr = fmt.Errorf("etcd CA on %s: no PEM certificate", ih.Name)
			continue
		}
		pair, err := tls.X509KeyPair(files[1], files[2])
		if err != nil {
			lastErr = fmt.Errorf("etcd client certificate on %s: %w", ih.Name, err)
			continue
		}
		tlsConf = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	if len(endpoints) == 0 {
		return nil, errors.New("the inventory has no host with the etcd role")
	}
	if tlsConf == nil {
		return nil, fmt.Errorf("no etcd host could give the client TLS material: %w", lastErr)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsConf,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
		Logger:               zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return c.etcdDial(ctx, "tcp", addr)
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}
