package inventory

import (
	"sort"
	"strings"
)

// upstream is what every preset has in common: the units named after the binaries and the
// ports the components listen on by default. A preset says only where its guide differs.
var upstream = Paths{
	EtcdUnit:              "etcd",
	APIServerUnit:         "kube-apiserver",
	ControllerManagerUnit: "kube-controller-manager",
	SchedulerUnit:         "kube-scheduler",
	KubeletUnit:           "kubelet",
	KubeProxyUnit:         "kube-proxy",

	APIServerPort:  6443,
	EtcdClientPort: 2379,
	EtcdPeerPort:   2380,
}

// preset is upstream with a layout's own settings over it.
func preset(own Paths) Paths {
	p := upstream
	overlay(&p, own)
	return p
}

// layouts are the presets a host's Paths start from. File names without a folder (ca.pem)
// are inside PKIDir.
var layouts = map[string]Paths{
	// seed003 is the layout of seed 003's write-up: units named kube-*, an nginx stream proxy
	// on every node at 127.0.0.1:8443, everything PKI in /etc/kubernetes/ssl.
	"seed003": preset(Paths{
		EtcdUnit:  "kube-etcd",
		NginxUnit: "kube-nginx",

		NginxBinary: "/approot/data/k8s/bin/nginx",
		NginxPrefix: "/approot/data/k8s/kube-nginx",
		NginxConfig: "/approot/data/k8s/kube-nginx/kube-nginx.conf",
		NginxListen: "127.0.0.1:8443",

		PKIDir: "/etc/kubernetes/ssl",
		CACert: "ca.pem",
		CAKey:  "ca-key.pem",
		// The cfssl work folder of the guides seed 003 follows, where the CSR JSON files
		// and the CA config were made before the certificates were copied to PKIDir.
		CAConfig: "/opt/k8s/work/ca-config.json",
		CSRDir:   "/opt/k8s/work",

		EtcdCACert: "ca.pem",
		EtcdCert:   "etcd.pem",
		EtcdKey:    "etcd-key.pem",
	}),
	// kubeasz is easzlab/kubeasz's layout (roles/etcd, roles/kube-master, roles/kube-lb):
	// the node proxy is nginx installed as /etc/kube-lb/sbin/kube-lb listening on
	// 127.0.0.1:6443; ca.pem and ca-key.pem are copied to every master's ca_dir. The CA
	// config and CSR JSON files are where kubeasz 2.x made them, in ca_dir; kubeasz 3.x
	// keeps them on its deploy node in /etc/kubeasz/clusters/NAME/ssl (override csr_dir
	// and ca_config for that).
	"kubeasz": preset(Paths{
		NginxUnit: "kube-lb",

		NginxBinary: "/etc/kube-lb/sbin/kube-lb",
		NginxPrefix: "/etc/kube-lb",
		NginxConfig: "/etc/kube-lb/conf/kube-lb.conf",
		NginxListen: "127.0.0.1:6443",

		PKIDir:   "/etc/kubernetes/ssl",
		CACert:   "ca.pem",
		CAKey:    "ca-key.pem",
		CAConfig: "ca-config.json",
		CSRDir:   ".",

		EtcdCACert: "ca.pem",
		EtcdCert:   "etcd.pem",
		EtcdKey:    "etcd-key.pem",
	}),
	// hardway is Kelsey Hightower's "Kubernetes the hard way": units named after the
	// binaries with every flag on ExecStart, etcd's certificates (kubernetes.pem, shared with
	// the apiserver, and ca.pem) in /etc/etcd, the apiserver's and the CA key in
	// /var/lib/kubernetes. There is no proxy on the nodes (the guide fronts the apiservers
	// with a cloud load balancer), so no nginx path is set; ca-config.json stays on the
	// machine the guide made the certificates on (set ca_config to a copy of it, else the
	// cfssl defaults apply).
	"hardway": preset(Paths{
		PKIDir: "/var/lib/kubernetes",
		CACert: "ca.pem",
		CAKey:  "ca-key.pem",

		EtcdCACert: "/etc/etcd/ca.pem",
		EtcdCert:   "/etc/etcd/kubernetes.pem",
		EtcdKey:    "/etc/etcd/kubernetes-key.pem",
	}),
	// envfile is the layout of the most copied env-file binary-install guides: etcd in
	// /opt/etcd/{bin,cfg,ssl} with its flags as ETCD_* variables in /opt/etcd/cfg/etcd.conf,
	// kubernetes in /opt/kubernetes/{bin,cfg,ssl} with each component's flags in one
	// KUBE_*_OPTS variable of /opt/kubernetes/cfg/<component>.conf; `cp ca*pem server*pem`
	// puts the CA key next to the certificates. The guides' HA front end is a pair of LB
	// hosts, not a proxy on every node, so no nginx path is set (set nginx_config and
	// friends on the hosts that run one). The guide runs cfssl as root in ~/TLS/k8s on the
	// first master, where ca-config.json and the CSR files stay (a host without them signs
	// with the CA's own profile).
	"envfile": preset(Paths{
		PKIDir:   "/opt/kubernetes/ssl",
		CACert:   "ca.pem",
		CAKey:    "ca-key.pem",
		CAConfig: "/root/TLS/k8s/ca-config.json",
		CSRDir:   "/root/TLS/k8s",

		EtcdCACert: "/opt/etcd/ssl/ca.pem",
		EtcdCert:   "/opt/etcd/ssl/server.pem",
		EtcdKey:    "/opt/etcd/ssl/server-key.pem",
	}),
	// kubespray is kubespray's etcd with etcd_deployment_type: host (roles/etcd):
	// /etc/systemd/system/etcd.service runs the bare /usr/local/bin/etcd with every flag an
	// ETCD_* variable of /etc/etcd.env, and the certificates make-ssl-etcd.sh signs with
	// etcd's own CA (ca.pem, ca-key.pem; CN etcd-ca) sit in /etc/ssl/etcd/ssl on every etcd
	// host: member-<host>.pem (etcd's serving and peer pair), admin-<host>.pem (etcdctl's,
	// ETCDCTL_CERT in etcd.env) and node-<host>.pem (the apiserver's and every node's), each
	// with every etcd address, named after the inventory host ({host} below). mastershrink
	// talks to etcd as etcdctl does there. The Kubernetes side follows kubespray's
	// kube_cert_dir (kubeadm's ca.crt and ca.key in /etc/kubernetes/ssl), with the
	// components as systemd units: kubespray's own static pods are not supported.
	"kubespray": preset(Paths{
		PKIDir: "/etc/kubernetes/ssl",
		CACert: "ca.crt",
		CAKey:  "ca.key",

		EtcdCACert: "/etc/ssl/etcd/ssl/ca.pem",
		EtcdCert:   "/etc/ssl/etcd/ssl/admin-" + HostPattern + ".pem",
		EtcdKey:    "/etc/ssl/etcd/ssl/admin-" + HostPattern + "-key.pem",
	}),
}

// HostPattern in a path stands for the host's inventory name: kubespray names its per-host
// etcd certificates after inventory_hostname.
const HostPattern = "{host}"

// ForHost returns p with HostPattern in its paths replaced by the host's name.
func (p Paths) ForHost(name string) Paths {
	for _, f := range []*string{&p.PKIDir, &p.CACert, &p.CAKey, &p.CAConfig, &p.CSRDir, &p.EtcdCACert, &p.EtcdCert, &p.EtcdKey,
		&p.NginxBinary, &p.NginxPrefix, &p.NginxConfig} {
		*f = strings.ReplaceAll(*f, HostPattern, name)
	}
	return p
}

// Layout returns a preset by name, every file path absolute, as a host without overrides
// gets it.
func Layout(name string) (Paths, bool) {
	p, ok := layouts[name]
	absPKIPaths(&p)
	return p, ok
}

// Layouts lists the preset names, sorted.
func Layouts() []string {
	names := make([]string, 0, len(layouts))
	for n := range layouts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func layoutList() string {
	names := Layouts()
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
