package apiserverfacts

import (
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/mastershrink/mastershrink/host/machine"
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
	Present bool               `json:"present"`
	Status  machine.UnitStatus `json:"status"`
	Active  bool               `json:"active"`
	Enabled bool               `json:"enabled"`
	Unit    *unitfile.Unit     `json:"unit,omitempty"`
	Flags   Flags              `json:"flags"`
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
