package nodes_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/nodes"
)

// inNetns is this machine seen from a network namespace: its commands run there, so links,
// iptables and IPVS changes stay in the namespace, and its files are this machine's. It
// enters only the network namespace (nsenter --net): `ip netns exec` would also give each
// command a private mount namespace where an umount does not reach the host.
func inNetns(ns string) host.Host {
	h := hosttest.New("netns-" + ns)
	h.RunContext = func(ctx context.Context, cmd string) (host.Result, error) {
		return host.NewLocal(h.HostName).Run(ctx, "nsenter --net=/run/netns/"+ns+" sh -c "+machine.Quote(cmd))
	}
	return onThisMachine{h}
}

func sh(t *testing.T, cmd string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return string(out)
}

func shOK(cmd string) bool { return exec.Command("sh", "-c", cmd).Run() == nil }

func results(r nodes.CleanupReport) map[string]string {
	out := map[string]string{}
	for _, a := range r.Actions {
		out[a.Step+" "+a.Target] = a.Result
	}
	return out
}

func TestCleanupNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and mounts")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	ns := "mstest-" + id
	sh(t, "ip netns add "+ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	in := func(cmd string) string {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", cmd, err, out)
		}
		return string(out)
	}

	// The leftovers of a flannel node with kube-proxy: links, chains, IPVS where the kernel
	// allows, a kubelet holding 10250, a container shim, kubelet folders and a tmpfs mount.
	in("ip link set lo up && ip link add cni0 type bridge && ip link add flannel.1 type vxlan id 1 local 127.0.0.1 dstport 8472 nolearning")
	in("ip link add cali1234abcd type veth peer name eth9")
	// Links of other software with Kubernetes-like prefixes: not Kubernetes', they stay.
	in("ip link add vxlan100 type bridge && ip link add calibration0 type bridge")
	in(`iptables -t nat -N KUBE-SERVICES && iptables -t nat -N KUBE-SVC-ABCDEF && iptables -t nat -A KUBE-SERVICES -j KUBE-SVC-ABCDEF &&
iptables -t nat -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES &&
iptables -N KUBE-FIREWALL && iptables -A INPUT -j KUBE-FIREWALL && iptables -N FLANNEL-FWD && iptables -A FORWARD -j FLANNEL-FWD &&
iptables -N cali-INPUT && iptables -A INPUT -p tcp --dport 22 -j ACCEPT`)
	// kube-proxy's IPVS mode binds every ClusterIP to kube-ipvs0 (a dummy link; a bridge here, as
	// this kernel may lack the dummy driver); a site's own virtual
	// service on another address must survive.
	in("ip link add kube-ipvs0 type bridge && ip addr add 10.96.0.1/32 dev kube-ipvs0")
	ipvs := shOK(fmt.Sprintf("ip netns exec %s sh -c 'ipvsadm -A -t 10.96.0.1:443 -s rr && ipvsadm -A -t 192.0.2.10:80 -s rr'", ns))
	t.Logf("IPVS available in this kernel: %v", ipvs)

	root := t.TempDir()
	for _, f := range []string{"etc/kubernetes/kubelet.conf", "etc/kubernetes/pki/ca.crt", "var/lib/kubelet/pki/kubelet.crt",
		"var/lib/kubelet/config.yaml", "etc/cni/net.d/10-flannel.conflist", "var/log/pods/x/0.log", "opt/cni/bin/flannel", "run/flannel/subnet.env",
		"etc/kubernetes/pki/ca.key", "var/lib/kubelet/pki/kubelet.key"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := "leftover " + f
		if strings.HasSuffix(f, ".key") {
			data = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	vol := filepath.Join(root, "var/lib/kubelet/pods/1234/volumes/kubernetes.io~projected/kube-api-access")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	sh(t, "mount -t tmpfs tmpfs "+vol+" && echo token > "+vol+"/token")
	t.Cleanup(func() { _ = exec.Command("umount", "-l", vol).Run() })

	// Fake processes with unique names, so nothing real on this machine is touched.
	bin := t.TempDir()
	kubelet, shim := "mskubelet"+id, "msshim"+id
	if err := os.Symlink("/usr/bin/perl", filepath.Join(bin, kubelet)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/sleep", filepath.Join(bin, shim)); err != nil {
		t.Fatal(err)
	}
	start := func(args ...string) {
		c := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = c.Wait() }() // reaped, so a killed one is not a zombie pgrep still sees
		t.Cleanup(func() { _ = c.Process.Kill() })
	}
	start(filepath.Join(bin, kubelet), "-MIO::Socket::INET", "-e", `$s=IO::Socket::INET->new(LocalAddr=>"0.0.0.0",LocalPort=>10250,Listen=>5,ReuseAddr=>1) or die "$!"; sleep 600`)
	start(filepath.Join(bin, shim), "600")

	h := inNetns(ns)
	opts := nodes.CleanupOptions{Root: root, Processes: []string{kubelet}, Shims: []string{shim},
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Before: Verify must see the mess (the listener may take a moment to bind).
	var before nodes.VerifyReport
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		before, err = nodes.Verify(ctx, h, opts)
		if err != nil {
			t.Fatal(err)
		}
		// Both, in one pass: the process is "ip" until netns exec has exec'd it.
		if hasLeftover(before, "listener", ":10250") && hasLeftover(before, "process", kubelet) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range [][2]string{{"process", kubelet}, {"shim", shim}, {"file", filepath.Join(root, "etc/kubernetes/kubelet.conf")},
		{"mount", vol}, {"link", "cni0"}, {"link", "flannel.1"}, {"link", "cali1234abcd"},
		{"iptables", "iptables -t nat KUBE-SERVICES"}, {"iptables", "iptables -t filter FLANNEL-FWD"}, {"listener", ":10250"}} {
		if !hasLeftover(before, want[0], want[1]) {
			t.Errorf("verify before cleanup misses %s %s: %+v", want[0], want[1], before.Leftovers)
		}
	}
	if ipvs && (!hasLeftover(before, "ipvs", "TCP 10.96.0.1:443") || hasLeftover(before, "ipvs", "TCP 192.0.2.10:80")) {
		t.Errorf("verify: IPVS leftovers %+v, want kube-proxy's only", before.Leftovers)
	}
	if !hasLeftover(before, "link", "kube-ipvs0") || hasLeftover(before, "link", "vxlan100") || hasLeftover(before, "link", "calibration0") {
		t.Errorf("verify: link leftovers %+v, want Kubernetes' only", before.Leftovers)
	}

	rep, err := nodes.Cleanup(ctx, h, opts)
	if err != nil {
		t.Fatalf("cleanup: %v\n%+v", err, rep)
	}
	if f := rep.Failed(); len(f) > 0 {
		t.Errorf("failed actions: %+v", f)
	}
	res := results(rep)
	for _, k := range []string{"stop-process " + kubelet, "stop-shim " + shim, "unmount " + vol, "delete-link cni0",
		"delete-link flannel.1", "remove-folder " + filepath.Join(root, "etc/kubernetes"), "remove-folder " + filepath.Join(root, "var/lib/kubelet"),
		"flush-iptables iptables -t nat: 2 chains", "flush-iptables iptables -t filter: 3 chains"} {
		if res[k] != nodes.ResultDone {
			t.Errorf("action %q: %q, want done; all: %v", k, res[k], res)
		}
	}
	if ipvs {
		if res["delete-ipvs-service TCP 10.96.0.1:443"] != nodes.ResultDone {
			t.Errorf("kube-proxy's IPVS service not deleted: %v", res)
		}
		if out := in("ipvsadm -Ln"); !strings.Contains(out, "192.0.2.10:80") || strings.Contains(out, "10.96.0.1:443") {
			t.Errorf("IPVS after cleanup:\n%s", out)
		}
	}
	links := in("ip -o link show")
	for _, l := range []string{"vxlan100", "calibration0"} {
		if !strings.Contains(links, l+":") {
			t.Errorf("cleanup deleted %s, which is not Kubernetes'", l)
		}
	}
	// The backup holds private keys: 0600 in 0700, and the report says which and warns.
	if fi, err := os.Stat(rep.Backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup %s: %v, mode %v, want 0600", rep.Backup, err, fi.Mode().Perm())
	}
	if fi, err := os.Stat(filepath.Dir(rep.Backup)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("backup folder: %v, mode %v, want 0700", err, fi.Mode().Perm())
	}
	wantKeys := []string{filepath.Join(root, "etc/kubernetes/pki/ca.key"), filepath.Join(root, "var/lib/kubelet/pki/kubelet.key")}
	if fmt.Sprint(rep.BackupKeys) != fmt.Sprint(wantKeys) {
		t.Errorf("backup keys %q, want %q", rep.BackupKeys, wantKeys)
	}
	if w := rep.BackupWarning; !strings.Contains(w, rep.Backup) || !strings.Contains(w, "the CA key") || !strings.Contains(w, "last copy") {
		t.Errorf("backup warning %q", w)
	}
	if parts, _ := filepath.Glob(filepath.Join(filepath.Dir(rep.Backup), "*.part")); len(parts) > 0 {
		t.Errorf("left behind: %v", parts)
	}
	tarList := sh(t, "tar -tzf "+rep.Backup)
	for _, want := range []string{"etc/kubernetes/kubelet.conf", "etc/kubernetes/pki/ca.crt", "var/lib/kubelet/pki/kubelet.crt"} {
		if !strings.Contains(tarList, want) {
			t.Errorf("backup %s lacks %s:\n%s", rep.Backup, want, tarList)
		}
	}
	if strings.Contains(tarList, "token") {
		t.Errorf("backup holds pod volumes:\n%s", tarList)
	}
	if !strings.Contains(in("iptables -S INPUT"), "--dport 22 -j ACCEPT") {
		t.Error("cleanup removed a rule that is not Kubernetes'")
	}

	after, err := nodes.Verify(ctx, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Clean() {
		t.Errorf("not clean after cleanup: %+v", after)
	}
	again, err := nodes.Cleanup(ctx, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed() {
		t.Errorf("second cleanup changed things: %+v", again.Actions)
	}
	if _, err := os.Stat(filepath.Join(root, "var/backups/mastershrink")); errors.Is(err, fs.ErrNotExist) {
		t.Error("backup folder gone")
	}
}

func hasLeftover(r nodes.VerifyReport, check, item string) bool {
	for _, l := range r.Leftovers {
		if l.Check == check && l.Item == item {
			return true
		}
	}
	return false
}
