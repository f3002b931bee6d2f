package testenv

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// firstScaleNode is the last byte of the first scale node's address: after the lab's masters
// (11-15) and workers (21-24), up to .254 on the lab's /24.
const firstScaleNode = 31

// onLabNet is how many scale nodes fit on the lab's own /24 (10.88.0.31-254). Further nodes
// take 10.88.1.1-254, 10.88.2.1-254 and so on, inside scaleNet, which the lab namespace and
// the machines are then given a route to (see AddScaleNodes); a lab without such nodes keeps
// its /24 and routes exactly as Up made them.
const onLabNet = 254 - firstScaleNode + 1

// scaleNet is the prefix every scale node's address lies in, and its length.
const (
	scaleNet     = "10.88.0.0/16"
	scaleNetBits = 16
)

// MaxScaleNodes is how many scale nodes a lab takes: a Linux bridge has at most 1,023 ports
// (port numbers are 10 bits, 0 unused), and the lab's masters and workers hold up to 9.
const MaxScaleNodes = 1023 - 9

// scaleLimits are the ARP table sizes and the backlog a lab with up to MaxScaleNodes scale
// nodes needs.
var scaleLimits = map[string]int{
	"/proc/sys/net/ipv4/neigh/default/gc_thresh1": 2048,
	"/proc/sys/net/ipv4/neigh/default/gc_thresh2": 8192,
	"/proc/sys/net/ipv4/neigh/default/gc_thresh3": 16384,
	"/proc/sys/net/core/netdev_max_backlog":       32768,
}

// scaleAddress is the address of the i-th scale node (from 0).
func scaleAddress(i int) string {
	if i < onLabNet {
		return fmt.Sprintf("10.88.0.%d", firstScaleNode+i)
	}
	j := i - onLabNet
	return fmt.Sprintf("10.88.%d.%d", 1+j/254, 1+j%254)
}

// ScaleNodes are lightweight node hosts added to a running lab: each is a network namespace
// on the lab's bridge running its own sshd and its own nginx with the lab's proxy config (as
// the lab's workers have it), and nothing else: no systemd, no kubelet. They are in the lab's
// inventory as workers, so plan and apply update their proxies over SSH as any node's; their
// nginx has no unit, so apply reloads it by signal (lb.ReloadDetect). They share this
// machine's file system, so each keeps its proxy files in a folder of its own (per-host
// nginx_prefix and nginx_config in the inventory).
type ScaleNodes struct {
	lab *Lab
	// Names are the nodes' inventory names (n001, ...), Addresses their addresses by name.
	Names     []string
	Addresses map[string]string
	// Dir holds the nodes' proxy folders, their sshd's keys and logs.
	Dir string

	mu    sync.Mutex
	procs []*exec.Cmd
	done  []chan struct{}
	// routed is set once the lab namespace and the machines have their route to scaleNet.
	routed bool
}

// routeScaleNet adds (op "add") or deletes ("del") the route to scaleNet on the link of the
// lab namespace (br0) and of every machine (eth0).
func (s *ScaleNodes) routeScaleNet(ctx context.Context, op string) error {
	if op == "add" {
		s.routed = true
	}
	var errs []error
	if err := IPBatch(ctx, filepath.Base(s.lab.NetNS), fmt.Sprintf("route %s %s dev br0\n", op, scaleNet)); err != nil {
		errs = append(errs, err)
	}
	for _, m := range s.lab.Machines {
		if err := IPBatch(ctx, filepath.Base(m.NetNS), fmt.Sprintf("route %s %s dev eth0\n", op, scaleNet)); err != nil {
			errs = append(errs, fmt.Errorf("machine %s: %w", m.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (s *ScaleNodes) netns(name string) string { return s.lab.Name + "-" + name }

// ConfPath is where node name's proxy config lives.
func (s *ScaleNodes) ConfPath(name string) string {
	return filepath.Join(s.Dir, name, "kube-nginx.conf")
}

// AddScaleNodes starts n scale nodes in the lab (at most MaxScaleNodes) and adds them to its
// inventory and known_hosts. It returns once every node's sshd answers and its nginx serves;
// Stop (or, with StartScaleNodes, the test's cleanup) stops them. Only the seed003 layout,
// whose proxy listens on every address of the node, is supported.
func (l *Lab) AddScaleNodes(ctx context.Context, n int) (*ScaleNodes, error) {
	if n < 1 || n > MaxScaleNodes {
		return nil, fmt.Errorf("lab %s: %d scale nodes, want 1 to %d", l.Name, n, MaxScaleNodes)
	}
	if l.Layout != "seed003" {
		return nil, fmt.Errorf("lab %s: scale nodes need the seed003 layout, not %s", l.Name, l.Layout)
	}
	lay, err := LookupLayout(l.Layout)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	s := &ScaleNodes{lab: l, Addresses: map[string]string{}, Dir: filepath.Join(l.StateDir, "scale")}
	for i := range n {
		name := fmt.Sprintf("n%03d", i+1)
		s.Names = append(s.Names, name)
		s.Addresses[name] = scaleAddress(i)
	}
	fail := func(err error) (*ScaleNodes, error) {
		s.Stop()
		return nil, err
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fail(err)
	}

	// Two host limits a few hundred nodes run into, both with "No route to host" (ARP
	// unanswered): the kernel's ARP table is one for every namespace, 1,024 entries by
	// default, and each node takes one in the lab namespace, one of its own and one in each
	// master it reaches (dmesg: "neighbor table overflow"); and a broadcast on the bridge is
	// one packet per port queued at once on the CPU's backlog, 1,000 by default, so with
	// about as many ports the last ones (the machines) miss ARP requests (the second column
	// of /proc/net/softnet_stat grows). Raised like the inotify limits, never lowered.
	if n > onLabNet {
		if err := raiseLimits(scaleLimits); err != nil {
			return fail(err)
		}
	}

	// Network: a namespace per node, a veth pair from the lab's bridge into it. `ip -batch`
	// keeps it to a few processes for hundreds of nodes.
	var batch strings.Builder
	for _, name := range s.Names {
		fmt.Fprintf(&batch, "netns add %s\n", s.netns(name))
	}
	if err := IPBatch(ctx, "", batch.String()); err != nil {
		return fail(err)
	}
	batch.Reset()
	for i, name := range s.Names {
		fmt.Fprintf(&batch, "link add sc%d type veth peer name eth0 netns %s\nlink set sc%d master br0 up\n", i, s.netns(name), i)
	}
	if err := IPBatch(ctx, filepath.Base(l.NetNS), batch.String()); err != nil {
		return fail(err)
	}
	// Nodes on the lab's /24 get a /24 as a machine does; the others a /16 (scaleNet), and
	// the lab namespace and every machine a route to scaleNet on their link, so that the
	// masters answer them directly rather than through the lab namespace.
	wide := n > onLabNet
	for _, name := range s.Names {
		bits := 24
		if wide {
			bits = scaleNetBits
		}
		if err := IPBatch(ctx, s.netns(name), fmt.Sprintf("link set lo up\naddr add %s/%d dev eth0\nlink set eth0 up\n", s.Addresses[name], bits)); err != nil {
			return fail(err)
		}
	}
	if wide {
		if err := s.routeScaleNet(ctx, "add"); err != nil {
			return fail(err)
		}
	}

	// SSH: one host key for every node's sshd (each still has its own known_hosts line),
	// the lab's client key authorized.
	hostKeyFile := filepath.Join(s.Dir, "ssh_host_ed25519_key")
	_, hk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fail(err)
	}
	blk, err := ssh.MarshalPrivateKey(hk, "root@scale")
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(hostKeyFile, pem.EncodeToMemory(blk), 0o600); err != nil {
		return fail(err)
	}
	signer, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		return fail(err)
	}
	emptyRC := filepath.Join(s.Dir, "bashrc")
	sshdConf := filepath.Join(s.Dir, "sshd_config")
	for _, f := range []struct{ path, content string }{
		{emptyRC, ""},
		// MaxStartups: apply dials every node once, but the checks before dial them all at
		// once too; each node has its own sshd, so the default suffices. UseDNS off: no
		// resolver in the lab.
		{sshdConf, fmt.Sprintf("ListenAddress 0.0.0.0:22\nHostKey %s\nPidFile none\nAuthorizedKeysFile %s\n"+
			"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"+
			"StrictModes no\nUseDNS no\nLogLevel ERROR\n", hostKeyFile, l.SSHKey+".pub")},
	} {
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			return fail(err)
		}
	}
	var kh, inv strings.Builder
	for _, name := range s.Names {
		kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(s.Addresses[name])}, signer.PublicKey()) + "\n")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fail(err)
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "scale.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()

	// Each node: the lab's proxy config (the same upstreams as a worker's) under a prefix of
	// its own, nginx without a supervisor, and sshd.
	conf := l.nginxConf(lay)
	for _, name := range s.Names {
		dir := filepath.Join(s.Dir, name)
		if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(s.ConfPath(name), []byte(conf), 0o644); err != nil {
			return fail(err)
		}
		fmt.Fprintf(&inv, "  - name: %s\n    address: %s\n    roles: [worker]\n    paths:\n      nginx_binary: /usr/sbin/nginx\n      nginx_prefix: %s\n      nginx_config: %s\n",
			name, s.Addresses[name], dir, s.ConfPath(name))
		if err := s.start(logf, name, "/usr/sbin/nginx", "-p", dir, "-c", s.ConfPath(name), "-e", filepath.Join(dir, "logs", "error.log"), "-g", "daemon off;"); err != nil {
			return fail(err)
		}
		// bash reads root's ~/.bashrc for every SSH command: this machine's own would be in
		// every session's time, so the node's sshd sees an empty one (in the private mount
		// namespace ip netns exec gives it).
		if err := s.start(logf, name, "sh", "-c", fmt.Sprintf("if [ -f /root/.bashrc ]; then mount --bind %s /root/.bashrc || exit 1; fi; exec /usr/sbin/sshd -D -e -f %s", emptyRC, sshdConf)); err != nil {
			return fail(err)
		}
	}
	if err := appendFile(l.KnownHosts, kh.String()); err != nil {
		return fail(err)
	}
	if err := appendFile(l.Inventory, inv.String()); err != nil {
		return fail(err)
	}

	// Up when every sshd accepts a connection and every nginx has written its pid file.
	deadline := time.Now().Add(2 * time.Minute)
	for _, name := range s.Names {
		for {
			pidOK := fileExists(filepath.Join(s.Dir, name, "logs", "kube-nginx.pid"))
			c, err := l.DialContext(ctx, "tcp", s.Addresses[name]+":22")
			if err == nil {
				c.Close()
			}
			if err == nil && pidOK {
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logf.Name())
				return fail(fmt.Errorf("scale node %s not up (sshd: %v, nginx pid file: %v): %s", name, err, pidOK, tailLines(string(log), 20)))
			}
			select {
			case <-ctx.Done():
				return fail(ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	l.logf("%d scale nodes up in %s (%s to %s)", n, time.Since(start).Round(100*time.Millisecond), s.Addresses[s.Names[0]], s.Addresses[s.Names[n-1]])
	return s, nil
}

// StartScaleNodes is AddScaleNodes for a test: it fails the test when the nodes cannot be
// started, and stops them in the test's cleanup (before the lab's own teardown).
func StartScaleNodes(t interface {
	Helper()
	Fatalf(string, ...any)
	Errorf(string, ...any)
	Cleanup(func())
}, l *Lab, n int) *ScaleNodes {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := l.AddScaleNodes(ctx, n)
	if err != nil {
		t.Fatalf("scale nodes: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop scale nodes: %v", err)
		}
	})
	return s
}

// start runs args in node name's namespace, and remembers the process to stop it.
func (s *ScaleNodes) start(logf *os.File, name string, args ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", s.netns(name)}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a signal to the test's group (Ctrl-C) is not one to the nodes,
	// which Stop ends in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("scale node %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.procs = append(s.procs, cmd)
	s.done = append(s.done, done)
	s.mu.Unlock()
	return nil
}

// Stop ends the nodes' processes (by the PIDs started here: SIGTERM, then SIGKILL after 20 s)
// and deletes their namespaces, which takes their veths with them, and the routes to
// scaleNet that more than onLabNet nodes needed. Their lines stay in the
// lab's inventory and known_hosts, which the lab's teardown removes.
func (s *ScaleNodes) Stop() error {
	s.mu.Lock()
	procs, done := s.procs, s.done
	s.procs, s.done = nil, nil
	s.mu.Unlock()
	for _, p := range procs {
		// nginx's master ends its workers on SIGTERM (a fast shutdown); sshd its sessions.
		p.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(20 * time.Second)
	for i, p := range procs {
		select {
		case <-done[i]:
		case <-deadline:
			p.Process.Kill()
			<-done[i]
		}
	}
	var errs []error
	for _, name := range s.Names {
		if err := deleteNetns(s.netns(name)); err != nil {
			errs = append(errs, err)
		}
	}
	if s.routed {
		s.routed = false
		if err := s.routeScaleNet(context.Background(), "del"); err != nil {
			errs = append(errs, fmt.Errorf("route to the scale nodes: %w", err))
		}
	}
	return errors.Join(errs...)
}

// IPBatch runs an ip -batch script, in the named network namespace unless netns is "".
func IPBatch(ctx context.Context, netns, batch string) error {
	args := []string{"-batch", "-"}
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(batch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %q -batch: %w: %s", netns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
