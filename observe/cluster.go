package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
)

// DialFunc makes TCP connections from the operator's machine; nil is the plain dialer. Tests
// pass one that makes sockets inside the lab's network namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Options tune how the cluster is reached.
type Options struct {
	Dial DialFunc
	// Concurrency bounds the hosts reached at once.
	Concurrency int
	// Kubeconfig replaces the inventory's kubeconfig (the --kubeconfig flag); it must exist.
	Kubeconfig string
	// KubeconfigPaths replaces it with a list merged as kubectl merges KUBECONFIG: the first
	// file to set a value wins, missing files are skipped. Ignored when Kubeconfig is set.
	KubeconfigPaths []string
	// Context is the kubeconfig context to use instead of its current-context.
	Context string
}

// Cluster holds the connections to one cluster: its hosts, etcd and the Kubernetes API.
// Connections are opened lazily and kept until Close.
type Cluster struct {
	Inv  *inventory.Inventory
	opts Options

	mu       sync.Mutex
	hosts    map[string]host.Host
	hostErrs map[string]error
	etcd     *etcd.Client
	kube     kubernetes.Interface
	rest     *rest.Config
}

// Open prepares a cluster; nothing is dialled yet.
func Open(inv *inventory.Inventory, opts Options) *Cluster {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 32
	}
	return &Cluster{Inv: inv, opts: opts, hosts: map[string]host.Host{}, hostErrs: map[string]error{}}
}

// Host returns a connection to a host, dialling it on first use and again once a call found
// the connection lost (such a call returns *ConnectionLostError).
func (c *Cluster) Host(ctx context.Context, name string) (host.Host, error) {
	c.mu.Lock()
	if h, ok := c.hosts[name]; ok {
		c.mu.Unlock()
		return h, nil
	}
	c.mu.Unlock()
	conn, err := host.Connect(ctx, c.Inv, name, host.DialFunc(c.opts.Dial))
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.hostErrs[name] = err
		return nil, err
	}
	if old, ok := c.hosts[name]; ok {
		conn.Close()
		return old, nil
	}
	h := &liveHost{Host: conn, c: c, name: name}
	c.hosts[name] = h
	return h, nil
}

// drop forgets a host whose connection died, unless it was replaced already, and closes it.
func (c *Cluster) drop(h *liveHost) {
	c.mu.Lock()
	if c.hosts[h.name] == host.Host(h) {
		delete(c.hosts, h.name)
	}
	c.mu.Unlock()
	h.Host.Close()
}

// ConnectAll dials every host with bounded concurrency and returns the errors by host.
func (c *Cluster) ConnectAll(ctx context.Context) map[string]error {
	var names []string
	for _, h := range c.Inv.Hosts {
		names = append(names, h.Name)
	}
	errs := host.ForEach(ctx, names, c.opts.Concurrency, func(ctx context.Context, name string) error {
		_, err := c.Host(ctx, name)
		return err
	})
	return errs
}

// Etcd returns a client for the etcd members, with the TLS material read from the first
// reachable etcd host. Endpoints that the operator's machine cannot reach directly are
// tunnelled through the member's own host.
func (c *Cluster) Etcd(ctx context.Context) (*etcd.Client, error) {
	c.mu.Lock()
	if c.etcd != nil {
		defer c.mu.Unlock()
		return c.etcd, nil
	}
	c.mu.Unlock()
	var endpoints []string
	var tlsFiles *etcd.TLSFiles
	var errs []error
	for _, ih := range c.Inv.HostsWithRole(inventory.RoleEtcd) {
		endpoints = append(endpoints, "https://"+net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.EtcdClientPort)))
		if tlsFiles != nil {
			continue
		}
		h, err := c.Host(ctx, ih.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files, err := readAll(ctx, h, ih.Paths.EtcdCACert, ih.Paths.EtcdCert, ih.Paths.EtcdKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("read etcd client TLS material on %s: %w", ih.Name, err))
			continue
		}
		tlsFiles = &etcd.TLSFiles{CA: files[0], Cert: files[1], Key: files[2]}
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("the inventory has no host with the etcd role")
	}
	if tlsFiles == nil {
		// Every host's own reason: one down host among several is a different fix than all.
		return nil, fmt.Errorf("no etcd host could give the client TLS material: %w", errors.Join(errs...))
	}
	cli, err := etcd.Dial(ctx, endpoints, *tlsFiles, c.etcdDial)
	if err != nil {
		return nil, fmt.Errorf("%w\n  %s", err, strings.Join(etcd.Diagnose(ctx, endpoints, *tlsFiles, c.etcdDial), "\n  "))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.etcd = cli
	return cli, nil
}

// etcdDial tries the direct route first and falls back to an SSH tunnel through the host
// that owns the address, for operators whose machine cannot reach the client port.
func (c *Cluster) etcdDial(ctx context.Context, network, addr string) (net.Conn, error) {
	direct := c.opts.Dial
	if direct == nil {
		d := &net.Dialer{}
		direct = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	conn, err := direct(dctx, network, addr)
	cancel()
	if err == nil {
		return conn, nil
	}
	hostPart, _, _ := net.SplitHostPort(addr)
	for _, ih := range c.Inv.Hosts {
		if ih.Address != hostPart {
			continue
		}
		h, herr := c.Host(ctx, ih.Name)
		if herr != nil {
			return nil, fmt.Errorf("dial %s: %w (and no SSH tunnel: %v)", addr, err, herr)
		}
		return h.DialContext(ctx, network, addr)
	}
	return nil, err
}

// Kube returns a Kubernetes client from the admin kubeconfig: Options.Kubeconfig, else
// Options.KubeconfigPaths, else the inventory's, with Options.Context if set. The same
// loading rules as kubectl's, without its fallbacks to ~/.kube/config or a pod's service
// account: either would quietly reach another cluster than the inventory's.
func (c *Cluster) Kube() (kubernetes.Interface, *rest.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kube != nil {
		return c.kube, c.rest, nil
	}
	rules, from := c.kubeconfigRules()
	if rules == nil {
		return nil, nil, fmt.Errorf("the inventory names no kubeconfig: add `kubeconfig: PATH` to %s, or give --kubeconfig", c.Inv.File)
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, nil, fmt.Errorf("read kubeconfig %s: %w", from, err)
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: c.opts.Context}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, c.opts.Context, overrides, rules).ClientConfig()
	if err != nil {
		if c.opts.Context != "" {
			return nil, nil, fmt.Errorf("kubeconfig %s, context %q: %w (kubectl config get-contexts lists them)", from, c.opts.Context, err)
		}
		return nil, nil, fmt.Errorf("kubeconfig %s: %w", from, err)
	}
	slog.Info("kubeconfig loaded", "from", from, "context", c.opts.Context, "server", cfg.Host)
	cfg.Timeout = 30 * time.Second
	if c.opts.Dial != nil {
		cfg.Dial = c.opts.Dial
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client from %s: %w", from, err)
	}
	c.kube, c.rest = kube, cfg
	return kube, cfg, nil
}

// KubeconfigSource says where the admin kubeconfig comes from, for messages and status.
func (c *Cluster) KubeconfigSource() string {
	_, from := c.kubeconfigRules()
	return from
}

func (c *Cluster) kubeconfigRules() (*clientcmd.ClientConfigLoadingRules, string) {
	switch {
	case c.opts.Kubeconfig != "":
		return &clientcmd.ClientConfigLoadingRules{ExplicitPath: c.opts.Kubeconfig}, c.opts.Kubeconfig + " (--kubeconfig)"
	case len(c.opts.KubeconfigPaths) > 0:
		return &clientcmd.ClientConfigLoadingRules{Precedence: c.opts.KubeconfigPaths},
			strings.Join(c.opts.KubeconfigPaths, string(filepath.ListSeparator)) + " (KUBECONFIG)"
	case c.Inv.Kubeconfig != "":
		return &clientcmd.ClientConfigLoadingRules{ExplicitPath: c.Inv.Kubeconfig}, c.Inv.Kubeconfig
	}
	return nil, ""
}

// APIServerConfig is the admin rest config aimed at one apiserver instead of the
// kubeconfig's server, to probe each apiserver on its own.
func (c *Cluster) APIServerConfig(address string, port int) (*rest.Config, error) {
	_, cfg, err := c.Kube()
	if err != nil {
		return nil, err
	}
	one := rest.CopyConfig(cfg)
	one.Host = (&url.URL{Scheme: "https", Host: net.JoinHostPort(address, strconv.Itoa(port))}).String()
	return one, nil
}

// APIServerReady asks the apiserver at address:port for /readyz with the admin credentials,
// as the observation does for each master.
func (c *Cluster) APIServerReady(ctx context.Context, address string, port int) error {
	return c.ready(ctx, address, port)
}

// Close closes every connection.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.etcd != nil {
		c.etcd.Close()
	}
	var names []string
	for name := range c.hosts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		c.hosts[name].Close()
	}
	c.hosts = map[string]host.Host{}
	return nil
}

func readAll(ctx context.Context, h host.Host, paths ...string) ([][]byte, error) {
	var out [][]byte
	for _, p := range paths {
		data, err := h.ReadFile(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	return out, nil
}

// Inventory is the cluster's inventory.
func (c *Cluster) Inventory() *inventory.Inventory { return c.Inv }
