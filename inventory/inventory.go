package inventory

import "time"

// Role is what a host does in the cluster.
type Role string

const (
	RoleEtcd   Role = "etcd"
	RoleMaster Role = "master"
	RoleWorker Role = "worker"
	// RoleLB is a load-balancer host in front of the apiservers (nginx or haproxy, often a
	// keepalived pair sharing the VIP the kubeconfigs name): no etcd, no kubelet. Its proxy
	// is updated like a node's; kubeasz's ex_lb hosts are such hosts.
	RoleLB Role = "lb"
)

// Inventory is the operator's cluster file, with the layout preset and every override
// already resolved into each host's Paths.
type Inventory struct {
	// File is the path the inventory was read from; relative paths inside it are relative
	// to its folder and are made absolute by Load.
	File          string `yaml:"-"`
	FormatVersion int    `yaml:"format_version"`
	Cluster       string `yaml:"cluster"`
	// Layout names the preset the paths start from: "seed003", "kubeasz", "hardway" or
	// "envfile" (layouts.go).
	Layout string `yaml:"layout"`
	// Kubeconfig is the admin kubeconfig on the operator's machine.
	Kubeconfig string `yaml:"kubeconfig"`
	SSH        SSH    `yaml:"ssh"`
	// Paths overrides the layout for every host.
	Paths Paths  `yaml:"paths"`
	Hosts []Host `yaml:"hosts"`
}

// Host is one machine.
type Host struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	Roles   []Role `yaml:"roles"`
	// SSH and Paths hold this host's overrides as written; after Load they hold the
	// effective values (defaults, then cluster-wide, then the host's own).
	SSH   SSH   `yaml:"ssh"`
	Paths Paths `yaml:"paths"`
	// Line is the line of the host's entry in the inventory file, for messages.
	Line int `yaml:"-"`
}

// SSH says how to reach a host.
type SSH struct {
	User         string `yaml:"user"`
	Port         int    `yaml:"port"`
	IdentityFile string `yaml:"identity_file"`
	KnownHosts   string `yaml:"known_hosts"`
	// JumpHost is "[user@]host[:port]" of a bastion to go through, empty for none.
	JumpHost       string   `yaml:"jump_host"`
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// Local runs commands on this machine instead of over SSH (for an all-in-one host).
	Local bool `yaml:"local"`
}

// Paths says where things live on a host. Every field comes from the layout preset unless
// overridden.
type Paths struct {
	EtcdUnit              string `yaml:"etcd_unit"`
	APIServerUnit         string `yaml:"apiserver_unit"`
	ControllerManagerUnit string `yaml:"controller_manager_unit"`
	SchedulerUnit         string `yaml:"scheduler_unit"`
	NginxUnit             string `yaml:"nginx_unit"`
	KubeletUnit           string `yaml:"kubelet_unit"`
	KubeProxyUnit         string `yaml:"kube_proxy_unit"`

	// NginxBinary, NginxPrefix and NginxConfig are how the nginx unit runs nginx
	// (`NginxBinary -p NginxPrefix -c NginxConfig`).
	NginxBinary string `yaml:"nginx_binary"`
	NginxPrefix string `yaml:"nginx_prefix"`
	NginxConfig string `yaml:"nginx_config"`
	// NginxListen is where the node's proxy listens ("127.0.0.1:8443").
	NginxListen string `yaml:"nginx_listen"`

	// Proxy says which program is the node's apiserver proxy: "nginx", "haproxy", or empty
	// to tell from the host (nginx where NginxConfig exists, else haproxy where HAProxyConfig
	// fronts the apiservers).
	Proxy string `yaml:"proxy"`
	// HAProxyConfig, HAProxyUnit and HAProxyBinary are how haproxy runs on the host; empty
	// means Debian's package (HAProxyPaths).
	HAProxyConfig string `yaml:"haproxy_config"`
	HAProxyUnit   string `yaml:"haproxy_unit"`
	HAProxyBinary string `yaml:"haproxy_binary"`

	PKIDir   string `yaml:"pki_dir"`
	CACert   string `yaml:"ca_cert"`
	CAKey    string `yaml:"ca_key"`
	CAConfig string `yaml:"ca_config"`
	// CSRDir is where the operator keeps cfssl CSR JSON files.
	CSRDir string `yaml:"csr_dir"`
	// EtcdCACert, EtcdCert and EtcdKey are the client TLS material mastershrink uses to talk
	// to etcd, read from the host.
	EtcdCACert string `yaml:"etcd_ca_cert"`
	EtcdCert   string `yaml:"etcd_cert"`
	EtcdKey    string `yaml:"etcd_key"`

	APIServerPort  int `yaml:"apiserver_port"`
	EtcdClientPort int `yaml:"etcd_client_port"`
	EtcdPeerPort   int `yaml:"etcd_peer_port"`
}

// Proxy kinds (Paths.Proxy).
const (
	ProxyNginx   = "nginx"
	ProxyHAProxy = "haproxy"
)

// Debian's haproxy package: where its config, unit and binary are.
const (
	DefaultHAProxyConfig = "/etc/haproxy/haproxy.cfg"
	DefaultHAProxyUnit   = "haproxy"
	DefaultHAProxyBinary = "/usr/sbin/haproxy"
)

// HAProxyPaths returns the haproxy config, unit and binary, Debian's where not set. They are
// filled here rather than in every preset: any layout's node may run the packaged haproxy.
func (p Paths) HAProxyPaths() (config, unit, binary string) {
	config, unit, binary = p.HAProxyConfig, p.HAProxyUnit, p.HAProxyBinary
	if config == "" {
		config = DefaultHAProxyConfig
	}
	if unit == "" {
		unit = DefaultHAProxyUnit
	}
	if binary == "" {
		binary = DefaultHAProxyBinary
	}
	return config, unit, binary
}

// Duration is a time.Duration written as "10s" in YAML.
type Duration time.Duration
