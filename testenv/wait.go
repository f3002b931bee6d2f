package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

func nopLogger() *zap.Logger { return zap.NewNop() }

// HTTPClient returns an HTTP client with the admin certificate and the lab CA whose sockets
// are made by dial (l.DialContext, or DialerIn of a machine's namespace).
func (l *Lab) HTTPClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*http.Client, error) {
	cfg, err := l.adminTLS()
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:         dial,
			TLSClientConfig:     cfg,
			MaxIdleConnsPerHost: 4,
			TLSHandshakeTimeout: 5 * time.Second,
		},
	}, nil
}

func (l *Lab) adminTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "admin.pem"), filepath.Join(l.PKIDir, "admin-key.pem"))
	if err != nil {
		return nil, fmt.Errorf("lab %s admin certificate: %w", l.Name, err)
	}
	pool, err := l.caPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func (l *Lab) caPool() (*x509.CertPool, error) {
	ca, err := os.ReadFile(filepath.Join(l.PKIDir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("lab %s CA: %w", l.Name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("lab %s CA %s: no certificate", l.Name, l.PKIDir)
	}
	return pool, nil
}

// EtcdClient returns an etcd client for the given endpoints (all members when none) with the
// lab's etcd client certificate, dialling inside the lab namespace. Give every call a deadline.
func (l *Lab) EtcdClient(endpoints ...string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = l.EtcdEndpoints()
	}
	cert, err := tls.LoadX509KeyPair(l.EtcdCert, l.EtcdKey)
	if err != nil {
		cert, err = tls.LoadX509KeyPair(filepath.Join(l.PKIDir, "etcd.pem"), filepath.Join(l.PKIDir, "etcd-key.pem"))
		if err != nil {
			return nil, fmt.Errorf("lab %s etcd certificate: %w", l.Name, err)
		}
	}
	// etcd's own CA where the layout has one (kubespray's), else the cluster CA.
	pool := x509.NewCertPool()
	if ca, err := os.ReadFile(l.EtcdCA); err != nil || !pool.AppendCertsFromPEM(ca) {
		if pool, err = l.caPool(); err != nil {
			return nil, err
		}
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return l.DialContext(ctx, "tcp", addr)
		})},
		Logger: nopLogger(),
	})
	if err != nil {
		return nil, fmt.Errorf("lab %s etcd client: %w", l.Name, err)
	}
	return c, nil
}

// poll calls check until it reports done, printing a heartbeat every 10 s.
func (l *Lab) poll(ctx context.Context, what string, check func(ctx context.Context) (bool, string)) error {
	start := time.Now()
	lastBeat := start
	status := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		done, s := check(cctx)
		cancel()
		if s != "" {
			status = s
		}
		if done {
			l.logf("%s [%s]", what, time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if time.Since(lastBeat) >= 10*time.Second {
			lastBeat = time.Now()
			l.logf("  still waiting: %s (%s) [%s elapsed]", what, status, time.Since(start).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab %s: waiting for %s: %w (last: %s)", l.Name, what, ctx.Err(), status)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitReady returns once every sshd answers, etcd has a leader and every member is healthy,
// every apiserver is ready, every worker Node is Ready and every machine's systemd is running.
func (l *Lab) waitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 6*time.Minute)
		defer cancel()
	}
	if err := l.poll(ctx, "sshd answering on every machine", func(ctx context.Context) (bool, string) {
		for _, m := range l.Machines {
			if err := sshBanner(ctx, l.DialContext, m.Address+":22"); err != nil {
				return false, m.Name + ": " + err.Error()
			}
		}
		return true, ""
	}); err != nil {
		return err
	}
	etcd, err := l.EtcdClient()
	if err != nil {
		return err
	}
	defer etcd.Close()
	if err := l.poll(ctx, "etcd: every member healthy, one leader", func(ctx context.Context) (bool, string) {
		leaders := map[uint64]bool{}
		for _, ep := range l.EtcdEndpoints() {
			st, err := etcd.Status(ctx, ep)
			if err != nil {
				return false, ep + ": " + err.Error()
			}
			if st.Leader == 0 {
				return false, ep + ": no leader"
			}
			leaders[st.Leader] = true
		}
		if len(leaders) != 1 {
			return false, fmt.Sprintf("members disagree on the leader: %v", leaders)
		}
		if _, err := etcd.Get(ctx, "health-check"); err != nil {
			return false, "read: " + err.Error()
		}
		return true, ""
	}); err != nil {
		return err
	}
	hc, err := l.HTTPClient(l.DialContext)
	if err != nil {
		return err
	}
	if err := l.poll(ctx, "every kube-apiserver /readyz", func(ctx context.Context) (bool, string) {
		for _, u := range l.APIServerURLs() {
			if code, body, err := get(ctx, hc, u+"/readyz"); err != nil || code != 200 {
				return false, fmt.Sprintf("%s: %d %v %s", u, code, err, lastLine(body))
			}
		}
		return true, ""
	}); err != nil {
		return err
	}
	if l.Workers > 0 {
		if err := l.poll(ctx, "every worker Node Ready", func(ctx context.Context) (bool, string) {
			for _, m := range l.Machines {
				if !l.hasRole(m, "worker") {
					continue
				}
				ready, err := nodeReady(ctx, hc, l.APIServerURLs()[0], m.Name)
				if err != nil || !ready {
					return false, fmt.Sprintf("node %s: ready=%v %v", m.Name, ready, err)
				}
			}
			return true, ""
		}); err != nil {
			return err
		}
	}
	if err := l.poll(ctx, "controller-manager and scheduler leaders elected", func(ctx context.Context) (bool, string) {
		for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
			code, body, err := get(ctx, hc, l.APIServerURLs()[0]+"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+lease)
			if err != nil || code != 200 {
				return false, fmt.Sprintf("lease %s: %d %v", lease, code, err)
			}
			var ls struct {
				Spec struct{ HolderIdentity string }
			}
			if json.Unmarshal([]byte(body), &ls) != nil || ls.Spec.HolderIdentity == "" {
				return false, "lease " + lease + " has no holder"
			}
		}
		return true, ""
	}); err != nil {
		return err
	}
	return l.poll(ctx, "every lab unit active, systemd running on every machine", func(ctx context.Context) (bool, string) {
		for _, m := range l.Machines {
			out, err := l.Exec(ctx, m.Name, append([]string{"systemctl", "is-active"}, l.Units(m)...)...)
			if err != nil {
				return false, fmt.Sprintf("%s: units %v: %s", m.Name, l.Units(m), strings.Join(strings.Fields(string(out)), " "))
			}
			out, _ = l.Exec(ctx, m.Name, "systemctl", "is-system-running")
			if s := strings.TrimSpace(string(out)); s != "running" {
				return false, m.Name + ": " + s
			}
		}
		return true, ""
	})
}

func sshBanner(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) error {
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("not an ssh banner: %q", line)
	}
	return nil
}

func get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

func nodeReady(ctx context.Context, c *http.Client, server, name string) (bool, error) {
	code, body, err := get(ctx, c, server+"/api/v1/nodes/"+name)
	if err != nil {
		return false, err
	}
	if code != 200 {
		return false, fmt.Errorf("GET node %s: %d %s", name, code, lastLine(body))
	}
	var n struct {
		Status struct {
			Conditions []struct{ Type, Status string }
		}
	}
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		return false, fmt.Errorf("node %s: %w", name, err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True", nil
		}
	}
	return false, nil
}

// dumpFailures prints, for every machine, its failed units and their last journal lines.
func (l *Lab) dumpFailures(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, m := range l.Machines {
		if m.PID == 0 || !alive(m.PID) {
			continue
		}
		out, _ := l.Exec(ctx, m.Name, "systemctl", "list-units", "--state=failed,activating,auto-restart", "--no-legend", "--plain", "--no-pager")
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			j, _ := l.Exec(ctx, m.Name, "journalctl", "-u", f[0], "-n", "15", "--no-pager", "-o", "cat")
			l.logf("%s: %s\n%s", m.Name, line, j)
		}
	}
}
