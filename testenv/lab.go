package testenv

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Subnet of every lab: each lab has its own namespace holding the bridge, so labs with
// different names do not collide even though they use the same addresses.
const (
	BridgeAddress = "10.88.0.1"
	firstMaster   = 11
	firstWorker   = 21
	firstLB       = 31
)

// Machine is one systemd-nspawn machine of the lab.
type Machine struct {
	Name    string
	Address string
	Roles   []string
	// PID is the machine's PID 1 (systemd) as seen from the host.
	PID int
	// NspawnPID is the systemd-nspawn process that runs the machine.
	NspawnPID int
	// NetNS is the path of the machine's network namespace.
	NetNS string
	// Root is the merged overlay folder on the host, the machine's /.
	Root string
}

// Lab is a running lab, as Up made it and lab.json records it.
type Lab struct {
	Options
	// NetNS is the path of the lab namespace holding the bridge (10.88.0.1/24).
	NetNS    string
	Machines []Machine
	// Inventory, Kubeconfig, SSHKey and KnownHosts are files in OutDir.
	Inventory, Kubeconfig, SSHKey, KnownHosts string
	// EtcdCA, EtcdCert and EtcdKey are etcd client TLS material in OutDir.
	EtcdCA, EtcdCert, EtcdKey string
	// StateDir holds the overlays, the cfssl PKI folder and the machine logs.
	StateDir string
	// PKIDir is the host-side cfssl work folder (CA key, every certificate, CSR JSON files).
	PKIDir string

	// etcdPKI is etcd's own PKI by file name, where the layout has one (kubespray's).
	etcdPKI map[string][]byte
}

func (l *Lab) logf(format string, args ...any) {
	fmt.Fprintf(l.Log, "[lab %s] "+format+"\n", append([]any{l.Name}, args...)...)
}

// Machine returns the machine called name.
func (l *Lab) Machine(name string) (Machine, bool) {
	for _, m := range l.Machines {
		if m.Name == name {
			return m, true
		}
	}
	return Machine{}, false
}

// EtcdEndpoints are the client URLs of every etcd member.
func (l *Lab) EtcdEndpoints() []string {
	lay, _ := LookupLayout(l.Layout)
	var out []string
	for _, m := range l.withRole("etcd") {
		out = append(out, fmt.Sprintf("https://%s:%d", m.Address, lay.Paths.EtcdClientPort))
	}
	return out
}

// APIServerURLs are the https URLs of every kube-apiserver.
func (l *Lab) APIServerURLs() []string {
	lay, _ := LookupLayout(l.Layout)
	var out []string
	for _, m := range l.withRole("master") {
		out = append(out, fmt.Sprintf("https://%s:%d", m.Address, lay.Paths.APIServerPort))
	}
	return out
}

// DialContext makes sockets inside the lab namespace, which reaches every machine's address.
func (l *Lab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialerIn(l.NetNS)(ctx, network, addr)
}

// Exec runs cmd on machine host (in all its namespaces, with a clean root environment) and
// returns its combined output; the error includes the output.
func (l *Lab) Exec(ctx context.Context, host string, cmd ...string) ([]byte, error) {
	m, ok := l.Machine(host)
	if !ok {
		return nil, fmt.Errorf("exec on %s: no such machine in lab %s", host, l.Name)
	}
	if len(cmd) == 0 {
		return nil, fmt.Errorf("exec on %s: empty command", host)
	}
	args := append([]string{"-t", strconv.Itoa(m.PID), "-a", "--"}, cmd...)
	c := exec.CommandContext(ctx, "nsenter", args...)
	c.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "USER=root", "TERM=dumb"}
	out, err := c.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("exec on %s %q: %w: %s", host, strings.Join(cmd, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Open reads the state Up wrote: outDirOrName is an OutDir holding lab.json, or a lab name.
func Open(outDirOrName string) (*Lab, error) {
	p := filepath.Join(outDirOrName, "lab.json")
	if _, err := os.Stat(p); err != nil {
		p = filepath.Join(StateRoot(), outDirOrName, "lab.json")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w", outDirOrName, err)
	}
	var l Lab
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("open lab %s: %s: %w", outDirOrName, p, err)
	}
	l.Log = os.Stderr
	return &l, nil
}

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("lab %s state: %w", l.Name, err)
	}
	for _, p := range []string{filepath.Join(l.OutDir, "lab.json"), filepath.Join(l.StateDir, "lab.json")} {
		if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("lab %s state: %w", l.Name, err)
		}
	}
	return nil
}

// plan fills in the machines, paths and files a lab with these options has.
func plan(o Options) *Lab {
	l := &Lab{Options: o, NetNS: netnsPath(o.Name), StateDir: filepath.Join(StateRoot(), o.Name)}
	l.PKIDir = filepath.Join(l.StateDir, "pki")
	add := func(name, addr string, roles ...string) {
		l.Machines = append(l.Machines, Machine{Name: name, Address: addr, Roles: roles,
			NetNS: netnsPath(o.Name + "-" + name), Root: filepath.Join(l.StateDir, "machines", name, "merged")})
	}
	for i := 0; i < o.Masters; i++ {
		add(fmt.Sprintf("m%d", i+1), fmt.Sprintf("10.88.0.%d", firstMaster+i), "etcd", "master")
	}
	for i := 0; i < o.Workers; i++ {
		add(fmt.Sprintf("w%d", i+1), fmt.Sprintf("10.88.0.%d", firstWorker+i), "worker")
	}
	for i := 0; i < o.LBHosts; i++ {
		add(fmt.Sprintf("lb%d", i+1), fmt.Sprintf("10.88.0.%d", firstLB+i), "lb")
	}
	l.Inventory = filepath.Join(o.OutDir, "inventory.yaml")
	l.Kubeconfig = filepath.Join(o.OutDir, "admin.kubeconfig")
	l.SSHKey = filepath.Join(o.OutDir, "id_ed25519")
	l.KnownHosts = filepath.Join(o.OutDir, "known_hosts")
	l.EtcdCA = filepath.Join(o.OutDir, "etcd-ca.pem")
	l.EtcdCert = filepath.Join(o.OutDir, "etcd.pem")
	l.EtcdKey = filepath.Join(o.OutDir, "etcd-key.pem")
	return l
}

// Up builds and starts a lab. It first removes whatever an earlier run with the same Name
// left (processes, mounts, namespaces, cgroup folders, state), builds or finds the cached
// rootfs and binaries, and returns once etcd is healthy, every apiserver ready, every worker
// Node Ready and every sshd answering. On error nothing of the lab is left running, unless
// MASTERSHRINK_LAB_KEEP=1 (for debugging).
func Up(ctx context.Context, opts Options) (*Lab, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := CheckHost(); err != nil {
		return nil, err
	}
	if err := raiseInotifyLimits(); err != nil {
		return nil, err
	}
	l := plan(opts)
	if left := Leftovers(l.Name); len(left) > 0 {
		l.logf("removing what an earlier lab %s left: %d items (%s, ...)", l.Name, len(left), left[0])
	}
	if err := cleanup(l.Name, l.Log); err != nil {
		return nil, fmt.Errorf("clean earlier lab %s: %w", l.Name, err)
	}
	rootfs, bins, err := ensureArtifacts(ctx, opts)
	if err != nil {
		return nil, err
	}
	l.logf("starting %d masters and %d workers (layout %s, kubernetes %s, etcd %s)", l.Masters, l.Workers, l.Layout, l.KubernetesVersion, l.EtcdVersion)
	err = l.start(ctx, rootfs, bins)
	if err == nil {
		err = l.waitReady(ctx)
	}
	if err != nil {
		l.logf("lab up failed: %v", err)
		l.dumpFailures(context.Background())
		if os.Getenv("MASTERSHRINK_LAB_KEEP") == "1" {
			l.logf("MASTERSHRINK_LAB_KEEP=1: leaving the lab running for inspection; `lab down --name %s` removes it", l.Name)
			return l, err
		}
		if derr := l.Down(context.Background()); derr != nil {
			return nil, errors.Join(err, derr)
		}
		return nil, err
	}
	l.logf("up in %s: inventory %s, kubeconfig %s", time.Since(start).Round(100*time.Millisecond), l.Inventory, l.Kubeconfig)
	return l, nil
}

func (l *Lab) start(ctx context.Context, rootfs string, bins binaries) error {
	lay, _ := LookupLayout(l.Layout)
	for _, d := range []string{l.StateDir, l.OutDir, filepath.Join(l.StateDir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("lab %s: %w", l.Name, err)
		}
	}
	if err := l.save(); err != nil {
		return err
	}

	t := time.Now()
	if err := makePKI(ctx, l.PKIDir, bins.Cfssl, l.withRole("master"), l.EtcdPeersByName, lay.certExpiry()); err != nil {
		return err
	}
	pki := map[string][]byte{}
	entries, err := os.ReadDir(l.PKIDir)
	if err != nil {
		return fmt.Errorf("lab %s pki: %w", l.Name, err)
	}
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(l.PKIDir, e.Name())); err == nil {
			pki[e.Name()] = b
		}
	}
	etcdCA, etcdCert, etcdKey := pki["ca.pem"], pki["etcd.pem"], pki["etcd-key.pem"]
	if lay.Kubespray {
		dir := filepath.Join(l.PKIDir, "etcd-ssl")
		if err := makeKubesprayEtcdPKI(ctx, dir, l.withRole("etcd"), l.Machines); err != nil {
			return err
		}
		l.etcdPKI = map[string][]byte{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("lab %s etcd pki: %w", l.Name, err)
		}
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				l.etcdPKI[e.Name()] = b
			}
		}
		first := l.withRole("etcd")[0].Name
		etcdCA, etcdCert, etcdKey = l.etcdPKI["ca.pem"], l.etcdPKI["admin-"+first+".pem"], l.etcdPKI["admin-"+first+"-key.pem"]
	}
	stages, err := os.ReadFile(filepath.Join(bins.Kwok, "stages.yaml"))
	if err != nil {
		return fmt.Errorf("kwok stages: %w", err)
	}
	l.logf("PKI made with cfssl in %s (%s)", l.PKIDir, time.Since(t).Round(time.Millisecond))

	// The operator's SSH key and every machine's host key.
	_, userKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("ssh key: %w", err)
	}
	userSigner, _ := ssh.NewSignerFromKey(userKey)
	userPEM, err := ssh.MarshalPrivateKey(userKey, "mastershrink lab "+l.Name)
	if err != nil {
		return fmt.Errorf("ssh key: %w", err)
	}
	authorized := ssh.MarshalAuthorizedKey(userSigner.PublicKey())
	var known strings.Builder
	hostKeys := map[string][2][]byte{}
	for _, m := range l.Machines {
		_, hk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("host key %s: %w", m.Name, err)
		}
		s, _ := ssh.NewSignerFromKey(hk)
		hkPEM, err := ssh.MarshalPrivateKey(hk, "root@"+m.Name)
		if err != nil {
			return fmt.Errorf("host key %s: %w", m.Name, err)
		}
		hostKeys[m.Name] = [2][]byte{pem.EncodeToMemory(hkPEM), ssh.MarshalAuthorizedKey(s.PublicKey())}
		known.WriteString(knownhosts.Line([]string{m.Address, m.Name}, s.PublicKey()) + "\n")
	}

	// Out files.
	outs := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{l.SSHKey, pem.EncodeToMemory(userPEM), 0o600},
		{l.SSHKey + ".pub", authorized, 0o644},
		{l.KnownHosts, []byte(known.String()), 0o644},
		{l.Kubeconfig, kubeconfig(fmt.Sprintf("https://%s:%d", l.withRole("master")[0].Address, lay.Paths.APIServerPort), "admin", pki["ca.pem"], pki["admin.pem"], pki["admin-key.pem"]), 0o600},
		{l.EtcdCA, etcdCA, 0o644},
		{l.EtcdCert, etcdCert, 0o644},
		{l.EtcdKey, etcdKey, 0o600},
		{l.Inventory, l.inventoryYAML(), 0o644},
	}
	for _, o := range outs {
		if err := os.WriteFile(o.path, o.data, o.mode); err != nil {
			return fmt.Errorf("lab %s: %w", l.Name, err)
		}
	}

	// Network: the lab namespace with the bridge, one namespace per machine.
	if err := ip(ctx, "netns", "add", l.Name); err != nil {
		return err
	}
	ns := []string{"-n", l.Name}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"addr", "add", BridgeAddress + "/24", "dev", "br0"},
		{"link", "set", "br0", "up"},
	} {
		if err := ip(ctx, append(ns, args...)...); err != nil {
			return err
		}
	}
	for _, m := range l.Machines {
		mns := l.Name + "-" + m.Name
		if err := ip(ctx, "netns", "add", mns); err != nil {
			return err
		}
		for _, args := range [][]string{
			append(ns, "link", "add", m.Name, "type", "veth", "peer", "name", "eth0", "netns", mns),
			append(ns, "link", "set", m.Name, "master", "br0", "up"),
			{"-n", mns, "link", "set", "lo", "up"},
			{"-n", mns, "addr", "add", m.Address + "/24", "dev", "eth0"},
			{"-n", mns, "link", "set", "eth0", "up"},
			{"-n", mns, "route", "add", "default", "via", BridgeAddress},
		} {
			if err := ip(ctx, args...); err != nil {
				return err
			}
		}
	}

	// Machines: overlay, files, then boot all at once.
	for i := range l.Machines {
		m := &l.Machines[i]
		dir := filepath.Dir(m.Root)
		for _, d := range []string{"upper", "work", "merged"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				return fmt.Errorf("machine %s: %w", m.Name, err)
			}
		}
		opt := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
		if out, err := exec.CommandContext(ctx, "mount", "-t", "overlay", "overlay", "-o", opt, m.Root).CombinedOutput(); err != nil {
			return fmt.Errorf("machine %s overlay: %w: %s", m.Name, err, out)
		}
		hk := hostKeys[m.Name]
		if err := writeFiles(m.Root, l.machineFiles(lay, *m, bins, pki, stages, hk[0], hk[1], authorized)); err != nil {
			return fmt.Errorf("machine %s: %w", m.Name, err)
		}
	}
	if err := l.save(); err != nil {
		return err
	}
	t = time.Now()
	for i := range l.Machines {
		if err := l.boot(ctx, &l.Machines[i], bins); err != nil {
			return err
		}
	}
	if err := l.save(); err != nil {
		return err
	}
	l.logf("%d machines booting (nspawn started in %s); logs in %s", len(l.Machines), time.Since(t).Round(time.Millisecond), filepath.Join(l.StateDir, "logs"))
	return nil
}

// cgroupDirs are the lab's cgroup folders: on a hybrid host (this kind of machine) one in the
// unified and one in the named systemd hierarchy, on a pure cgroup2 host one. The last one
// holds every process of the lab.
func cgroupDirs(name string) []string {
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err == nil {
		return []string{"/sys/fs/cgroup/unified/" + name, "/sys/fs/cgroup/systemd/" + name}
	}
	return []string{"/sys/fs/cgroup/" + name}
}

// boot starts systemd-nspawn for m from its own cgroup folders (nspawn --keep-unit makes the
// machine's cgroups under its caller's) and records the machine's PID 1.
func (l *Lab) boot(ctx context.Context, m *Machine, bins binaries) error {
	var enter []string
	for _, d := range cgroupDirs(l.Name) {
		cg := filepath.Join(d, m.Name)
		if err := os.MkdirAll(cg, 0o755); err != nil {
			return fmt.Errorf("machine %s cgroup: %w", m.Name, err)
		}
		enter = append(enter, "echo $$ > "+cg+"/cgroup.procs")
	}
	args := []string{"-c", strings.Join(enter, " && ") + ` && exec "$@"`, "sh",
		"systemd-nspawn", "--quiet", "-b", "-D", m.Root,
		"--machine=" + l.Name + "-" + m.Name, "--hostname=" + m.Name,
		"--register=no", "--keep-unit", "--console=passive",
		"--network-namespace-path=" + m.NetNS,
		// Root on a real node manages links and netfilter; the machine's netns is its own,
		// so this reaches nothing of the host's (node cleanup removes CNI links and chains).
		"--capability=CAP_NET_ADMIN",
		"--bind-ro=" + bins.Kubernetes + ":" + labBinDir + "/kubernetes",
		"--bind-ro=" + bins.Kwok + ":" + labBinDir + "/kwok",
		"--bind-ro=" + bins.Cfssl + ":" + labBinDir + "/cfssl",
	}
	if bins.Etcd != "" {
		args = append(args, "--bind-ro="+bins.Etcd+":"+labBinDir+"/etcd")
	}
	logf, err := os.OpenFile(filepath.Join(l.StateDir, "logs", m.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("machine %s log: %w", m.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command("sh", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("machine %s nspawn: %w", m.Name, err)
	}
	m.NspawnPID = cmd.Process.Pid
	// Reap nspawn if it exits while this process lives; after that the host's init does.
	go cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", m.NspawnPID, m.NspawnPID))
		if f := strings.Fields(string(b)); len(f) > 0 {
			if pid, err := strconv.Atoi(f[0]); err == nil && isSystemd(pid) {
				m.PID = pid
				return nil
			}
		}
		if !alive(m.NspawnPID) || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(l.StateDir, "logs", m.Name+".log"))
			return fmt.Errorf("machine %s: systemd did not start under nspawn: %s", m.Name, strings.TrimSpace(string(log)))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func isSystemd(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == "systemd"
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is gone for our purposes.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func (l *Lab) inventoryYAML() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `# mastershrink inventory for lab %s (layout preset %s; written by testenv)
format_version: 1
cluster: %s
layout: %s
kubeconfig: admin.kubeconfig
ssh:
  user: root
  port: 22
  identity_file: id_ed25519
  known_hosts: known_hosts
  connect_timeout: 10s
`, l.Name, l.Layout, l.Name, l.Layout)
	// A node proxy the layout adds where its preset has none is the one override.
	if lay, _ := LookupLayout(l.Layout); lay.Proxy.NginxConfig != "" {
		x := lay.Proxy
		fmt.Fprintf(&b, "paths:\n  nginx_unit: %s\n  nginx_binary: %s\n  nginx_prefix: %s\n  nginx_config: %s\n  nginx_listen: %q\n",
			x.NginxUnit, x.NginxBinary, x.NginxPrefix, x.NginxConfig, x.NginxListen)
	}
	b.WriteString("hosts:\n")
	for _, m := range l.Machines {
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    roles: [%s]\n", m.Name, m.Address, strings.Join(m.Roles, ", "))
		if l.hasRole(m, "lb") {
			fmt.Fprintf(&b, "    paths:\n      nginx_listen: \"127.0.0.1:%d\"\n", LBPort)
		}
	}
	return []byte(b.String())
}

// Down stops every machine and removes the lab's mounts, namespaces, cgroup folders, state
// folder and the files Up wrote into OutDir.
func (l *Lab) Down(ctx context.Context) error {
	t := time.Now()
	already := len(Leftovers(l.Name)) == 0
	err := cleanup(l.Name, l.Log)
	for _, p := range []string{l.Inventory, l.Kubeconfig, l.SSHKey, l.SSHKey + ".pub", l.KnownHosts, l.EtcdCA, l.EtcdCert, l.EtcdKey, filepath.Join(l.OutDir, "lab.json"), filepath.Join(l.OutDir, "vip.kubeconfig")} {
		if p != "" {
			os.Remove(p)
		}
	}
	os.Remove(l.OutDir) // only if empty
	if err != nil {
		return err
	}
	if !already {
		l.logf("down in %s", time.Since(t).Round(10*time.Millisecond))
	}
	return nil
}

var cleanupMu sync.Mutex
