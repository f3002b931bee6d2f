package nodes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/machine"
)

// CleanupOptions say where and what to clean. Zero values mean the defaults below, so a real
// node needs none; tests point Root at a scratch tree and name fake processes.
type CleanupOptions struct {
	// Root prefixes every path on the host ("" or "/": the real root).
	Root string
	// BackupDir receives the tarball of /etc/kubernetes and the kubelet PKI (under Root);
	// default /var/backups/mastershrink.
	BackupDir string
	// Units are stopped and disabled through systemd; default kubelet, kube-proxy.
	Units []string
	// Processes are killed if still running after their units stopped; default kubelet, kube-proxy.
	Processes []string
	// Shims are the container shim processes stopped after the containers.
	Shims []string
	// Folders are removed (under Root); default DefaultFolders.
	Folders []string
	// Ports must have no listener for Verify to call the host clean; default DefaultPorts.
	Ports []int
	// NodePortMin and NodePortMax are kube-proxy's --service-node-port-range (default
	// 30000-32767): IPVS services on the host's own addresses in that range are kube-proxy's.
	NodePortMin, NodePortMax int
	// CommandTimeout bounds every host command, stat and systemd call (twice this for a unit's
	// stop or disable); default host.DefaultCommandTimeout. A command past it is killed and
	// reported failed, naming the command and the host, and the cleanup goes on.
	CommandTimeout time.Duration
	// Now stamps the backup's name; default time.Now.
	Now func() time.Time
}

// CleanupOptionsFor points the cleanup at a host's own kubelet and kube-proxy units, as its
// inventory paths name them (the defaults where they name none).
func CleanupOptionsFor(kubeletUnit, kubeProxyUnit string) CleanupOptions {
	var o CleanupOptions
	for _, u := range []string{kubeletUnit, kubeProxyUnit} {
		if u != "" {
			o.Units = append(o.Units, u)
		}
	}
	return o
}

// DefaultFolders is seed 000's list, without /var/lib/etcd (the etcd steps own it) and
// /etc/ceph (it may serve more than Kubernetes).
var DefaultFolders = []string{
	"/etc/kubernetes", "/etc/cni", "/opt/cni", "/opt/rke", "/run/secrets/kubernetes.io", "/run/calico",
	"/run/flannel", "/var/lib/calico", "/var/lib/cni", "/var/lib/kubelet", "/var/lib/kube-proxy",
	"/var/lib/rancher/rke/log", "/var/log/containers", "/var/log/kube-audit", "/var/log/pods",
	"/var/run/calico", "/usr/libexec/kubernetes",
}

// DefaultPorts are the kubelet's, kube-proxy's and the control plane's listening ports.
var DefaultPorts = []int{10250, 10255, 10256, 10248, 10249, 6443, 2379, 2380, 10257, 10259}

// kubeLink matches, by their exact names, the network links CNI plugins and kube-proxy
// create: the bridge (cni0, cbr0), flannel's (flannel.VNI, flannel-v6.VNI, flannel-wg,
// flannel-wg-v6), Calico's (pod veths caliXXXXXXXXXXX, tunl0, vxlan.calico, vxlan-v6.calico,
// wireguard.cali), kube-proxy IPVS's kube-ipvs0, kube-router's, NodeLocal DNSCache's,
// Cilium's and Weave's. Links of other software that share a prefix (a site's vxlan100, a
// "calibration0") are not Kubernetes' and stay.
var kubeLink = regexp.MustCompile(`^(cni0|cbr0|flannel\.[0-9]+|flannel-v6\.[0-9]+|flannel-wg|flannel-wg-v6|cali[0-9a-f]{4,11}|tunl0|vxlan\.calico|vxlan-v6\.calico|wireguard\.cali|wg-v6\.cali|kube-ipvs0|kube-bridge|kube-dummy-if|nodelocaldns|cilium_host|cilium_net|cilium_vxlan|cilium_geneve|cilium_wg0|weave|vxlan-6784|datapath)$`)

// kubeLinkNames is kubeLink for messages.
const kubeLinkNames = "cni0 cbr0 flannel.N flannel-wg cali* veths tunl0 vxlan.calico kube-ipvs0 kube-bridge nodelocaldns cilium_* weave ..."

// podLabel is the label kubelet (dockershim, cri-dockerd) puts on every container and pod
// sandbox it makes in docker: the containers cleanup may remove.
const podLabel = "io.kubernetes.pod.name"

// kubeChain matches the iptables chains of kube-proxy and the CNI plugins.
var kubeChain = regexp.MustCompile(`^(KUBE-|CNI-|cali-|FLANNEL|CILIUM_|WEAVE)`)

// Results of a cleanup action.
const (
	ResultDone    = "done"
	ResultAbsent  = "absent"
	ResultFailed  = "failed"
	ResultSkipped = "skipped"
)

// Action is one thing the cleanup did or found nothing to do for.
type Action struct {
	Step    string `json:"step"`
	Target  string `json:"target"`
	Result  string `json:"result"`
	Command string `json:"command,omitempty"`
	Error   string `json:"error,omitempty"`
}

// CleanupReport lists every action, in order.
type CleanupReport struct {
	Host string `json:"host"`
	// Backup is the tarball of /etc/kubernetes and the kubelet PKI (mode 0600 in a 0700
	// folder). It holds private keys: BackupKeys lists the files in it that have one.
	Backup     string   `json:"backup,omitempty"`
	BackupKeys []string `json:"backup_keys,omitempty"`
	// BackupWarning says what the backup holds and what to do with it.
	BackupWarning string   `json:"backup_warning,omitempty"`
	Actions       []Action `json:"actions"`
}

// Warnings are what the operator must hear of even when nothing failed: the backup that holds
// private keys, and the actions that failed.
func (r CleanupReport) Warnings() []string {
	var out []string
	if r.BackupWarning != "" {
		out = append(out, r.BackupWarning)
	}
	for _, a := range r.Failed() {
		out = append(out, fmt.Sprintf("%s %s: %s", a.Step, a.Target, a.Error))
	}
	return out
}

// Changed reports whether any action changed the host.
func (r CleanupReport) Changed() bool {
	return slices.ContainsFunc(r.Actions, func(a Action) bool { return a.Result == ResultDone })
}

// Failed returns the actions that failed.
func (r CleanupReport) Failed() []Action {
	var out []Action
	for _, a := range r.Actions {
		if a.Result == ResultFailed {
			out = append(out, a)
		}
	}
	return out
}

func (o CleanupOptions) withDefaults() CleanupOptions {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.BackupDir == "" {
		o.BackupDir = "/var/backups/mastershrink"
	}
	if o.Units == nil {
		o.Units = []string{"kubelet", "kube-proxy"}
	}
	if o.Processes == nil {
		o.Processes = []string{"kubelet", "kube-proxy"}
	}
	if o.Shims == nil {
		o.Shims = []string{"containerd-shim", "containerd-shim-runc-v1", "containerd-shim-runc-v2", "conmon"}
	}
	if o.Folders == nil {
		o.Folders = DefaultFolders
	}
	if o.Ports == nil {
		o.Ports = DefaultPorts
	}
	if o.NodePortMin == 0 && o.NodePortMax == 0 {
		o.NodePortMin, o.NodePortMax = 30000, 32767
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = host.DefaultCommandTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

func (o CleanupOptions) path(p string) string { return path.Join(o.Root, p) }

type cleaner struct {
	h   host.Host
	o   CleanupOptions
	rep *CleanupReport
}

func (c *cleaner) add(step, target, result, cmd string, err error) {
	a := Action{Step: step, Target: target, Result: result, Command: cmd}
	if err != nil {
		a.Result, a.Error = ResultFailed, err.Error()
	}
	c.rep.Actions = append(c.rep.Actions, a)
}

// run runs a command with the command deadline; a non-zero exit is an error carrying stderr,
// a timeout a *host.TimeoutError naming the command and the host.
func (c *cleaner) run(ctx context.Context, cmd string) (string, error) {
	res, err := host.RunTimeout(ctx, c.h, c.o.CommandTimeout, cmd)
	return string(res.Stdout), err
}

// stat is the host's Stat with the command deadline: a stat under a dead NFS mount hangs.
func (c *cleaner) stat(ctx context.Context, p string) (host.FileInfo, error) {
	return host.WithTimeout(ctx, c.h, c.o.CommandTimeout, "stat "+p, func(ctx context.Context) (host.FileInfo, error) {
		return c.h.Stat(ctx, p)
	})
}

// ok runs a probe command whose non-zero exit means "no" rather than failure.
func (c *cleaner) ok(ctx context.Context, cmd string) (string, bool, error) {
	res, err := host.RunTimeout(ctx, c.h, c.o.CommandTimeout, cmd)
	var ce *host.CmdError
	if errors.As(err, &ce) {
		return string(res.Stdout), false, nil
	}
	return string(res.Stdout), err == nil, err
}

func (c *cleaner) have(ctx context.Context, command string) bool {
	_, ok, _ := c.ok(ctx, "command -v "+shq(command)+" >/dev/null 2>&1")
	return ok
}

// Cleanup removes what Kubernetes left on a host taken out of the cluster, in seed 000's and
// 001's order, best-effort: every action is reported, a missing link, folder or command is
// "absent", not an error. Only a failed backup stops it (nothing is deleted without one) and
// is returned as an error; other failures are in the report.
func Cleanup(ctx context.Context, h host.Host, opts CleanupOptions) (CleanupReport, error) {
	o := opts.withDefaults()
	rep := CleanupReport{Host: h.Name()}
	c := &cleaner{h: h, o: o, rep: &rep}
	if err := c.backup(ctx); err != nil {
		return rep, err
	}
	c.units(ctx)
	c.processes(ctx, "stop-process", o.Processes)
	c.containers(ctx)
	c.processes(ctx, "stop-shim", o.Shims)
	c.unmount(ctx)
	c.folders(ctx)
	// IPVS before the links: kube-ipvs0's addresses are how kube-proxy's services are told
	// from others, and they go with the link.
	ipvsOK := c.ipvs(ctx)
	c.links(ctx, ipvsOK)
	c.iptables(ctx)
	c.nft(ctx)
	return rep, ctx.Err()
}

func (c *cleaner) backup(ctx context.Context) error {
	var rel []string
	for _, p := range []string{"/etc/kubernetes", "/var/lib/kubelet/pki"} {
		if _, err := c.stat(ctx, c.o.path(p)); err == nil {
			rel = append(rel, strings.TrimPrefix(p, "/"))
		} else if !errors.Is(err, fs.ErrNotExist) {
			c.add("backup", p, "", "", err)
			return fmt.Errorf("backup on %s: stat %s: %w", c.h.Name(), p, err)
		}
	}
	if len(rel) == 0 {
		c.add("backup", "/etc/kubernetes /var/lib/kubelet/pki", ResultAbsent, "", nil)
		return nil
	}
	dir := c.o.path(c.o.BackupDir)
	file := path.Join(dir, "kube-node-"+c.o.Now().UTC().Format("20060102T150405Z")+".tar.gz")
	cmd := backupCommand(dir, file, c.o.Root, rel)
	if _, err := c.run(ctx, cmd); err != nil {
		c.add("backup", strings.Join(rel, " "), "", cmd, err)
		return fmt.Errorf("backup on %s: %w", c.h.Name(), err)
	}
	c.rep.Backup = file
	keys, err := c.privateKeyFiles(ctx, rel)
	c.rep.BackupKeys = keys
	c.rep.BackupWarning = backupWarning(c.h.Name(), file, keys, err)
	c.add("backup", file, ResultDone, cmd, nil)
	return nil
}

// backupCommand writes the tarball 0600 into a folder made 0700 (an existing one tightened;
// a symbolic link refused, as it could send the keys elsewhere), through a .part file so a
// failed tar leaves no half backup under the final name.
func backupCommand(dir, file, root string, rel []string) string {
	part := file + ".part"
	cmd := fmt.Sprintf(`umask 077 && if [ -L %[1]s ]; then echo "backup folder %[1]s is a symbolic link: refused (it could send the keys elsewhere); remove it" >&2; exit 1; fi && mkdir -p %[1]s && chmod 700 %[1]s && rm -f %[2]s && tar -czf %[2]s -C %[3]s`,
		shq(dir), shq(part), shq(root))
	for _, r := range rel {
		cmd += " " + shq(r)
	}
	return cmd + fmt.Sprintf(" && chmod 600 %[1]s && mv -f %[1]s %[2]s", shq(part), shq(file))
}

// privateKeyFiles lists the files under rel (relative to Root) that hold a private key: PEM
// keys (kubelet.key, kubelet-client-current.pem, ca-key.pem) and kubeconfigs with embedded
// client-key-data. Only names are read back, never content.
func (c *cleaner) privateKeyFiles(ctx context.Context, rel []string) ([]string, error) {
	cmd := "grep -rlE -e '-----BEGIN ([A-Z]+ )?PRIVATE KEY' -e 'client-key-data:' --"
	for _, r := range rel {
		cmd += " " + shq(c.o.path("/"+r))
	}
	out, found, err := c.ok(ctx, cmd)
	if err != nil || !found {
		return nil, err
	}
	var keys []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keys = append(keys, l)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// caKeyName matches the CA key files of the common layouts (cfssl's ca-key.pem, kubeadm's
// ca.key), the one key whose loss breaks the cluster and whose theft owns it.
var caKeyName = regexp.MustCompile(`(^|/)(ca-key\.pem|ca\.key)$`)

func backupWarning(hostName, file string, keys []string, listErr error) string {
	w := fmt.Sprintf("the backup %s:%s (mode 0600 in a 0700 folder) holds ", hostName, file)
	switch {
	case listErr != nil:
		w += "private keys (the kubelet's, and the CA's if /etc/kubernetes held it; they could not be listed: " + listErr.Error() + ")"
	case len(keys) == 0:
		w += "the node's Kubernetes configuration (no private key found in it)"
	default:
		w += fmt.Sprintf("%d files with private keys: %s", len(keys), strings.Join(keys, ", "))
	}
	var ca []string
	for _, k := range keys {
		if caKeyName.MatchString(k) {
			ca = append(ca, k)
		}
	}
	if len(ca) > 0 {
		w += fmt.Sprintf("; among them the CA key (%s): if no other host holds it, this backup is its last copy, so copy it to where the CA is kept before deleting the backup", strings.Join(ca, ", "))
	}
	return w + "; keep it off shared storage, and delete it once it is no longer needed"
}

func (c *cleaner) units(ctx context.Context) {
	sd, err := c.h.Systemd(ctx)
	if err != nil {
		c.add("stop-unit", strings.Join(c.o.Units, " "), ResultSkipped, "", nil)
		c.rep.Actions[len(c.rep.Actions)-1].Error = "no systemd: " + err.Error()
		return
	}
	defer sd.Close()
	unitTimeout := 2 * c.o.CommandTimeout
	for _, u := range c.o.Units {
		st, err := host.WithTimeout(ctx, c.h, c.o.CommandTimeout, "systemctl status "+u, func(ctx context.Context) (host.UnitStatus, error) {
			return sd.Status(ctx, u)
		})
		if err != nil {
			c.add("stop-unit", u, "", "", err)
			continue
		}
		if st.LoadState == "not-found" || st.LoadState == "" {
			c.add("stop-unit", u, ResultAbsent, "", nil)
			continue
		}
		changed := false
		// A failed unit runs nothing, and stopping it leaves it failed: counting that as a
		// change would make every rerun report one.
		if st.ActiveState == "active" || st.ActiveState == "activating" || st.ActiveState == "reloading" || st.ActiveState == "deactivating" {
			if _, err := host.WithTimeout(ctx, c.h, unitTimeout, "systemctl stop "+u, func(ctx context.Context) (struct{}, error) {
				return struct{}{}, sd.Stop(ctx, u)
			}); err != nil {
				c.add("stop-unit", u, "", "systemctl stop "+u, err)
				continue
			}
			changed = true
		}
		if st.UnitFileState == "enabled" {
			if _, err := host.WithTimeout(ctx, c.h, unitTimeout, "systemctl disable "+u, func(ctx context.Context) (struct{}, error) {
				return struct{}{}, sd.Disable(ctx, u)
			}); err != nil {
				c.add("stop-unit", u, "", "systemctl disable "+u, err)
				continue
			}
			changed = true
		}
		c.add("stop-unit", u, map[bool]string{true: ResultDone, false: ResultAbsent}[changed], "systemctl stop "+u+" && systemctl disable "+u, nil)
	}
}

// processes stops processes by exact name: TERM, up to 10 s, then KILL.
func (c *cleaner) processes(ctx context.Context, step string, names []string) {
	for _, n := range names {
		if _, running, err := c.ok(ctx, "pgrep -x "+shq(n)); err != nil || !running {
			c.add(step, n, ResultAbsent, "", err)
			continue
		}
		cmd := fmt.Sprintf("pkill -TERM -x %[1]s; for i in $(seq 50); do pgrep -x %[1]s >/dev/null || exit 0; sleep 0.2; done; pkill -KILL -x %[1]s; sleep 0.5; ! pgrep -x %[1]s >/dev/null", shq(n))
		_, err := c.run(ctx, cmd)
		c.add(step, n, ResultDone, cmd, err)
	}
}

// dockerList lists the docker containers kubelet made (pod sandboxes and their containers),
// by label: the host may run other containers that are not Kubernetes'.
const dockerList = "docker ps -aq --filter label=" + podLabel

func (c *cleaner) containers(ctx context.Context) {
	if !c.have(ctx, "docker") {
		c.add("remove-containers", "docker", ResultAbsent, "", nil)
	} else if ids, err := c.run(ctx, dockerList); err != nil {
		// Without its daemon docker can list nothing; the shims step still stops what runs.
		c.add("remove-containers", "docker", ResultSkipped, dockerList, nil)
		c.rep.Actions[len(c.rep.Actions)-1].Error = err.Error()
	} else if f := strings.Fields(ids); len(f) == 0 {
		c.add("remove-containers", "docker", ResultAbsent, "", nil)
	} else {
		cmd := "docker rm -f " + strings.Join(f, " ")
		_, err := c.run(ctx, cmd)
		c.add("remove-containers", "docker", ResultDone, cmd, err)
	}
	if !c.have(ctx, "crictl") {
		c.add("remove-containers", "crictl", ResultAbsent, "", nil)
		return
	}
	// Pod sandboxes first: removing one stops and removes its containers too.
	for _, kind := range []struct{ list, rm string }{{"crictl pods -q", "crictl rmp -f"}, {"crictl ps -aq", "crictl rm -f"}} {
		ids, err := c.run(ctx, kind.list)
		if err != nil {
			c.add("remove-containers", kind.list, ResultSkipped, kind.list, nil)
			c.rep.Actions[len(c.rep.Actions)-1].Error = err.Error()
			continue
		}
		f := strings.Fields(ids)
		if len(f) == 0 {
			c.add("remove-containers", kind.list, ResultAbsent, "", nil)
			continue
		}
		cmd := kind.rm + " " + strings.Join(f, " ")
		_, err = c.run(ctx, cmd)
		c.add("remove-containers", kind.list, ResultDone, cmd, err)
	}
}

// kubeMounts lists mount points under the kubelet's folders, innermost (latest) first.
func (c *cleaner) kubeMounts(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "cat /proc/self/mounts")
	if err != nil {
		return nil, err
	}
	var found []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		mp := machine.UnescapeMount(f[1])
		for _, base := range []string{"/var/lib/kubelet", "/var/lib/rancher"} {
			b := c.o.path(base)
			if mp == b || strings.HasPrefix(mp, b+"/") {
				found = append(found, mp)
				break
			}
		}
	}
	slices.Reverse(found)
	return slices.Compact(found), nil
}

func (c *cleaner) unmount(ctx context.Context) {
	mps, err := c.kubeMounts(ctx)
	if err != nil {
		c.add("unmount", "/var/lib/kubelet", "", "cat /proc/self/mounts", err)
		return
	}
	if len(mps) == 0 {
		c.add("unmount", c.o.path("/var/lib/kubelet"), ResultAbsent, "", nil)
	}
	for _, mp := range mps {
		cmd := fmt.Sprintf("umount %[1]s || umount -l %[1]s", shq(mp))
		_, err := c.run(ctx, cmd)
		c.add("unmount", mp, ResultDone, cmd, err)
	}
}

func (c *cleaner) folders(ctx context.Context) {
	for _, f := range c.o.Folders {
		p := c.o.path(f)
		if _, err := c.stat(ctx, p); errors.Is(err, fs.ErrNotExist) {
			c.add("remove-folder", p, ResultAbsent, "", nil)
			continue
		} else if err != nil {
			c.add("remove-folder", p, "", "", err)
			continue
		}
		// --one-file-system: a mount that would not come off must not be emptied through.
		cmd := "rm -rf --one-file-system " + shq(p)
		_, err := c.run(ctx, cmd)
		c.add("remove-folder", p, ResultDone, cmd, err)
	}
}

// kubeLinks lists the links CNI plugins and kube-proxy create.
func (c *cleaner) kubeLinks(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "ip -o link show")
	if err != nil {
		return nil, err
	}
	var links []string
	for line := range strings.Lines(out) {
		// "5: flannel.1: <BROADCAST,...> mtu 1450 ..." or "7: veth1@if2: ..."
		f := strings.SplitN(line, ":", 3)
		if len(f) < 3 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(f[1]), "@")
		if kubeLink.MatchString(name) {
			links = append(links, name)
		}
	}
	return links, nil
}

// links deletes the Kubernetes links; kube-ipvs0 only when ipvsOK (its addresses are what
// tells a rerun which IPVS services are still kube-proxy's).
func (c *cleaner) links(ctx context.Context, ipvsOK bool) {
	links, err := c.kubeLinks(ctx)
	if err != nil {
		c.add("delete-link", "", "", "ip -o link show", err)
		return
	}
	if len(links) == 0 {
		c.add("delete-link", kubeLinkNames, ResultAbsent, "", nil)
	}
	for _, l := range links {
		if l == "kube-ipvs0" && !ipvsOK {
			c.add("delete-link", l, ResultSkipped, "", nil)
			c.rep.Actions[len(c.rep.Actions)-1].Error = "kept: kube-proxy's IPVS services are not all removed, and its addresses are how a rerun finds them"
			continue
		}
		cmd := "ip link delete " + shq(l)
		_, err := c.run(ctx, cmd)
		if err != nil && l == "tunl0" {
			err = fmt.Errorf("%w (tunl0 is the ipip module's own device: modprobe -r ipip)", err)
		}
		c.add("delete-link", l, ResultDone, cmd, err)
	}
}

// iptablesTools are the iptables front ends present on the host (nft and legacy backends
// hold separate rule sets; kube-proxy may have used either).
func (c *cleaner) iptablesTools(ctx context.Context) []string {
	var out []string
	for _, t := range []string{"iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy"} {
		if c.have(ctx, t+"-save") && c.have(ctx, t+"-restore") {
			out = append(out, t)
		}
	}
	return out
}

// chainsPlan parses iptables-save output into, per table, the kube chains and a restore
// script that unhooks, flushes and deletes them, leaving every other rule alone.
func chainsPlan(save string) (chains map[string][]string, scripts map[string]string) {
	chains, scripts = map[string][]string{}, map[string]string{}
	var table string
	unhook := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(save))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			name := strings.Fields(line[1:])[0]
			if kubeChain.MatchString(name) {
				chains[table] = append(chains[table], name)
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || kubeChain.MatchString(f[1]) {
				continue // flushed with its chain
			}
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g" || f[i] == "--jump" || f[i] == "--goto") && kubeChain.MatchString(f[i+1]) {
					unhook[table] = append(unhook[table], "-D"+line[2:])
					break
				}
			}
		}
	}
	for t, cs := range chains {
		var b strings.Builder
		b.WriteString("*" + t + "\n")
		for _, r := range unhook[t] {
			b.WriteString(r + "\n")
		}
		for _, ch := range cs {
			b.WriteString("-F " + ch + "\n")
		}
		for _, ch := range cs {
			b.WriteString("-X " + ch + "\n")
		}
		b.WriteString("COMMIT\n")
		scripts[t] = b.String()
	}
	return chains, scripts
}

func (c *cleaner) iptables(ctx context.Context) {
	tools := c.iptablesTools(ctx)
	if len(tools) == 0 {
		c.add("flush-iptables", "iptables", ResultAbsent, "", nil)
		return
	}
	for _, t := range tools {
		save, err := c.run(ctx, t+"-save")
		if err != nil {
			c.add("flush-iptables", t, "", t+"-save", err)
			continue
		}
		chains, scripts := chainsPlan(save)
		if len(chains) == 0 {
			c.add("flush-iptables", t, ResultAbsent, "", nil)
			continue
		}
		for _, table := range slices.Sorted(maps.Keys(scripts)) {
			cmd := fmt.Sprintf("%s-restore -w --noflush <<'MASTERSHRINK_EOF'\n%sMASTERSHRINK_EOF", t, scripts[table])
			_, err := c.run(ctx, cmd)
			c.add("flush-iptables", fmt.Sprintf("%s -t %s: %d chains", t, table, len(chains[table])), ResultDone, cmd, err)
		}
	}
}

// kubeNftTables lists the nftables tables kube-proxy's nftables mode creates.
func (c *cleaner) kubeNftTables(ctx context.Context) ([]string, error) {
	if !c.have(ctx, "nft") {
		return nil, nil
	}
	out, err := c.run(ctx, "nft list tables")
	if err != nil {
		return nil, err
	}
	var tables []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "table" && f[2] == "kube-proxy" {
			tables = append(tables, f[1]+" "+f[2])
		}
	}
	return tables, nil
}

func (c *cleaner) nft(ctx context.Context) {
	tables, err := c.kubeNftTables(ctx)
	if err != nil {
		c.add("delete-nft-table", "kube-proxy", "", "nft list tables", err)
		return
	}
	if len(tables) == 0 {
		c.add("delete-nft-table", "kube-proxy", ResultAbsent, "", nil)
	}
	for _, t := range tables {
		cmd := "nft delete table " + t
		_, err := c.run(ctx, cmd)
		c.add("delete-nft-table", t, ResultDone, cmd, err)
	}
}

// ipvsService is one IPVS virtual service, as `ipvsadm -Ln` lists it.
type ipvsService struct {
	Proto string // TCP, UDP, SCTP, FWM
	Addr  string // "10.96.0.1:443", "[fd00::1]:53"; the mark for FWM
	IP    net.IP
	Port  int
}

// ipvsadmFlag is the option that names the service to ipvsadm -D.
func (s ipvsService) ipvsadmFlag() string {
	switch s.Proto {
	case "UDP":
		return "-u"
	case "SCTP":
		return "--sctp-service"
	}
	return "-t"
}

func (s ipvsService) deleteCommand() string {
	return "ipvsadm -D " + s.ipvsadmFlag() + " " + shq(s.Addr)
}

// parseIPVS reads the virtual services of `ipvsadm -Ln` (real servers are ignored).
func parseIPVS(out string) []ipvsService {
	var svcs []ipvsService
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		s := ipvsService{Proto: f[0], Addr: f[1]}
		switch f[0] {
		case "TCP", "UDP", "SCTP":
			h, p, err := net.SplitHostPort(f[1])
			if err != nil {
				continue
			}
			s.IP = net.ParseIP(h)
			s.Port, _ = strconv.Atoi(p)
		case "FWM":
		default:
			continue
		}
		svcs = append(svcs, s)
	}
	return svcs
}

// parseAddrs reads the addresses of `ip -o addr show` ("2: eth0    inet 10.0.0.5/24 ...").
func parseAddrs(out string) []net.IP {
	var ips []net.IP
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				a, _, _ := strings.Cut(f[i+1], "/")
				if ip := net.ParseIP(a); ip != nil {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips
}

// kubeIPVS sorts the IPVS virtual services into kube-proxy's and the rest. kube-proxy's are
// those on an address of kube-ipvs0 (ClusterIPs, external and load-balancer IPs, which it
// binds there), and those on one of the host's own addresses with a port in the NodePort
// range. Anything else (a site's LVS, a firewall mark) is not Kubernetes' and stays. ok is
// false when there is no IPVS table to look at (no ipvsadm, no ip_vs module).
func (c *cleaner) kubeIPVS(ctx context.Context) (kube, other []ipvsService, ok bool, err error) {
	if !c.have(ctx, "ipvsadm") {
		return nil, nil, false, nil
	}
	out, found, err := c.ok(ctx, "ipvsadm -Ln")
	if err != nil || !found {
		return nil, nil, false, err // a non-zero exit: no ip_vs module, so no table
	}
	svcs := parseIPVS(out)
	if len(svcs) == 0 {
		return nil, nil, true, nil
	}
	// A missing kube-ipvs0 exits non-zero: no ClusterIP addresses, not a failure.
	dummy, _, err := c.ok(ctx, "ip -o addr show dev kube-ipvs0")
	if err != nil {
		return nil, nil, true, err
	}
	local, err := c.run(ctx, "ip -o addr show")
	if err != nil {
		return nil, nil, true, err
	}
	clusterIPs, hostIPs := parseAddrs(dummy), parseAddrs(local)
	has := func(ips []net.IP, ip net.IP) bool {
		return ip != nil && slices.ContainsFunc(ips, func(x net.IP) bool { return x.Equal(ip) })
	}
	for _, s := range svcs {
		nodePort := s.Port >= c.o.NodePortMin && s.Port <= c.o.NodePortMax && has(hostIPs, s.IP)
		if s.Proto != "FWM" && (has(clusterIPs, s.IP) || nodePort) {
			kube = append(kube, s)
		} else {
			other = append(other, s)
		}
	}
	return kube, other, true, nil
}

// ipvs deletes kube-proxy's IPVS virtual services one by one (never `ipvsadm --clear`,
// which would take a site's own load balancing too). It says whether none of kube-proxy's
// is left.
func (c *cleaner) ipvs(ctx context.Context) bool {
	kube, other, ok, err := c.kubeIPVS(ctx)
	if err != nil {
		c.add("delete-ipvs-service", "ipvs", "", "ipvsadm -Ln", err)
		return false
	}
	if !ok || len(kube) == 0 {
		c.add("delete-ipvs-service", "kube-proxy's", ResultAbsent, "", nil)
	}
	all := true
	for _, s := range kube {
		cmd := s.deleteCommand()
		_, err := c.run(ctx, cmd)
		all = all && err == nil
		c.add("delete-ipvs-service", s.Proto+" "+s.Addr, ResultDone, cmd, err)
	}
	if len(other) > 0 {
		var names []string
		for _, s := range other {
			names = append(names, s.Proto+" "+s.Addr)
		}
		c.add("delete-ipvs-service", fmt.Sprintf("%d other virtual services", len(other)), ResultSkipped, "", nil)
		c.rep.Actions[len(c.rep.Actions)-1].Error = "left alone, not kube-proxy's (not on kube-ipvs0, not a NodePort of this host): " + strings.Join(names, ", ")
	}
	return all
}

// shq quotes s for a POSIX shell, leaving a plain word bare: the commands stand in the report
// as "remove with: ...", for a person to read and run.
var shq = machine.Word
