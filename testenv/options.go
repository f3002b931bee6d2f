package testenv

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Fixed versions of the lab's helpers (not part of the cluster under test).
const (
	KwokVersion  = "v0.8.0"
	CfsslVersion = "v1.6.5"
	// DebianEtcdVersion selects Debian's etcd-server package in the rootfs instead of a build.
	DebianEtcdVersion = "3.4.23"
)

// Options say what lab to build. The zero value is a usable default lab.
type Options struct {
	// Name names the network namespaces, cgroup folders and state folder; default "mslab".
	Name string
	// Masters (etcd+master, m1..m5) and Workers (w1..w4); default 3 and 2.
	Masters, Workers int
	// Layout is "seed003" (default) or another of Layouts (LayoutNames).
	Layout string
	// KubernetesVersion is "v1.37.0" by default; any version build-binaries.sh can build.
	KubernetesVersion string
	// EtcdVersion is "v3.5.21" by default; "v3.6.x" builds that release, "3.4.23" uses Debian's.
	EtcdVersion string
	// EtcdPeersByName gives etcd peer URLs by machine name (https://m2:2380, resolved through
	// every machine's /etc/hosts) instead of by address, as many hand-made clusters do.
	EtcdPeersByName bool
	// UpstreamsByName names every master but the first by machine name in the nginx proxies'
	// upstreams (server m2:6443), next to the first one's address.
	UpstreamsByName bool
	// Proxy is "haproxy" to give every node Debian's haproxy (ProxyHAProxy) instead of the
	// layout's nginx; empty for the nginx.
	Proxy string
	// LBHosts adds that many load-balancer hosts (lb1, lb2 at 10.88.0.31, .32; role lb), each
	// running the layout's nginx on every address at LBPort in front of every apiserver, as
	// the env-file guides' LB pair; AddVIP then puts the VIP on them instead of the masters.
	LBHosts int
	// RequestTimeout is kube-apiserver's --request-timeout; 10s by default in the lab.
	RequestTimeout time.Duration
	// OutDir receives inventory.yaml, admin.kubeconfig, id_ed25519, known_hosts, lab.json and
	// the etcd client TLS copies; default <state dir>/out.
	OutDir string
	// Log receives progress lines; default os.Stderr.
	Log io.Writer `json:"-"`
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// StateRoot holds every lab's state folder (overlays, PKI, logs).
func StateRoot() string {
	if d := os.Getenv("MASTERSHRINK_LAB_STATE"); d != "" {
		return d
	}
	return "/var/lib/mastershrink/lab"
}

// CacheDir is where rootfs and binaries are cached, keyed by version.
func CacheDir() string {
	if d := os.Getenv("MASTERSHRINK_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "mastershrink")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "mastershrink")
}

func (o *Options) setDefaults() error {
	if o.Name == "" {
		o.Name = "mslab"
	}
	if !nameRE.MatchString(o.Name) {
		return fmt.Errorf("lab name %q: want a lower-case letter then up to 9 letters or digits", o.Name)
	}
	if o.Masters == 0 {
		o.Masters = 3
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.Masters < 1 || o.Masters > 5 {
		return fmt.Errorf("lab %s: %d masters, want 1 to 5", o.Name, o.Masters)
	}
	if o.Workers < 0 || o.Workers > 4 {
		return fmt.Errorf("lab %s: %d workers, want 0 to 4", o.Name, o.Workers)
	}
	if o.LBHosts < 0 || o.LBHosts > 2 || (o.LBHosts > 0 && o.Proxy != "") {
		return fmt.Errorf("lab %s: %d LB hosts with proxy %q, want 0 to 2, with the layout's nginx", o.Name, o.LBHosts, o.Proxy)
	}
	if o.Layout == "" {
		o.Layout = "seed003"
	}
	if _, err := LookupLayout(o.Layout); err != nil {
		return err
	}
	if o.Proxy != "" && o.Proxy != ProxyHAProxy {
		return fmt.Errorf("lab %s: proxy %q: want %s, or empty for the layout's nginx", o.Name, o.Proxy, ProxyHAProxy)
	}
	if o.KubernetesVersion == "" {
		o.KubernetesVersion = "v1.37.0"
	}
	if !strings.HasPrefix(o.KubernetesVersion, "v1.") {
		return fmt.Errorf("kubernetes version %q: want v1.X.Y", o.KubernetesVersion)
	}
	if o.EtcdVersion == "" {
		o.EtcdVersion = "v3.5.21"
	}
	if strings.TrimPrefix(o.EtcdVersion, "v") == DebianEtcdVersion {
		o.EtcdVersion = DebianEtcdVersion
	} else if !strings.HasPrefix(o.EtcdVersion, "v3.") {
		return fmt.Errorf("etcd version %q: want v3.X.Y or %s (Debian's package)", o.EtcdVersion, DebianEtcdVersion)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.OutDir == "" {
		o.OutDir = filepath.Join(StateRoot(), o.Name, "out")
	}
	abs, err := filepath.Abs(o.OutDir)
	if err != nil {
		return fmt.Errorf("lab %s out dir: %w", o.Name, err)
	}
	o.OutDir = abs
	if o.Log == nil {
		o.Log = os.Stderr
	}
	return nil
}
