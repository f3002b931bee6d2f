package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/unitfile"
)

// Component names, used in findings, step IDs and messages.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
)

// Components are the control-plane units of one master as observed.
type Components struct {
	Host              string    `json:"host"`
	APIServer         Component `json:"apiserver"`
	ControllerManager Component `json:"controller_manager"`
	Scheduler         Component `json:"scheduler"`
}

// Each returns the three components in a fixed order.
func (c *Components) Each() []*Component {
	return []*Component{&c.APIServer, &c.ControllerManager, &c.Scheduler}
}

// Component is one control-plane unit on one host.
type Component struct {
	// Name is KubeAPIServer, KubeControllerManager or KubeScheduler.
	Name string `json:"name"`
	// UnitName is the systemd unit ("kube-apiserver.service").
	UnitName string `json:"unit_name"`
	// Present is false when systemd does not know the unit; every other field is then empty.
	Present bool            `json:"present"`
	Status  host.UnitStatus `json:"status"`
	Active  bool            `json:"active"`
	Enabled bool            `json:"enabled"`
	Unit    *unitfile.Unit  `json:"unit,omitempty"`
	Flags   Flags           `json:"flags"`
	// Kubeconfigs are the kubeconfig files the component names (--kubeconfig,
	// --authentication-kubeconfig, --authorization-kubeconfig, or clientConnection.kubeconfig
	// of a --config file), each with its server URLs where readable.
	Kubeconfigs []Kubeconfig `json:"kubeconfigs,omitempty"`
}

// Flags are the flags mastershrink reasons about, parsed. Empty when not set.
type Flags struct {
	EtcdServers      []string      `json:"etcd_servers,omitempty"`
	APIServerCount   int           `json:"apiserver_count,omitempty"`
	AdvertiseAddress string        `json:"advertise_address,omitempty"`
	BindAddress      string        `json:"bind_address,omitempty"`
	SecurePort       int           `json:"secure_port,omitempty"`
	TLSCertFile      string        `json:"tls_cert_file,omitempty"`
	TLSPrivateKey    string        `json:"tls_private_key_file,omitempty"`
	ClientCAFile     string        `json:"client_ca_file,omitempty"`
	EtcdCertFile     string        `json:"etcd_certfile,omitempty"`
	EtcdKeyFile      string        `json:"etcd_keyfile,omitempty"`
	EtcdCAFile       string        `json:"etcd_cafile,omitempty"`
	RequestTimeout   time.Duration `json:"request_timeout,omitempty"`
	Kubeconfig       string        `json:"kubeconfig,omitempty"`
	AuthnKubeconfig  string        `json:"authentication_kubeconfig,omitempty"`
	AuthzKubeconfig  string        `json:"authorization_kubeconfig,omitempty"`
	Config           string        `json:"config,omitempty"`
	// Master is kcm/scheduler's legacy --master URL.
	Master string `json:"master,omitempty"`
}

// Kubeconfig is one kubeconfig file a component reads.
type Kubeconfig struct {
	Path string `json:"path"`
	// Servers are the clusters[].cluster.server URLs with their lines.
	Servers []KubeconfigServer `json:"servers,omitempty"`
	// Content is the file as read, for planning edits.
	Content string `json:"-"`
	// Error says why the file could not be read or parsed, "" when it could.
	Error string `json:"error,omitempty"`
}

// KubeconfigServer is one server URL in a kubeconfig.
type KubeconfigServer struct {
	Cluster string `json:"cluster"`
	Server  string `json:"server"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
}

// DefaultSecurePort is kube-apiserver's --secure-port default.
const DefaultSecurePort = 6443

// Observe reads the kube-apiserver, kube-controller-manager and kube-scheduler units of a
// host and their systemd states. A unit systemd does not know is reported with Present false.
func Observe(ctx context.Context, h host.Host, p inventory.Paths) (Components, error) {
	c := Components{
		Host:              h.Name(),
		APIServer:         Component{Name: KubeAPIServer, UnitName: unitfile.NormalizeName(orDefault(p.APIServerUnit, KubeAPIServer))},
		ControllerManager: Component{Name: KubeControllerManager, UnitName: unitfile.NormalizeName(orDefault(p.ControllerManagerUnit, KubeControllerManager))},
		Scheduler:         Component{Name: KubeScheduler, UnitName: unitfile.NormalizeName(orDefault(p.SchedulerUnit, KubeScheduler))},
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return c, fmt.Errorf("observe control plane on %s: %w", h.Name(), err)
	}
	defer sd.Close()
	for _, comp := range c.Each() {
		if err := observeOne(ctx, h, sd, comp); err != nil {
			return c, fmt.Errorf("observe %s on %s: %w", comp.UnitName, h.Name(), err)
		}
	}
	return c, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func observeOne(ctx context.Context, h host.Host, sd host.Systemd, c *Component) error {
	st, err := sd.Status(ctx, c.UnitName)
	if err != nil {
		return err
	}
	c.Status = st
	if st.LoadState == "not-found" {
		return nil
	}
	c.Present = true
	c.Active = st.ActiveState == "active"
	c.Enabled = st.UnitFileState == "enabled" || st.UnitFileState == "enabled-runtime"
	u, err := unitfile.Read(ctx, h, c.UnitName)
	if err != nil {
		return err
	}
	c.Unit = u
	c.Flags, err = parseFlags(u)
	if err != nil {
		return err
	}
	paths := []string{c.Flags.Kubeconfig, c.Flags.AuthnKubeconfig, c.Flags.AuthzKubeconfig}
	if c.Flags.Config != "" && c.Name != KubeAPIServer {
		if kc := configKubeconfig(ctx, h, c.Flags.Config); kc != "" {
			paths = append(paths, kc)
		}
	}
	seen := map[string]bool{}
	for _, p := range paths {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		c.Kubeconfigs = append(c.Kubeconfigs, readKubeconfig(ctx, h, p))
	}
	return nil
}

func parseFlags(u *unitfile.Unit) (Flags, error) {
	var f Flags
	get := func(name string) string {
		fl, _ := u.Flag(name)
		return fl.Value
	}
	if v := get("--etcd-servers"); v != "" {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				f.EtcdServers = append(f.EtcdServers, s)
			}
		}
	}
	if v := get("--apiserver-count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return f, fmt.Errorf("--apiserver-count=%q: %w", v, err)
		}
		f.APIServerCount = n
	}
	if v := get("--secure-port"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return f, fmt.Errorf("--secure-port=%q: %w", v, err)
		}
		f.SecurePort = n
	}
	if v := get("--request-timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return f, fmt.Errorf("--request-timeout=%q: %w", v, err)
		}
		f.RequestTimeout = d
	}
	f.AdvertiseAddress = get("--advertise-address")
	f.BindAddress = get("--bind-address")
	f.TLSCertFile = get("--tls-cert-file")
	f.TLSPrivateKey = get("--tls-private-key-file")
	f.ClientCAFile = get("--client-ca-file")
	f.EtcdCertFile = get("--etcd-certfile")
	f.EtcdKeyFile = get("--etcd-keyfile")
	f.EtcdCAFile = get("--etcd-cafile")
	f.Kubeconfig = get("--kubeconfig")
	f.AuthnKubeconfig = get("--authentication-kubeconfig")
	f.AuthzKubeconfig = get("--authorization-kubeconfig")
	f.Config = get("--config")
	f.Master = get("--master")
	return f, nil
}

// configKubeconfig returns clientConnection.kubeconfig of a scheduler/kcm --config file,
// "" when unreadable (the flag is then reported without it).
func configKubeconfig(ctx context.Context, h host.Host, path string) string {
	b, err := h.ReadFile(ctx, path)
	if err != nil {
		return ""
	}
	var cfg struct {
		ClientConnection struct {
			Kubeconfig string `yaml:"kubeconfig"`
		} `yaml:"clientConnection"`
	}
	if yaml.Unmarshal(b, &cfg) != nil {
		return ""
	}
	return cfg.ClientConnection.Kubeconfig
}

func readKubeconfig(ctx context.Context, h host.Host, path string) Kubeconfig {
	kc := Kubeconfig{Path: path}
	b, err := h.ReadFile(ctx, path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			kc.Error = "missing"
		} else {
			kc.Error = err.Error()
		}
		return kc
	}
	kc.Content = string(b)
	servers, err := kubeconfigServers(kc.Content)
	if err != nil {
		kc.Error = err.Error()
	}
	kc.Servers = servers
	return kc
}

// kubeconfigServers finds clusters[].cluster.server with their positions, so an edit can
// replace just that scalar.
func kubeconfigServers(content string) ([]KubeconfigServer, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(content), &doc); err != nil {
		return nil, fmt.Errorf("parse kubeconfig: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	clusters := mapValue(doc.Content[0], "clusters")
	if clusters == nil || clusters.Kind != yaml.SequenceNode {
		return nil, nil
	}
	var out []KubeconfigServer
	for _, item := range clusters.Content {
		name := ""
		if n := mapValue(item, "name"); n != nil {
			name = n.Value
		}
		cl := mapValue(item, "cluster")
		if cl == nil {
			continue
		}
		if s := mapValue(cl, "server"); s != nil && s.Kind == yaml.ScalarNode {
			out = append(out, KubeconfigServer{Cluster: name, Server: s.Value, Line: s.Line, Column: s.Column})
		}
	}
	return out, nil
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// ProbeAddress is where this host's apiserver answers, from the host's own point of view:
// the bind address when it is a specific one, else the advertise address, else loopback;
// the port is --secure-port (6443 by default).
func (c Component) ProbeAddress() string {
	port := c.Flags.SecurePort
	if port == 0 {
		port = DefaultSecurePort
	}
	h := "127.0.0.1"
	if ip := net.ParseIP(c.Flags.BindAddress); c.Flags.BindAddress != "" && (ip == nil || !ip.IsUnspecified()) {
		h = c.Flags.BindAddress
	} else if c.Flags.AdvertiseAddress != "" {
		h = c.Flags.AdvertiseAddress
	}
	return net.JoinHostPort(h, strconv.Itoa(port))
}

// OwnAddress is the address this master's apiserver is known by (advertise, else a specific
// bind address), "" when neither flag says.
func (c Component) OwnAddress() string {
	if c.Flags.AdvertiseAddress != "" {
		return c.Flags.AdvertiseAddress
	}
	if ip := net.ParseIP(c.Flags.BindAddress); c.Flags.BindAddress != "" && (ip == nil || !ip.IsUnspecified()) {
		return c.Flags.BindAddress
	}
	return ""
}

// Uses reports whether the component reads the file at path: its unit files, an
// EnvironmentFile, a kubeconfig, or any flag whose value is that path (certificates, keys,
// CA files). The planner restarts a controller-manager or scheduler only when it does.
func (c Component) Uses(path string) bool {
	if !c.Present || c.Unit == nil {
		return false
	}
	if _, ok := c.Unit.Files[path]; ok {
		return true
	}
	for _, kc := range c.Kubeconfigs {
		if kc.Path == path {
			return true
		}
	}
	for _, f := range c.Unit.Flags {
		if f.Value == path {
			return true
		}
	}
	return false
}

// serverHost returns the host of a URL, or of a bare "host:port".
func serverHost(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.Hostname()
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}
