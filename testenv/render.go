package testenv

import (
	"encoding/base64"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mastershrink/mastershrink/inventory"
)

// labBinDir is where the host's binary folders are bind-mounted, read-only, in every machine.
const labBinDir = "/opt/mastershrink"

// file is one thing to put into a machine's root before it boots.
type file struct {
	Path string // absolute inside the machine
	Mode os.FileMode
	Data []byte
	Link string // a symlink to Link instead of a file
	Dir  bool   // a directory with Mode
}

func (l *Lab) hasRole(m Machine, role string) bool { return slices.Contains(m.Roles, role) }

// withRole lists the machines that have role, in the lab's order.
func (l *Lab) withRole(role string) []Machine {
	var out []Machine
	for _, m := range l.Machines {
		if l.hasRole(m, role) {
			out = append(out, m)
		}
	}
	return out
}

// kubeconfig renders a kubeconfig with embedded certificates, as `kubectl config set-* --embed-certs` writes it.
func kubeconfig(server, user string, ca, cert, key []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: %s
    server: %s
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: %s
  name: kubernetes
current-context: kubernetes
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
`, b64(ca), server, user, user, b64(cert), b64(key)))
}

func continued(bin string, flags []string) string {
	return bin + " \\\n  " + strings.Join(flags, " \\\n  ")
}

// localProxyURL is how components on a node reach the apiservers: its nginx proxy.
func (lay Layout) localProxyURL() string {
	return "https://" + lay.Paths.NginxListen
}

func (l *Lab) etcdUnit(lay Layout, m Machine, etcdBin string) string {
	if lay.Kubespray {
		// roles/etcd/templates/etcd-host.service.j2, run as root.
		return `[Unit]
Description=etcd
After=network.target

[Service]
Type=notify
User=root
EnvironmentFile=` + lay.EtcdConf + `
ExecStart=` + etcdBin + `
NotifyAccess=all
Restart=always
RestartSec=10s
LimitNOFILE=40000

[Install]
WantedBy=multi-user.target
`
	}
	exec := "ExecStart=" + continued(etcdBin, l.etcdFlags(lay, m))
	if lay.EnvFiles {
		// etcd reads ETCD_<FLAG> itself: the guides' unit names only the file.
		exec = "EnvironmentFile=" + lay.EtcdConf + "\nExecStart=" + etcdBin
	}
	return `[Unit]
Description=Etcd Server
After=network.target
After=network-online.target
Wants=network-online.target
Documentation=https://github.com/coreos

[Service]
Type=notify
WorkingDirectory=` + lay.EtcdDataDir + `
` + exec + `
Restart=on-failure
RestartSec=5
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`
}

// etcdConf is the env-file guides' etcd.conf: every flag as the ETCD_* variable etcd maps it
// to (a flag without a value is "true").
func etcdConf(flags []string) string {
	var b strings.Builder
	for _, f := range flags {
		name, value, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !ok {
			value = "true"
		}
		fmt.Fprintf(&b, "ETCD_%s=\"%s\"\n", strings.ToUpper(strings.ReplaceAll(name, "-", "_")), value)
	}
	return b.String()
}

// optsVar is the variable the env-file guides keep a component's flags in.
func optsVar(unit string) string {
	return strings.ToUpper(strings.ReplaceAll(unit, "-", "_")) + "_OPTS"
}

// kubeExec is a kube component's ExecStart: its flags on continuation lines, or, in the
// env-file layout, one $KUBE_*_OPTS word and the EnvironmentFile that sets it.
func (lay Layout) kubeExec(bin, unit string, flags []string) string {
	if !lay.EnvFiles {
		return "ExecStart=" + continued(bin, flags)
	}
	return "EnvironmentFile=" + path.Join(lay.KubeCfgDir, unit+".conf") + "\nExecStart=" + bin + " $" + optsVar(unit)
}

// optsConf is a component's /opt/kubernetes/cfg/<unit>.conf: one double-quoted variable over
// backslash continuations, as the guides write it.
func optsConf(unit string, flags []string) string {
	return optsVar(unit) + "=\"" + strings.Join(flags, " \\\n") + "\"\n"
}

func (l *Lab) etcdFlags(lay Layout, m Machine) []string {
	p := lay.Paths
	var initial []string
	peer := func(m Machine) string {
		if l.EtcdPeersByName {
			return m.Name
		}
		return m.Address
	}
	for _, e := range l.withRole("etcd") {
		initial = append(initial, fmt.Sprintf("%s=https://%s:%d", l.etcdName(lay, e), peer(e), p.EtcdPeerPort))
	}
	cert, key := forHost(p.EtcdCert, m), forHost(p.EtcdKey, m)
	if lay.EtcdServingCert != "" {
		cert, key = forHost(lay.EtcdServingCert, m), forHost(lay.EtcdServingKey, m)
	}
	listenClient := fmt.Sprintf("https://%s:%d,https://127.0.0.1:%d", m.Address, p.EtcdClientPort, p.EtcdClientPort)
	if lay.EtcdLocalHTTP {
		listenClient = fmt.Sprintf("https://%s:%d,http://127.0.0.1:%d", m.Address, p.EtcdClientPort, p.EtcdClientPort)
	}
	flags := []string{
		"--name=" + l.etcdName(lay, m),
		"--cert-file=" + cert,
		"--key-file=" + key,
		"--peer-cert-file=" + cert,
		"--peer-key-file=" + key,
		"--trusted-ca-file=" + p.EtcdCACert,
		"--peer-trusted-ca-file=" + p.EtcdCACert,
		"--client-cert-auth",
		"--peer-client-cert-auth",
		fmt.Sprintf("--initial-advertise-peer-urls=https://%s:%d", peer(m), p.EtcdPeerPort),
		fmt.Sprintf("--listen-peer-urls=https://%s:%d", m.Address, p.EtcdPeerPort),
		"--listen-client-urls=" + listenClient,
		fmt.Sprintf("--advertise-client-urls=https://%s:%d", m.Address, p.EtcdClientPort),
		"--initial-cluster-token=etcd-cluster-0",
		"--initial-cluster=" + strings.Join(initial, ","),
		"--initial-cluster-state=new",
		"--data-dir=" + lay.EtcdDataDir,
		"--auto-compaction-mode=periodic",
		"--auto-compaction-retention=1",
		"--max-request-bytes=10485760",
		"--quota-backend-bytes=8589934592",
	}
	if lay.Kubespray {
		// kubespray's etcd.env defaults.
		flags = append(flags, "--election-timeout=5000", "--heartbeat-interval=250", "--metrics=basic", "--snapshot-count=10000")
	}
	if lay.EtcdSpacedFlags {
		for i, f := range flags {
			name, value, _ := strings.Cut(f, "=")
			if spacedEtcdFlags[name] {
				flags[i] = name + " " + value
			}
		}
	}
	return flags
}

// spacedEtcdFlags are the flags the hard way's etcd.service writes as "--flag value".
var spacedEtcdFlags = map[string]bool{"--name": true, "--initial-advertise-peer-urls": true, "--listen-peer-urls": true,
	"--listen-client-urls": true, "--advertise-client-urls": true, "--initial-cluster-token": true, "--initial-cluster": true,
	"--initial-cluster-state": true}

// etcdName is the member name of the etcd on m.
func (l *Lab) etcdName(lay Layout, m Machine) string {
	switch {
	case lay.EtcdNameIsHost:
		return m.Name
	case lay.EtcdNameIndexed:
		for i, e := range l.withRole("etcd") {
			if e.Name == m.Name {
				return fmt.Sprintf("etcd%d", i+1)
			}
		}
	}
	return lay.EtcdNamePrefix + m.Address
}

// EtcdMemberName is the etcd member name the lab gives the etcd on the named machine.
func (l *Lab) EtcdMemberName(name string) string {
	lay, _ := LookupLayout(l.Layout)
	m, _ := l.Machine(name)
	return l.etcdName(lay, m)
}

// forHost puts the machine's name where a layout path has inventory.HostPattern.
func forHost(p string, m Machine) string { return strings.ReplaceAll(p, inventory.HostPattern, m.Name) }

func (l *Lab) apiserverUnit(lay Layout, m Machine) string {
	return `[Unit]
Description=Kubernetes API Server
Documentation=https://github.com/GoogleCloudPlatform/kubernetes
After=network.target

[Service]
` + lay.kubeExec(lay.BinDir+"/kube-apiserver", lay.Paths.APIServerUnit, l.apiserverFlags(lay, m)) + `
Restart=on-failure
RestartSec=5
Type=notify
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`
}

func (l *Lab) apiserverFlags(lay Layout, m Machine) []string {
	p := lay.Paths
	var servers []string
	for _, e := range l.withRole("etcd") {
		servers = append(servers, fmt.Sprintf("https://%s:%d", e.Address, p.EtcdClientPort))
	}
	flags := []string{
		"--advertise-address=" + m.Address,
		"--bind-address=" + m.Address,
		fmt.Sprintf("--secure-port=%d", p.APIServerPort),
		"--allow-privileged=true",
		"--anonymous-auth=false",
		"--authorization-mode=Node,RBAC",
		"--client-ca-file=" + p.CACert,
		"--enable-admission-plugins=NodeRestriction",
		"--etcd-cafile=" + p.EtcdCACert,
		"--etcd-certfile=" + forHost(lay.APIServerEtcdCert, m),
		"--etcd-keyfile=" + forHost(lay.APIServerEtcdKey, m),
		"--etcd-servers=" + strings.Join(servers, ","),
		"--request-timeout=" + l.RequestTimeout.String(),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.CACert,
		"--service-account-signing-key-file=" + p.CAKey,
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--service-node-port-range=30000-32767",
		"--tls-cert-file=" + lay.APIServerCert,
		"--tls-private-key-file=" + lay.APIServerKey,
		"--v=2",
	}
	return flags
}

func (l *Lab) controllerManagerUnit(lay Layout) string {
	return `[Unit]
Description=Kubernetes Controller Manager
Documentation=https://github.com/GoogleCloudPlatform/kubernetes

[Service]
` + lay.kubeExec(lay.BinDir+"/kube-controller-manager", lay.Paths.ControllerManagerUnit, l.controllerManagerFlags(lay)) + `
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
`
}

func (l *Lab) controllerManagerFlags(lay Layout) []string {
	p := lay.Paths
	kc := lay.KubeconfigDir + "/kube-controller-manager.kubeconfig"
	flags := []string{
		"--bind-address=127.0.0.1",
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--cluster-name=kubernetes",
		"--cluster-signing-cert-file=" + p.CACert,
		"--cluster-signing-key-file=" + p.CAKey,
		"--leader-elect=true",
		"--root-ca-file=" + p.CACert,
		"--service-account-private-key-file=" + p.CAKey,
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--use-service-account-credentials=true",
		"--v=2",
	}
	return flags
}

func (l *Lab) schedulerUnit(lay Layout) string {
	return `[Unit]
Description=Kubernetes Scheduler
Documentation=https://github.com/GoogleCloudPlatform/kubernetes

[Service]
` + lay.kubeExec(lay.BinDir+"/kube-scheduler", lay.Paths.SchedulerUnit, l.schedulerFlags(lay)) + `
Restart=always
RestartSec=5
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
`
}

func (l *Lab) schedulerFlags(lay Layout) []string {
	kc := lay.KubeconfigDir + "/kube-scheduler.kubeconfig"
	flags := []string{
		"--bind-address=127.0.0.1",
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--leader-elect=true",
		"--v=2",
	}
	return flags
}

func (l *Lab) nginxUnit(lay Layout) string {
	p := lay.Paths
	// kubeasz writes each command on one line; seed 003 wraps them, aligned under the binary.
	cmd := func(key, tail string) string {
		if lay.Name != "seed003" {
			return key + "=" + p.NginxBinary + " -c " + p.NginxConfig + " -p " + p.NginxPrefix + tail
		}
		pad := strings.Repeat(" ", len(key)+1)
		return key + "=" + p.NginxBinary + " \\\n" + pad + "-c " + p.NginxConfig + " \\\n" + pad + "-p " + p.NginxPrefix + tail
	}
	desc := "kube-apiserver nginx proxy"
	if lay.Name == "kubeasz" {
		desc = "l4 nginx proxy for kube-apiservers"
	}
	return fmt.Sprintf(`[Unit]
Description=%s
After=network.target
After=network-online.target
Wants=network-online.target

[Service]
Type=forking
%s
%s
%s
PrivateTmp=true
Restart=always
RestartSec=%d
StartLimitInterval=0
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`, desc, cmd("ExecStartPre", " -t"), cmd("ExecStart", ""), cmd("ExecReload", " -s reload"), lay.NginxRestartSec)
}

func (l *Lab) nginxConf(lay Layout) string { return l.nginxConfListen(lay, lay.NginxListenDirective) }

// nginxConfListen is the layout's proxy config listening at listen.
func (l *Lab) nginxConfListen(lay Layout, listen string) string {
	var b strings.Builder
	b.WriteString("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n")
	b.WriteString(lay.NginxHeader)
	fmt.Fprintf(&b, "stream {\n    upstream %s {\n", lay.NginxUpstream)
	if lay.Name == "seed003" {
		b.WriteString("      hash $remote_addr consistent;\n")
	}
	for i, m := range l.withRole("master") {
		server := m.Address
		if l.UpstreamsByName && i > 0 {
			server = m.Name
		}
		if lay.Name == "seed003" {
			fmt.Fprintf(&b, "      server %s:%d %s;\n", server, lay.Paths.APIServerPort, lay.NginxServerParams)
		} else {
			fmt.Fprintf(&b, "        server %s:%d %s;\n", server, lay.Paths.APIServerPort, lay.NginxServerParams)
		}
	}
	fmt.Fprintf(&b, "    }\n\n    server {\n        listen %s;\n        proxy_connect_timeout 1s;\n        proxy_pass %s;\n    }\n}\n",
		listen, lay.NginxUpstream)
	return b.String()
}

func (l *Lab) kubeletUnit(lay Layout, m Machine) string {
	kc := lay.KubeconfigDir + "/kubelet.kubeconfig"
	flags := []string{
		"--kubeconfig=" + kc,
		"--config=" + lay.KubeconfigDir + "/kwok-stages.yaml",
		"--manage-single-node=" + m.Name,
		// A node lease as kubelets keep one: without it kwok's status heartbeat (about a
		// minute) outlasts the controller-manager's 50 s grace and Nodes flap NotReady.
		"--node-lease-duration-seconds=40",
		"--node-ip=" + m.Address,
		"--server-address=127.0.0.1:10247",
	}
	return `[Unit]
Description=kubelet played by kwok (registers its Node, then keeps it and its pods alive)
After=network.target ` + lay.Paths.NginxUnit + `.service

[Service]
ExecStartPre=` + lay.BinDir + `/kubectl --kubeconfig=` + kc + ` apply -f ` + lay.KubeconfigDir + `/node.yaml
ExecStart=` + continued(lay.BinDir+"/kwok", flags) + `
Restart=always
RestartSec=5
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
`
}

func nodeManifest(m Machine) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %s
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: %s
    kubernetes.io/os: linux
    node-role.kubernetes.io/worker: ""
    type: kwok
status:
  allocatable:
    cpu: "8"
    memory: 32Gi
    pods: "110"
  capacity:
    cpu: "8"
    memory: 32Gi
    pods: "110"
`, m.Name, m.Name)
}

// machineFiles is everything a machine needs besides the rootfs, for its roles and the layout.
func (l *Lab) machineFiles(lay Layout, m Machine, b binaries, pki map[string][]byte, stages, hostKey, hostPub, authorized []byte) []file {
	p := lay.Paths
	var fs []file
	add := func(p string, mode os.FileMode, data string) {
		fs = append(fs, file{Path: p, Mode: mode, Data: []byte(data)})
	}
	link := func(p, target string) { fs = append(fs, file{Path: p, Link: target}) }
	dir := func(p string, mode os.FileMode) { fs = append(fs, file{Path: p, Mode: mode, Dir: true}) }

	add("/etc/hostname", 0o644, m.Name+"\n")
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	for _, o := range l.Machines {
		hosts += o.Address + "\t" + o.Name + "\n"
	}
	add("/etc/hosts", 0o644, hosts)
	add("/etc/ssh/ssh_host_ed25519_key", 0o600, string(hostKey))
	add("/etc/ssh/ssh_host_ed25519_key.pub", 0o644, string(hostPub))
	add("/etc/ssh/sshd_config.d/lab.conf", 0o644, "HostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\nUseDNS no\n")
	add("/root/.ssh/authorized_keys", 0o600, string(authorized))

	// Binaries: symlinks from the layout's bin folder into the read-only bind mounts.
	bins := map[string]string{
		"kubectl": labBinDir + "/kubernetes/kubectl",
		"cfssl":   labBinDir + "/cfssl/cfssl", "cfssljson": labBinDir + "/cfssl/cfssljson",
	}
	if b.Etcd != "" {
		for _, n := range []string{"etcd", "etcdctl", "etcdutl"} {
			bins[n] = labBinDir + "/etcd/" + n
		}
	} else {
		bins["etcd"], bins["etcdctl"] = "/usr/bin/etcd", "/usr/bin/etcdctl"
	}
	for n, t := range bins {
		link(path.Join(lay.BinDir, n), t)
	}
	if lay.BinDir != "/usr/local/bin" {
		link("/usr/local/bin/kubectl", path.Join(lay.BinDir, "kubectl"))
		if b.Etcd != "" {
			link("/usr/local/bin/etcdctl", path.Join(lay.BinDir, "etcdctl"))
		}
	}
	addUnit := func(name, text string) {
		add("/etc/systemd/system/"+name+".service", 0o644, text)
		link("/etc/systemd/system/multi-user.target.wants/"+name+".service", "/etc/systemd/system/"+name+".service")
	}
	if l.Proxy == ProxyHAProxy {
		fs = append(fs, l.haproxyFiles(lay)...)
	} else {
		link(p.NginxBinary, "/usr/sbin/nginx")
		if l.hasRole(m, "lb") {
			add(p.NginxConfig, 0o644, l.nginxConfListen(lay, strconv.Itoa(LBPort)))
		} else {
			add(p.NginxConfig, 0o644, l.nginxConf(lay))
		}
		dir(path.Join(p.NginxPrefix, "logs"), 0o755)
		addUnit(p.NginxUnit, l.nginxUnit(lay))
	}

	// Every machine trusts the CA and has the admin kubeconfig through its own proxy, so an
	// operator can run kubectl anywhere.
	add(p.CACert, 0o644, string(pki["ca.pem"]))
	add("/root/.kube/config", 0o600, string(kubeconfig(lay.localProxyURL(), "admin", pki["ca.pem"], pki["admin.pem"], pki["admin-key.pem"])))

	if lay.Kubespray {
		fs = append(fs, kubesprayEtcdFiles(lay.EtcdCertDir, l.etcdPKI, m, l.hasRole(m, "etcd"))...)
	}
	if l.hasRole(m, "etcd") && lay.Kubespray {
		dir(lay.EtcdDataDir, 0o700)
		addUnit(p.EtcdUnit, l.etcdUnit(lay, m, path.Join(lay.BinDir, "etcd")))
		add(lay.EtcdConf, 0o644, kubesprayEtcdEnv(l.etcdFlags(lay, m), lay.EtcdCertDir, m.Name))
	} else if l.hasRole(m, "etcd") {
		// Where the preset says etcd's certificate is (PKIDir/etcd.pem but for the env-file
		// guides' /opt/etcd/ssl/server.pem), with its CA beside it when that is elsewhere.
		etcdPair := [2]string{"etcd.pem", "etcd-key.pem"}
		if lay.EtcdServesAPIServerCert {
			etcdPair = [2]string{"kubernetes.pem", "kubernetes-key.pem"}
		}
		add(p.EtcdCert, 0o600, string(pki[etcdPair[0]]))
		add(p.EtcdKey, 0o600, string(pki[etcdPair[1]]))
		if p.EtcdCACert != path.Join(p.PKIDir, "ca.pem") {
			add(p.EtcdCACert, 0o644, string(pki["ca.pem"]))
		}
		dir(lay.EtcdDataDir, 0o700)
		etcdBin := path.Join(lay.BinDir, "etcd")
		if lay.EtcdBinDir != "" {
			etcdBin = path.Join(lay.EtcdBinDir, "etcd")
			link(etcdBin, bins["etcd"])
		}
		addUnit(p.EtcdUnit, l.etcdUnit(lay, m, etcdBin))
		if lay.EnvFiles {
			add(lay.EtcdConf, 0o644, etcdConf(l.etcdFlags(lay, m)))
		}
	}
	if l.hasRole(m, "master") {
		add(p.CAKey, 0o600, string(pki["ca-key.pem"]))
		for _, n := range []string{"admin.pem", "admin-key.pem",
			"kube-controller-manager.pem", "kube-controller-manager-key.pem", "kube-scheduler.pem", "kube-scheduler-key.pem"} {
			add(path.Join(p.PKIDir, n), 0o600, string(pki[n]))
		}
		add(lay.APIServerCert, 0o600, string(pki["kubernetes.pem"]))
		add(lay.APIServerKey, 0o600, string(pki["kubernetes-key.pem"]))
		// The operator's cfssl work folder: CSR files, ca-config.json and what cfssljson wrote
		// (none on the machines where the guide made the certificates elsewhere).
		for n, data := range pki {
			if p.CSRDir != "" && (strings.HasSuffix(n, "-csr.json") || n == "ca-config.json" || (p.CSRDir != p.PKIDir && (strings.HasSuffix(n, ".pem") || strings.HasSuffix(n, ".csr")))) {
				add(path.Join(p.CSRDir, n), 0o600, string(data))
			}
		}
		if p.CAConfig != "" && path.Dir(p.CAConfig) != p.CSRDir {
			add(p.CAConfig, 0o600, string(pki["ca-config.json"]))
		}
		add(path.Join(lay.KubeconfigDir, "kube-controller-manager.kubeconfig"), 0o600,
			string(kubeconfig(lay.localProxyURL(), "system:kube-controller-manager", pki["ca.pem"], pki["kube-controller-manager.pem"], pki["kube-controller-manager-key.pem"])))
		add(path.Join(lay.KubeconfigDir, "kube-scheduler.kubeconfig"), 0o600,
			string(kubeconfig(lay.localProxyURL(), "system:kube-scheduler", pki["ca.pem"], pki["kube-scheduler.pem"], pki["kube-scheduler-key.pem"])))
		for n := range map[string]bool{"kube-apiserver": true, "kube-controller-manager": true, "kube-scheduler": true} {
			link(path.Join(lay.BinDir, n), labBinDir+"/kubernetes/"+n)
		}
		addUnit(p.APIServerUnit, l.apiserverUnit(lay, m))
		addUnit(p.ControllerManagerUnit, l.controllerManagerUnit(lay))
		addUnit(p.SchedulerUnit, l.schedulerUnit(lay))
		if lay.EnvFiles {
			add(path.Join(lay.KubeCfgDir, p.APIServerUnit+".conf"), 0o644, optsConf(p.APIServerUnit, l.apiserverFlags(lay, m)))
			add(path.Join(lay.KubeCfgDir, p.ControllerManagerUnit+".conf"), 0o644, optsConf(p.ControllerManagerUnit, l.controllerManagerFlags(lay)))
			add(path.Join(lay.KubeCfgDir, p.SchedulerUnit+".conf"), 0o644, optsConf(p.SchedulerUnit, l.schedulerFlags(lay)))
		}
	}
	if l.hasRole(m, "worker") {
		link(path.Join(lay.BinDir, "kwok"), labBinDir+"/kwok/kwok")
		add(path.Join(lay.KubeconfigDir, "kubelet.kubeconfig"), 0o600,
			string(kubeconfig(lay.localProxyURL(), "kwok", pki["ca.pem"], pki["kubelet.pem"], pki["kubelet-key.pem"])))
		add(path.Join(lay.KubeconfigDir, "kwok-stages.yaml"), 0o644, string(stages))
		add(path.Join(lay.KubeconfigDir, "node.yaml"), 0o644, nodeManifest(m))
		addUnit(p.KubeletUnit, l.kubeletUnit(lay, m))
	}
	return fs
}

// writeFiles puts fs into the machine root at root (the merged overlay on the host).
func writeFiles(root string, fs []file) error {
	for _, f := range fs {
		dst := filepath.Join(root, f.Path)
		if f.Dir {
			if err := os.MkdirAll(dst, f.Mode); err != nil {
				return fmt.Errorf("machine dir %s: %w", f.Path, err)
			}
			if err := os.Chmod(dst, f.Mode); err != nil {
				return fmt.Errorf("machine dir %s: %w", f.Path, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("machine file %s: %w", f.Path, err)
		}
		if f.Link != "" {
			os.Remove(dst)
			if err := os.Symlink(f.Link, dst); err != nil {
				return fmt.Errorf("machine link %s: %w", f.Path, err)
			}
			continue
		}
		if err := os.WriteFile(dst, f.Data, f.Mode); err != nil {
			return fmt.Errorf("machine file %s: %w", f.Path, err)
		}
		if err := os.Chmod(dst, f.Mode); err != nil {
			return fmt.Errorf("machine file %s: %w", f.Path, err)
		}
	}
	return nil
}
