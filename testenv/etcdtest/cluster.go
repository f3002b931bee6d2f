package etcdtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Options shape a test cluster. The zero value (plus Members) is a 3.5 cluster.
type Options struct {
	// Members is the number of members, 1 to 9.
	Members int
	// Version is an etcd release such as "v3.5.21" or "v3.6.16"; empty means the
	// MASTERSHRINK_ETCD_VERSION environment variable, then DefaultVersion.
	Version string
	// QuotaBackendBytes raises etcd's 2 GB default so large-keyspace benchmarks fit; 0 means 8 GiB.
	QuotaBackendBytes int64
	// ReadyTimeout bounds the wait for every member and a leader; 0 means 60 s.
	ReadyTimeout time.Duration
}

// Cluster is a running multi-member TLS etcd cluster of real etcd processes, one per loopback
// address (127.0.0.1, 127.0.0.2, ...). Members are indexed from 0.
type Cluster struct {
	opts    Options
	version string
	binDir  string
	dir     string
	pki     *pki
	members []*member
}

type member struct {
	name      string
	ip        string
	client    string // https://ip:port
	peer      string
	dataDir   string
	logPath   string
	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	exitError error
}

// Start brings up a TLS cluster of members real etcd processes and waits until every member
// answers and a leader exists. t.Cleanup kills every member and removes the data.
func Start(t testing.TB, members int) *Cluster {
	t.Helper()
	return StartWith(t, Options{Members: members})
}

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Members < 1 || opts.Members > 9 {
		t.Fatalf("etcdtest: %d members asked, want 1 to 9", opts.Members)
	}
	if opts.Version == "" {
		opts.Version = os.Getenv(VersionEnv)
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.QuotaBackendBytes == 0 {
		opts.QuotaBackendBytes = 8 << 30
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	binDir, err := BinDir(opts.Version)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	c := &Cluster{opts: opts, version: opts.Version, binDir: binDir, dir: t.TempDir()}

	var ips []net.IP
	for i := 0; i < opts.Members; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		ips = append(ips, net.ParseIP(ip))
		cp, err := freePort(ip)
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		pp, err := freePort(ip)
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		name := fmt.Sprintf("m%d", i+1)
		c.members = append(c.members, &member{
			name:    name,
			ip:      ip,
			client:  fmt.Sprintf("https://%s:%d", ip, cp),
			peer:    fmt.Sprintf("https://%s:%d", ip, pp),
			dataDir: filepath.Join(c.dir, name+".etcd"),
			logPath: filepath.Join(c.dir, name+".log"),
		})
	}
	if c.pki, err = writePKI(c.dir, ips); err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	// Registered after t.TempDir, so it runs before the folder is removed.
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t, 25)
		}
		c.killAll()
	})
	for i := range c.members {
		if err := c.Start(i); err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.ReadyTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		c.logTails(t, 25)
		t.Fatalf("etcdtest: cluster of %d members (etcd %s) not ready: %v", opts.Members, c.version, err)
	}
	return c
}

func (c *Cluster) args(m *member) []string {
	var initial []string
	for _, o := range c.members {
		initial = append(initial, o.name+"="+o.peer)
	}
	p := c.pki
	return []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.client,
		"--advertise-client-urls", m.client,
		"--listen-peer-urls", m.peer,
		"--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "etcdtest-" + filepath.Base(c.dir),
		"--client-cert-auth", "--trusted-ca-file", p.ca, "--cert-file", p.serverCert, "--key-file", p.serverK,
		"--peer-client-cert-auth", "--peer-trusted-ca-file", p.ca, "--peer-cert-file", p.peerCert, "--peer-key-file", p.peerK,
		"--quota-backend-bytes", strconv.FormatInt(c.opts.QuotaBackendBytes, 10),
	}
}

// Start (re)starts member i's process with its original flags; a member whose data dir exists
// ignores the --initial-cluster flags, as a restarted production member does. It does not wait.
func (c *Cluster) Start(i int) error {
	m, err := c.member(i)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil && !exited(m.done) {
		return nil
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("etcd member %s log: %w", m.name, err)
	}
	cmd := exec.Command(filepath.Join(c.binDir, "etcd"), c.args(m)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group so signals reach only it; Pdeathsig so a killed test run leaves no etcd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start etcd member %s: %w", m.name, err)
	}
	done := make(chan struct{})
	m.cmd, m.done, m.exitError = cmd, done, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		m.mu.Lock()
		m.exitError = err
		m.mu.Unlock()
		close(done)
	}()
	return nil
}

// Stop stops member i gracefully (SIGTERM, then SIGKILL after 15 s) and waits for it to exit.
// Stopping a member that is not running is a no-op.
func (c *Cluster) Stop(i int) error {
	return c.signal(i, syscall.SIGTERM, 15*time.Second)
}

// Kill kills member i (SIGKILL), as a crash or a pulled plug would, and waits for it to exit.
func (c *Cluster) Kill(i int) error {
	return c.signal(i, syscall.SIGKILL, 15*time.Second)
}

func (c *Cluster) signal(i int, sig syscall.Signal, grace time.Duration) error {
	m, err := c.member(i)
	if err != nil {
		return err
	}
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil || exited(done) {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal etcd member %s: %w", m.name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("etcd member %s (pid %d) did not exit after SIGKILL", m.name, cmd.Process.Pid)
	}
}

// Running reports whether member i's process is alive.
func (c *Cluster) Running(i int) bool {
	m, err := c.member(i)
	if err != nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil && !exited(m.done)
}

// WaitExit waits until member i's process has exited (a removed member exits by itself) and
// returns its exit error (nil for status 0).
func (c *Cluster) WaitExit(ctx context.Context, i int) error {
	m, err := c.member(i)
	if err != nil {
		return err
	}
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.exitError
	case <-ctx.Done():
		return fmt.Errorf("wait for etcd member %s to exit: %w", m.name, ctx.Err())
	}
}

func (c *Cluster) killAll() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Kill(i)
		}()
	}
	wg.Wait()
}

// WaitReady waits until every running member answers a status request and reports a leader.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for i := range c.members {
		if !c.Running(i) {
			continue
		}
		if err := c.WaitMember(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// WaitMember waits until member i answers a status request and knows a leader.
func (c *Cluster) WaitMember(ctx context.Context, i int) error {
	m, err := c.member(i)
	if err != nil {
		return err
	}
	cli, err := c.newClient(m.client)
	if err != nil {
		return err
	}
	defer cli.Close()
	var last error
	for {
		if !c.Running(i) {
			return fmt.Errorf("etcd member %s exited: %v (log %s)", m.name, c.exitErr(m), m.logPath)
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.client)
		cancel()
		switch {
		case err != nil:
			last = err
		case st.Leader == 0:
			last = errors.New("no leader yet")
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd member %s at %s: %w (last: %v)", m.name, m.client, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) exitErr(m *member) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exitError
}

// Client returns a client of the given members' endpoints (every member when none is named),
// closed by t.Cleanup.
func (c *Cluster) Client(t testing.TB, members ...int) *clientv3.Client {
	t.Helper()
	var eps []string
	if len(members) == 0 {
		eps = c.Endpoints()
	}
	for _, i := range members {
		eps = append(eps, c.Endpoint(i))
	}
	cli, err := c.newClient(eps...)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) newClient(endpoints ...string) (*clientv3.Client, error) {
	tlsConf, err := c.ClientTLSConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsConf,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// ClientTLSConfig is the client side of the cluster's TLS: the CA and the client certificate.
func (c *Cluster) ClientTLSConfig() (*tls.Config, error) {
	caPEM, err := os.ReadFile(c.pki.ca)
	if err != nil {
		return nil, fmt.Errorf("read test CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("test CA %s holds no certificate", c.pki.ca)
	}
	pair, err := tls.LoadX509KeyPair(c.pki.client.Cert, c.pki.client.Key)
	if err != nil {
		return nil, fmt.Errorf("load test client certificate: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// TLS returns the paths of the CA and of the client certificate and key.
func (c *Cluster) TLS() TLSPaths { return c.pki.client }

// Endpoints returns every member's client URL, in member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.client
	}
	return eps
}

// Endpoint returns member i's client URL.
func (c *Cluster) Endpoint(i int) string { return c.members[i].client }

// PeerURL returns member i's peer URL.
func (c *Cluster) PeerURL(i int) string { return c.members[i].peer }

// Name returns member i's etcd name (m1, m2, ...).
func (c *Cluster) Name(i int) string { return c.members[i].name }

// IP returns member i's loopback address.
func (c *Cluster) IP(i int) string { return c.members[i].ip }

// DataDir returns member i's data directory.
func (c *Cluster) DataDir(i int) string { return c.members[i].dataDir }

// LogPath returns the file holding member i's output.
func (c *Cluster) LogPath(i int) string { return c.members[i].logPath }

// Size returns the number of members the cluster was started with.
func (c *Cluster) Size() int { return len(c.members) }

// Version returns the etcd release the cluster runs.
func (c *Cluster) Version() string { return c.version }

// BinDir returns the folder of the etcd, etcdctl (and etcdutl) binaries the cluster uses.
func (c *Cluster) BinDir() string { return c.binDir }

// Index returns the member index of an etcd name, or -1.
func (c *Cluster) Index(name string) int {
	for i, m := range c.members {
		if m.name == name {
			return i
		}
	}
	return -1
}

func (c *Cluster) member(i int) (*member, error) {
	if i < 0 || i >= len(c.members) {
		return nil, fmt.Errorf("etcd member index %d out of range (cluster of %d)", i, len(c.members))
	}
	return c.members[i], nil
}

func (c *Cluster) logTails(t testing.TB, n int) {
	for _, m := range c.members {
		f, err := os.Open(m.logPath)
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if len(lines) > n {
				lines = lines[1:]
			}
		}
		f.Close()
		t.Logf("etcdtest: last lines of %s:\n%s", m.logPath, strings.Join(lines, "\n"))
	}
}

func exited(done chan struct{}) bool {
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
