package lb

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/testenv"
)

// One lab serves every lab test of the package: each test leaves the nodes' nginx configs as
// it found them (and a cleanup puts them back if it fails half-way).
var (
	labOnce sync.Once
	theLab  *testenv.Lab
	labDown func()
	labErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if labDown != nil {
		labDown()
	}
	os.Exit(code)
}

func sharedLab(t *testing.T) *testenv.Lab {
	t.Helper()
	testenv.RequireLab(t)
	labOnce.Do(func() { theLab, labDown, labErr = testenv.Shared(testenv.Options{}) })
	if labErr != nil {
		t.Fatal(labErr)
	}
	return theLab
}

type labNode struct {
	name  string
	m     testenv.Machine
	h     host.Host
	paths inventory.Paths
}

type labCluster struct {
	lab        *testenv.Lab
	nodes      []*labNode
	apiservers []string          // every master's apiserver, host:port
	master     map[string]string // apiserver host:port to master name
}

// accessLog is the stream access log the tests add to every node's proxy: which upstream
// each client connection (by source address and port) went to. nginx writes a line when the
// connection ends.
const (
	accessLogFile = "logs/lbtest-access.log"
	accessLogConf = "    log_format lbtest '$remote_addr:$remote_port $upstream_addr';\n" +
		"    access_log " + accessLogFile + " lbtest;\n"
)

// labSetup connects to every node over SSH (as the tool does), remembers each node's nginx
// config to put it back at cleanup, and adds the access log to every proxy through the
// executor itself (write, nginx -t, reload over D-Bus, probe).
func labSetup(t *testing.T, ctx context.Context) *labCluster {
	t.Helper()
	lab := sharedLab(t)
	inv, err := inventory.Load(lab.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	c := &labCluster{lab: lab, master: map[string]string{}}
	for _, ih := range inv.Hosts {
		m, ok := lab.Machine(ih.Name)
		if !ok {
			t.Fatalf("inventory host %s is not a lab machine", ih.Name)
		}
		h, err := host.Connect(ctx, inv, ih.Name, lab.DialContext)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		c.nodes = append(c.nodes, &labNode{name: ih.Name, m: m, h: h, paths: ih.Paths})
		if ih.Has(inventory.RoleMaster) {
			a := fmt.Sprintf("%s:%d", ih.Address, ih.Paths.APIServerPort)
			c.apiservers = append(c.apiservers, a)
			c.master[a] = ih.Name
		}
	}
	if len(c.apiservers) != 3 || len(c.nodes) != 5 {
		t.Fatalf("lab has %d apiservers and %d nodes, want 3 and 5", len(c.apiservers), len(c.nodes))
	}

	orig := map[string]string{}
	var targets []NodeTarget
	for _, n := range c.nodes {
		main := MainConfigPath(n.paths)
		b, err := n.h.ReadFile(ctx, main)
		if err != nil {
			t.Fatal(err)
		}
		orig[n.name] = string(b)
		after := string(b)
		i := strings.Index(after, "stream {\n")
		if i < 0 {
			t.Fatalf("%s: no stream block in %s", n.name, main)
		}
		i += len("stream {\n")
		after = after[:i] + accessLogConf + after[i:]
		targets = append(targets, NodeTarget{Host: n.h, Paths: n.paths,
			Changes: []host.FileChange{{Host: n.name, Path: main, Before: string(b), After: after}}})
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, n := range c.nodes {
			main := MainConfigPath(n.paths)
			if cur, err := n.h.ReadFile(ctx, main); err == nil && string(cur) == orig[n.name] {
				continue
			}
			if _, err := n.h.WriteFile(ctx, main, []byte(orig[n.name]), host.WriteOptions{}); err != nil {
				t.Errorf("%s: put the original nginx config back: %v", n.name, err)
				continue
			}
			if out, err := lab.Exec(ctx, n.name, "systemctl", "reload", n.paths.NginxUnit); err != nil {
				t.Errorf("%s: reload nginx on its original config: %v: %s", n.name, err, out)
			}
		}
	})
	if err := ApplyAll(ctx, targets, 0, nil).Err(); err != nil {
		t.Fatalf("enable the access log: %v", err)
	}
	return c
}

// plan observes every node's config over SSH and rewrites it for the leaving apiservers.
func (c *labCluster) plan(t *testing.T, ctx context.Context, leaving ...string) []NodeTarget {
	t.Helper()
	var targets []NodeTarget
	for _, n := range c.nodes {
		cfg, err := Observe(ctx, n.h, n.paths, c.apiservers)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Listen != "127.0.0.1:8443" || len(cfg.Upstreams) != 1 {
			t.Fatalf("%s: observed listen %q, %d upstreams", n.name, cfg.Listen, len(cfg.Upstreams))
		}
		changes, err := Rewrite(cfg, leaving, MarkDown)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, NodeTarget{Host: n.h, Paths: n.paths, Changes: changes, Listen: cfg.Listen})
	}
	return targets
}

func (c *labCluster) addr(master string) string {
	for a, m := range c.master {
		if m == master {
			return a
		}
	}
	panic("no master " + master)
}

// routes opens one connection through node n's proxy from each of count loopback source
// addresses (the upstream hash is on the client address, so they spread over the
// apiservers), completes a TLS handshake with the apiserver behind it, and returns how many
// went to each master, read from the proxy's access log.
func (c *labCluster) routes(t *testing.T, ctx context.Context, n *labNode, count int) map[string]int {
	t.Helper()
	logPath := path.Join(n.paths.NginxPrefix, accessLogFile)
	old, _ := n.h.ReadFile(ctx, logPath)
	want := map[string]bool{}
	for i := range count {
		src := net.IPv4(127, 0, 0, byte(20+i))
		conn, err := dialFrom(n.m.NetNS, src, n.paths.NginxListen)
		if err != nil {
			t.Fatalf("%s: connect from %s: %v", n.name, src, err)
		}
		want[conn.LocalAddr().String()] = true
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = tc.HandshakeContext(hctx)
		cancel()
		tc.Close()
		if err != nil {
			t.Fatalf("%s: TLS through the proxy from %s: %v", n.name, src, err)
		}
	}
	got := map[string]int{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		cur, err := n.h.ReadFile(ctx, logPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(cur, old) {
			old = nil // rotated: read it all
		}
		found := map[string]string{}
		for _, l := range strings.Split(string(cur[len(old):]), "\n") {
			if f := strings.Fields(l); len(f) == 2 && want[f[0]] {
				found[f[0]] = f[1]
			}
		}
		if len(found) == len(want) {
			for client, up := range found {
				m, ok := c.master[up]
				if !ok {
					t.Fatalf("%s: connection from %s logged upstream %q, no apiserver", n.name, client, up)
				}
				got[m]++
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d connections in %s", n.name, len(found), len(want), logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dialFrom connects to addr from src inside the network namespace at nsPath, on an OS thread
// that is thrown away afterwards (as testenv.DialerIn does).
func dialFrom(nsPath string, src net.IP, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", addr)
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.c, r.err
}

// nginxPID is the main PID systemd has for the node's nginx unit.
func (c *labCluster) nginxPID(t *testing.T, ctx context.Context, n *labNode) string {
	t.Helper()
	out, err := c.lab.Exec(ctx, n.name, "systemctl", "show", "-p", "MainPID", "--value", n.paths.NginxUnit)
	pid := strings.TrimSpace(string(out))
	if err != nil || pid == "" || pid == "0" {
		t.Fatalf("%s: main PID of %s: %q %v", n.name, n.paths.NginxUnit, out, err)
	}
	return pid
}

// nginxWorkers lists the node's nginx worker processes (PIDs and titles).
func (c *labCluster) nginxWorkers(t *testing.T, ctx context.Context, n *labNode) string {
	t.Helper()
	out, err := c.lab.Exec(ctx, n.name, "ps", "-o", "pid=,args=", "--ppid", c.nginxPID(t, ctx, n))
	if err != nil {
		t.Fatalf("%s: ps: %v: %s", n.name, err, out)
	}
	return string(out)
}

// checkLabDiff asserts each change differs from its input only on the lines of the
// leaving servers, which now say down.
func checkLabDiff(t *testing.T, targets []NodeTarget, leaving ...string) {
	t.Helper()
	for _, tg := range targets {
		if len(tg.Changes) != 1 {
			t.Fatalf("%s: %d file changes, want 1", tg.Host.Name(), len(tg.Changes))
		}
		b := strings.Split(tg.Changes[0].Before, "\n")
		a := strings.Split(tg.Changes[0].After, "\n")
		if len(a) != len(b) {
			t.Fatalf("%s: %d lines became %d", tg.Host.Name(), len(b), len(a))
		}
		changed := 0
		for i := range b {
			if a[i] == b[i] {
				continue
			}
			changed++
			leavingLine := slices.ContainsFunc(leaving, func(l string) bool { return strings.Contains(b[i], "server "+l+" ") })
			if !leavingLine || !strings.Contains(a[i], " down") {
				t.Errorf("%s: line %d changed from %q to %q", tg.Host.Name(), i+1, b[i], a[i])
			}
		}
		if changed == 0 {
			t.Errorf("%s: no line changed", tg.Host.Name())
		}
	}
}

// TestLabMarkDownEveryNode marks one, then two masters down on every node's proxy over SSH
// (nginx -t, reload through systemd over D-Bus, probe) while every worker sends requests
// through its proxy: none fails, no new connection reaches the leaving apiservers, nginx is
// never restarted, and the undo brings the traffic back.
func TestLabMarkDownEveryNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := labSetup(t, ctx)
	const sources = 32

	// The check below can fail: before any change, connections reach m2 and m3.
	for _, n := range c.nodes {
		if r := c.routes(t, ctx, n, sources); r["m2"] == 0 || r["m3"] == 0 {
			t.Fatalf("%s: before: connections per master %v, want some on m2 and m3", n.name, r)
		}
	}
	pids := map[string]string{}
	for _, n := range c.nodes {
		pids[n.name] = c.nginxPID(t, ctx, n)
	}

	prober := c.lab.StartProber(ctx, 20)
	stopped := false
	defer func() {
		if !stopped {
			prober.Stop()
		}
	}()

	var journal []Summary
	for _, step := range []struct {
		leaving []string
		newest  string // the one not yet down
		want    func(map[string]int) bool
	}{
		{[]string{"m3"}, "m3", func(r map[string]int) bool { return r["m3"] == 0 && r["m1"]+r["m2"] == sources && r["m2"] > 0 }},
		{[]string{"m2", "m3"}, "m2", func(r map[string]int) bool { return r["m1"] == sources }},
	} {
		var leaving []string
		for _, m := range step.leaving {
			leaving = append(leaving, c.addr(m))
		}
		targets := c.plan(t, ctx, leaving...)
		checkLabDiff(t, targets, c.addr(step.newest))
		changes := map[string][]host.FileChange{}
		for _, tg := range targets {
			changes[tg.Host.Name()] = tg.Changes
		}
		if g := GroupDiffs(changes); len(g) != 1 || len(g[0].Hosts) != len(c.nodes) {
			t.Errorf("leaving %v: %d diff groups, want one for all %d nodes", step.leaving, len(g), len(c.nodes))
		}

		var progress bytes.Buffer
		sum := ApplyAll(ctx, targets, 0, &progress)
		t.Logf("leaving %v:\n%s", step.leaving, progress.String())
		if err := sum.Err(); err != nil || len(sum.Done) != len(c.nodes) || len(sum.Backups) != len(c.nodes) {
			t.Fatalf("leaving %v: done %v, backups for %d nodes: %v", step.leaving, sum.Done, len(sum.Backups), err)
		}
		journal = append(journal, sum)
		for _, n := range c.nodes {
			if r := c.routes(t, ctx, n, sources); !step.want(r) {
				t.Errorf("%s: leaving %v: new connections per master %v", n.name, step.leaving, r)
			}
		}
	}

	// A rerun of the last step finds every node done and touches nothing.
	if sum := ApplyAll(ctx, c.plan(t, ctx, c.addr("m2"), c.addr("m3")), 0, nil); len(sum.Skipped) != len(c.nodes) || sum.Err() != nil {
		t.Errorf("rerun: skipped %v, done %v: %v", sum.Skipped, sum.Done, sum.Err())
	}

	// The way back, newest step first.
	for i := len(journal) - 1; i >= 0; i-- {
		for _, n := range c.nodes {
			if err := Undo(ctx, n.h, n.paths, journal[i].Backups[n.name]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range c.nodes {
		if r := c.routes(t, ctx, n, sources); r["m2"] == 0 || r["m3"] == 0 {
			t.Errorf("%s: after undo: connections per master %v, want m2 and m3 back", n.name, r)
		}
	}

	rep := prober.Stop()
	stopped = true
	t.Logf("prober: %s", rep)
	if rep.Failed != 0 {
		t.Errorf("%d of %d probes failed: %+v", rep.Failed, rep.Total, rep.Failures)
	}
	for w, p := range rep.PerWorker {
		if p.Total < 20 {
			t.Errorf("prober on %s made only %d requests", w, p.Total)
		}
	}
	if len(rep.PerWorker) != 2 {
		t.Errorf("prober ran on %d workers, want 2", len(rep.PerWorker))
	}
	for _, n := range c.nodes {
		if pid := c.nginxPID(t, ctx, n); pid != pids[n.name] {
			t.Errorf("%s: nginx main PID %s became %s: restarted, not reloaded", n.name, pids[n.name], pid)
		}
	}
}

// TestLabRejectedConfigOnOneNode breaks an include on w2 after the plan: nginx -t rejects
// w2's new config, w2 stays on its old one and serves, the error names w2 and nginx's
// message, the other nodes are done; after the fix a rerun touches only w2.
func TestLabRejectedConfigOnOneNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := labSetup(t, ctx)
	var w2 *labNode
	for _, n := range c.nodes {
		if n.name == "w2" {
			w2 = n
		}
	}

	// w2's stream block includes a file of its own.
	main := MainConfigPath(w2.paths)
	extra := path.Join(path.Dir(main), "conf.d", "extra.conf")
	if _, err := w2.h.Run(ctx, "mkdir -p "+shq(path.Dir(extra))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w2.h.Run(context.Background(), "rm -rf "+shq(path.Dir(extra))) })
	if _, err := w2.h.WriteFile(ctx, extra, []byte("proxy_timeout 10m;\n"), host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := w2.h.ReadFile(ctx, main)
	if err != nil {
		t.Fatal(err)
	}
	withInclude := strings.Replace(string(before), "stream {\n", "stream {\n    include conf.d/extra.conf;\n", 1)
	if err := ApplyAll(ctx, []NodeTarget{{Host: w2.h, Paths: w2.paths, Changes: []host.FileChange{
		{Host: "w2", Path: main, Before: string(before), After: withInclude}}}}, 0, nil).Err(); err != nil {
		t.Fatal(err)
	}

	targets := c.plan(t, ctx, c.addr("m3"))
	checkLabDiff(t, targets, c.addr("m3"))
	// The include breaks after the plan, as a colleague's edit would.
	if _, err := w2.h.WriteFile(ctx, extra, []byte("proxy_timeout;\n"), host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	workers := c.nginxWorkers(t, ctx, w2)

	sum := ApplyAll(ctx, targets, 0, nil)
	if len(sum.Failed) != 1 || sum.Failed["w2"] == nil || len(sum.Done) != len(c.nodes)-1 || slices.Contains(sum.Done, "w2") {
		t.Fatalf("summary: done %v, skipped %v, failed %v", sum.Done, sum.Skipped, sum.Failed)
	}
	msg := sum.Failed["w2"].Error()
	if !strings.HasPrefix(msg, "w2: ") || !strings.Contains(msg, `invalid number of arguments in "proxy_timeout" directive`) ||
		!strings.Contains(msg, extra) || !strings.Contains(msg, "old config restored") {
		t.Errorf("w2's error does not name the node, nginx's message and the restore: %s", msg)
	}
	if len(sum.Backups["w2"]) != 0 {
		t.Errorf("w2 has backups %v after a restore", sum.Backups["w2"])
	}
	if cur, _ := w2.h.ReadFile(ctx, main); string(cur) != withInclude {
		t.Error("w2's config is not the old one")
	}
	if now := c.nginxWorkers(t, ctx, w2); now != workers {
		t.Errorf("w2's nginx was reloaded: workers\n%s\nbecame\n%s", workers, now)
	}
	// Still serving, on the old config: m3 still gets new connections through w2 only.
	if err := Probe(ctx, w2.h, w2.paths.NginxListen, nil); err != nil {
		t.Errorf("probe through w2: %v", err)
	}
	for _, n := range c.nodes {
		r := c.routes(t, ctx, n, 32)
		if n == w2 && r["m3"] == 0 || n != w2 && r["m3"] != 0 {
			t.Errorf("%s: connections per master %v", n.name, r)
		}
	}

	// The fix, then a rerun that touches only w2.
	if _, err := w2.h.WriteFile(ctx, extra, []byte("proxy_timeout 10m;\n"), host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	others := map[string]string{}
	for _, n := range c.nodes {
		if n != w2 {
			others[n.name] = c.nginxWorkers(t, ctx, n)
		}
	}
	rerun := ApplyAll(ctx, targets, 0, nil)
	if !slices.Equal(rerun.Done, []string{"w2"}) || len(rerun.Skipped) != len(c.nodes)-1 || rerun.Err() != nil {
		t.Fatalf("rerun: done %v, skipped %v: %v", rerun.Done, rerun.Skipped, rerun.Err())
	}
	for _, n := range c.nodes {
		if n == w2 {
			continue
		}
		if now := c.nginxWorkers(t, ctx, n); now != others[n.name] {
			t.Errorf("rerun reloaded %s: workers\n%s\nbecame\n%s", n.name, others[n.name], now)
		}
	}
	if r := c.routes(t, ctx, w2, 32); r["m3"] != 0 {
		t.Errorf("w2 after the rerun: connections per master %v", r)
	}

	// Back to where the test started.
	sum.Backups["w2"] = rerun.Backups["w2"]
	for _, n := range c.nodes {
		if err := Undo(ctx, n.h, n.paths, sum.Backups[n.name]); err != nil {
			t.Fatal(err)
		}
	}
	if cur, _ := w2.h.ReadFile(ctx, main); string(cur) != withInclude {
		t.Error("undo on w2 did not restore its config")
	}
}
