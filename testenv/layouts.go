package testenv

import (
	"fmt"
	"sort"

	"github.com/mastershrink/mastershrink/inventory"
)

// Layout is where one real-world deployment style puts things. Paths is the inventory preset
// of the same name; the other fields only shape how the lab installs the cluster.
type Layout struct {
	Name  string
	Paths inventory.Paths

	// BinDir holds etcd, kube-* binaries, kubectl, cfssl and kwok (symlinks in the lab).
	BinDir string
	// EtcdDataDir is etcd's --data-dir and the unit's WorkingDirectory.
	EtcdDataDir string
	// EtcdNamePrefix is put before the member's IP to make its --name.
	EtcdNamePrefix string
	// EtcdLocalHTTP adds http://127.0.0.1:<client port> to --listen-client-urls (kubeasz).
	EtcdLocalHTTP bool
	// APIServerEtcdCert and APIServerEtcdKey are kube-apiserver's --etcd-certfile/--etcd-keyfile.
	APIServerEtcdCert, APIServerEtcdKey string
	// APIServerCert and APIServerKey are the serving pair (--tls-cert-file/--tls-private-key-file).
	APIServerCert, APIServerKey string
	// KubeconfigDir holds the controller-manager, scheduler and kubelet (kwok) kubeconfigs.
	KubeconfigDir string
	// NginxListenDirective is the text after `listen` in the proxy's server block.
	NginxListenDirective string
	// NginxUpstream is the upstream block's name; NginxServerParams follow each server line.
	NginxUpstream, NginxServerParams string
	// NginxHeader is the proxy configuration before its stream block, after load_module.
	NginxHeader string
	// NginxRestartSec is the proxy unit's RestartSec.
	NginxRestartSec int

	// EnvFiles puts the flags where the env-file guides do: etcd's as ETCD_* variables in
	// EtcdConf (its unit's ExecStart is the bare binary), each kube component's as one
	// KUBE_<COMPONENT>_OPTS variable in KubeCfgDir/<unit>.conf expanded on ExecStart.
	EnvFiles bool
	// EtcdConf is etcd's EnvironmentFile and KubeCfgDir the kube components' (EnvFiles).
	EtcdConf, KubeCfgDir string
	// EtcdBinDir is where etcd's unit runs etcd from, when not BinDir.
	EtcdBinDir string
	// EtcdNameIsHost names each member after its machine (the hard way's controller-0),
	// not EtcdNamePrefix plus its address.
	EtcdNameIsHost bool
	// EtcdSpacedFlags writes etcd's URL and cluster flags as "--flag value", the others as
	// "--flag=value", as the hard way's etcd.service mixes them.
	EtcdSpacedFlags bool
	// EtcdNameIndexed names the members etcd1, etcd2, ... (kubespray's etcd_member_name in
	// its sample inventories), not after their hosts or addresses.
	EtcdNameIndexed bool
	// Kubespray lays etcd out as kubespray's roles/etcd does (etcd_deployment_type: host):
	// every flag an unquoted ETCD_* variable of EtcdConf with etcdctl's settings after them,
	// and certificates signed with openssl by etcd's own CA in EtcdCertDir, per host
	// (member-, admin-, node-<host>.pem), every etcd host holding every host's.
	Kubespray bool
	// EtcdCertDir is kubespray's etcd_cert_dir.
	EtcdCertDir string
	// EtcdServingCert and EtcdServingKey are etcd's --cert-file and --peer-cert-file pair
	// when not the inventory's etcd client pair; inventory.HostPattern is the machine's name.
	EtcdServingCert, EtcdServingKey string
	// CertExpiry is how long the layout's ca-config.json signs certificates for (87600h
	// when empty, as seed 003).
	CertExpiry string
	// EtcdServesAPIServerCert gives etcd the apiserver's certificate (the hard way copies
	// kubernetes.pem into /etc/etcd), not a certificate of its own.
	EtcdServesAPIServerCert bool
	// Proxy is a node proxy the lab adds where the preset has none (the guide's own front end
	// is out of the lab's reach): its nginx fields are written to the lab's inventory as
	// cluster-wide path overrides.
	Proxy inventory.Paths
}

// The lab installs exactly where the inventory presets say, so its inventory.yaml needs no
// path overrides: the presets are the one source of those paths.
func init() {
	for name, l := range Layouts {
		p, ok := inventory.Layout(name)
		if !ok {
			panic("testenv: layout " + name + " has no inventory preset")
		}
		if l.Proxy.NginxConfig != "" {
			p.NginxUnit, p.NginxBinary, p.NginxPrefix = l.Proxy.NginxUnit, l.Proxy.NginxBinary, l.Proxy.NginxPrefix
			p.NginxConfig, p.NginxListen = l.Proxy.NginxConfig, l.Proxy.NginxListen
		}
		l.Paths = p
		Layouts[name] = l
	}
}

// optKubeNginx is the node proxy the lab gives the layouts whose guide fronts the apiservers
// with what the lab does not run (a cloud load balancer, LB hosts, a proxy pod): seed 003's
// kube-nginx in its own prefix, here on 127.0.0.1:6443.
var (
	optKubeNginx = inventory.Paths{NginxUnit: "kube-nginx", NginxBinary: "/opt/kube-nginx/sbin/nginx", NginxPrefix: "/opt/kube-nginx",
		NginxConfig: "/opt/kube-nginx/conf/kube-nginx.conf", NginxListen: "127.0.0.1:6443"}
	optKubeNginxHeader = "worker_processes 1;\nerror_log /opt/kube-nginx/logs/error.log warn;\nevents {\n    worker_connections  1024;\n}\n"
)

// Layouts are the deployment styles the lab can mirror, by name.
var Layouts = map[string]Layout{
	// Seed 003: a hand-made binary cluster, certificates made with cfssl in a work folder and
	// copied into /etc/kubernetes/ssl, nginx built into its own prefix and run as kube-nginx on
	// *:8443 on every node; components reach the apiservers through 127.0.0.1:8443.
	"seed003": {
		Name:                 "seed003",
		BinDir:               "/approot/data/k8s/bin",
		EtcdDataDir:          "/approot/data/k8s/etcd/data",
		APIServerEtcdCert:    "/etc/kubernetes/ssl/etcd.pem",
		APIServerEtcdKey:     "/etc/kubernetes/ssl/etcd-key.pem",
		APIServerCert:        "/etc/kubernetes/ssl/kubernetes.pem",
		APIServerKey:         "/etc/kubernetes/ssl/kubernetes-key.pem",
		KubeconfigDir:        "/etc/kubernetes",
		NginxListenDirective: "*:8443",
		NginxUpstream:        "apiserver",
		NginxServerParams:    "max_fails=3 fail_timeout=30s",
		NginxHeader:          "worker_processes 1;\npid logs/kube-nginx.pid;\nerror_log logs/error.log warn;\nevents {\n    worker_connections  1024;\n}\n",
		NginxRestartSec:      5,
	},
	// kubeasz (easzlab/kubeasz roles etcd, kube-master, kube-lb): etcd.service with its flags in
	// the unit, certificates and CSR files in /etc/kubernetes/ssl, binaries in /opt/kube/bin,
	// apiservers bound to the node IP, and kube-lb (a copy of nginx) on 127.0.0.1:6443 on
	// every node, which the controller-manager, scheduler and kubelet use.
	"kubeasz": {
		Name:                 "kubeasz",
		BinDir:               "/opt/kube/bin",
		EtcdDataDir:          "/var/lib/etcd",
		EtcdNamePrefix:       "etcd-",
		EtcdLocalHTTP:        true,
		APIServerEtcdCert:    "/etc/kubernetes/ssl/kubernetes.pem",
		APIServerEtcdKey:     "/etc/kubernetes/ssl/kubernetes-key.pem",
		APIServerCert:        "/etc/kubernetes/ssl/kubernetes.pem",
		APIServerKey:         "/etc/kubernetes/ssl/kubernetes-key.pem",
		KubeconfigDir:        "/etc/kubernetes",
		NginxListenDirective: "127.0.0.1:6443",
		NginxUpstream:        "backend",
		NginxServerParams:    "   max_fails=2 fail_timeout=3s",
		NginxHeader:          "user root;\nworker_processes 1;\n\nerror_log  /etc/kube-lb/logs/error.log warn;\n\nevents {\n    worker_connections  3000;\n}\n",
		NginxRestartSec:      15,
	},
	// The env-file guides (inventory preset envfile): etcd in /opt/etcd/{bin,cfg,ssl} with its
	// flags and certificates as ETCD_* variables of /opt/etcd/cfg/etcd.conf, kubernetes in
	// /opt/kubernetes/{bin,cfg,ssl} with each component's flags in a KUBE_*_OPTS variable; the
	// apiserver reaches etcd with etcd's own server.pem, as the guides do. The guides front the
	// apiservers with LB hosts; the lab gives every node a proxy on 127.0.0.1:6443 instead.
	"envfile": {
		Name:              "envfile",
		BinDir:            "/opt/kubernetes/bin",
		EtcdBinDir:        "/opt/etcd/bin",
		EtcdDataDir:       "/var/lib/etcd/default.etcd",
		EtcdNamePrefix:    "etcd-",
		APIServerEtcdCert: "/opt/etcd/ssl/server.pem",
		APIServerEtcdKey:  "/opt/etcd/ssl/server-key.pem",
		// The guides name this one server.pem too; two re-sign steps for two server.pem on
		// one host would get the same step ID today (plan's certName), so the lab keeps the
		// apiserver's as kubernetes.pem until the planner tells them apart.
		APIServerCert:        "/opt/kubernetes/ssl/kubernetes.pem",
		APIServerKey:         "/opt/kubernetes/ssl/kubernetes-key.pem",
		KubeconfigDir:        "/opt/kubernetes/cfg",
		NginxListenDirective: "127.0.0.1:6443",
		NginxUpstream:        "k8s-apiserver",
		NginxServerParams:    "max_fails=3 fail_timeout=30s",
		NginxHeader:          optKubeNginxHeader,
		NginxRestartSec:      5,
		EnvFiles:             true,
		EtcdConf:             "/opt/etcd/cfg/etcd.conf",
		KubeCfgDir:           "/opt/kubernetes/cfg",
		Proxy:                optKubeNginx,
	},
	// Kubernetes the hard way (inventory preset hardway), in its three-controller editions:
	// binaries in /usr/local/bin, etcd.service with every flag on ExecStart (some as "--flag
	// value"), members named after their hosts, one kubernetes.pem for the apiserver and etcd
	// (copied into /etc/etcd), the CA key and kubeconfigs in /var/lib/kubernetes, and no
	// ca-config.json on the machines (the guide keeps it on the admin workstation). The guide
	// fronts the apiservers with a cloud load balancer; the lab gives every node a proxy.
	"hardway": {
		Name:                    "hardway",
		BinDir:                  "/usr/local/bin",
		EtcdDataDir:             "/var/lib/etcd",
		EtcdNameIsHost:          true,
		EtcdSpacedFlags:         true,
		EtcdServesAPIServerCert: true,
		// The guide's ca-config.json signs for a year (8760h): without it on the machines,
		// cfssl's one-year default signs no shorter than the certificates in place.
		CertExpiry:           "8760h",
		APIServerEtcdCert:    "/var/lib/kubernetes/kubernetes.pem",
		APIServerEtcdKey:     "/var/lib/kubernetes/kubernetes-key.pem",
		APIServerCert:        "/var/lib/kubernetes/kubernetes.pem",
		APIServerKey:         "/var/lib/kubernetes/kubernetes-key.pem",
		KubeconfigDir:        "/var/lib/kubernetes",
		NginxListenDirective: "127.0.0.1:6443",
		NginxUpstream:        "kubernetes",
		NginxServerParams:    "max_fails=3 fail_timeout=30s",
		NginxHeader:          optKubeNginxHeader,
		NginxRestartSec:      5,
		Proxy:                optKubeNginx,
	},
	// kubespray's etcd (inventory preset kubespray): /etc/etcd.env, etcd's own CA and the
	// per-host certificates of make-ssl-etcd.sh in /etc/ssl/etcd/ssl, binaries in
	// /usr/local/bin, the apiserver reaching etcd with node-<host>.pem. Kubespray runs the
	// Kubernetes components as kubeadm's static pods; the lab runs them as systemd units
	// with kubeadm's names in kubespray's kube_cert_dir, and gives every node a proxy (the
	// place of kubespray's nginx-proxy).
	"kubespray": {
		Name:              "kubespray",
		BinDir:            "/usr/local/bin",
		EtcdDataDir:       "/var/lib/etcd",
		EtcdNameIndexed:   true,
		Kubespray:         true,
		EtcdConf:          "/etc/etcd.env",
		EtcdCertDir:       "/etc/ssl/etcd/ssl",
		EtcdServingCert:   "/etc/ssl/etcd/ssl/member-" + inventory.HostPattern + ".pem",
		EtcdServingKey:    "/etc/ssl/etcd/ssl/member-" + inventory.HostPattern + "-key.pem",
		APIServerEtcdCert: "/etc/ssl/etcd/ssl/node-" + inventory.HostPattern + ".pem",
		APIServerEtcdKey:  "/etc/ssl/etcd/ssl/node-" + inventory.HostPattern + "-key.pem",
		// make-ssl-etcd.sh signs for 365 days, kubeadm (the cluster side) for a year too.
		CertExpiry:           "8760h",
		APIServerCert:        "/etc/kubernetes/ssl/apiserver.crt",
		APIServerKey:         "/etc/kubernetes/ssl/apiserver.key",
		KubeconfigDir:        "/etc/kubernetes",
		NginxListenDirective: "127.0.0.1:6443",
		NginxUpstream:        "kube_apiserver",
		NginxServerParams:    "max_fails=1 fail_timeout=30s",
		NginxHeader:          optKubeNginxHeader,
		NginxRestartSec:      5,
		Proxy:                optKubeNginx,
	},
}

func (lay Layout) certExpiry() string {
	if lay.CertExpiry == "" {
		return "87600h"
	}
	return lay.CertExpiry
}

// LayoutNames lists the known layouts, sorted.
func LayoutNames() []string {
	names := make([]string, 0, len(Layouts))
	for n := range Layouts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LookupLayout returns the layout called name.
func LookupLayout(name string) (Layout, error) {
	l, ok := Layouts[name]
	if !ok {
		return Layout{}, fmt.Errorf("unknown layout %q (known: %v)", name, LayoutNames())
	}
	return l, nil
}
