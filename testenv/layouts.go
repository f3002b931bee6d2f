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
		NginxHeader:          "worker_processes 1;\nerror_log /opt/kube-nginx/logs/error.log warn;\nevents {\n    worker_connections  1024;\n}\n",
		NginxRestartSec:      5,
		EnvFiles:             true,
		EtcdConf:             "/opt/etcd/cfg/etcd.conf",
		KubeCfgDir:           "/opt/kubernetes/cfg",
		Proxy: inventory.Paths{NginxUnit: "kube-nginx", NginxBinary: "/opt/kube-nginx/sbin/nginx", NginxPrefix: "/opt/kube-nginx",
			NginxConfig: "/opt/kube-nginx/conf/kube-nginx.conf", NginxListen: "127.0.0.1:6443"},
	},
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
