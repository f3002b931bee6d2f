package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/testenv"
)

// hapWorkerPIDs lists the node's haproxy workers: current (no other replaced it) and old.
func hapWorkerPIDs(t *testing.T, ctx context.Context, h host.Host, ctl controller) (cur, old []int) {
	t.Helper()
	master := ctl.mainPID(ctx)
	if master <= 0 {
		t.Fatalf("%s: haproxy has no main PID", h.Name())
	}
	ps, err := hapChildren(ctx, h, master)
	if err != nil {
		t.Fatal(err)
	}
	c, o := hapCurrent(ps)
	for _, p := range c {
		cur = append(cur, p.pid)
	}
	for _, p := range o {
		old = append(old, p.pid)
	}
	return cur, old
}

// TestLabHAProxyExecutor applies a mark-down on a worker's Debian haproxy over SSH, as the
// runner does: haproxy -c, systemctl reload, the new worker proven, a connection held by the
// old worker cut; a rerun skips; a config haproxy -c rejects is restored without a reload and
// the error carries haproxy's message; undo puts the original back.
func TestLabHAProxyExecutor(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "mslbhap", Masters: 2, Workers: 1, Proxy: testenv.ProxyHAProxy})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inv, err := inventory.Load(lab.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	ih, _ := inv.Host("w1")
	h, err := host.Connect(ctx, inv, "w1", lab.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	m, _ := lab.Machine("w1")
	var apiservers []string
	for _, mh := range inv.HostsWithRole(inventory.RoleMaster) {
		apiservers = append(apiservers, net.JoinHostPort(mh.Address, "6443"))
	}

	cfg, err := ObserveHAProxy(ctx, h, ih.Paths, apiservers)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kind != KindHAProxy || len(cfg.Upstreams) != 1 || len(cfg.Upstreams[0].Servers) != 2 || cfg.Listen != "127.0.0.1:8443" {
		t.Fatalf("observed %+v", cfg)
	}
	orig := cfg.Files[cfg.Main]
	changes, err := Rewrite(cfg, apiservers[1:], MarkDown)
	if err != nil || len(changes) != 1 {
		t.Fatalf("Rewrite: %d changes, %v", len(changes), err)
	}

	ex := Executor{Kind: KindHAProxy, Reload: ReloadDetect}
	ctl, err := ex.controller(ctx, h, ih.Paths)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	before, _ := hapWorkerPIDs(t, ctx, h, ctl)

	// A client connection through the proxy, held across the reload by the old worker.
	conn, err := dialFrom(m.NetNS, net.IPv4(127, 0, 0, 1), cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS through haproxy: %v", err)
	}

	target := NodeTarget{Host: h, Paths: ih.Paths, Changes: changes, Listen: cfg.Listen}
	res, err := ex.Apply(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || len(res.Backups) != 1 {
		t.Fatalf("Apply: %+v", res)
	}
	cur, old := hapWorkerPIDs(t, ctx, h, ctl)
	if len(cur) != 1 || slices.Contains(before, cur[0]) || !slices.Equal(old, before) {
		t.Fatalf("after the reload: current %v, old %v (before %v), want a new current and the old one holding the connection", cur, old, before)
	}
	if err := ex.CutOldWorkers(ctx, h, ih.Paths); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c2, o2 := hapWorkerPIDs(t, ctx, h, ctl)
		if len(o2) == 0 && slices.Equal(c2, cur) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the cut: current %v, old %v", c2, o2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
		t.Errorf("the connection held by the old worker is still open after the cut: %v", err)
	}

	// Already done: nothing written, nothing reloaded.
	again, err := ex.Apply(ctx, target)
	if err != nil || !again.Skipped {
		t.Fatalf("rerun: %+v, %v", again, err)
	}

	// A config haproxy -c rejects: restored, not reloaded, haproxy's words in the error.
	applied := changes[0].After
	bad := []host.FileChange{{Host: "w1", Path: cfg.Main, Before: applied, After: strings.Replace(applied, "balance roundrobin", "balance roundrobin\n\tbogus-keyword 1", 1)}}
	_, err = ex.Apply(ctx, NodeTarget{Host: h, Paths: ih.Paths, Changes: bad, Listen: cfg.Listen})
	if err == nil || !strings.Contains(err.Error(), "haproxy -c rejected the config") || !strings.Contains(err.Error(), "bogus-keyword") ||
		!strings.Contains(err.Error(), "old config restored, haproxy not reloaded") {
		t.Fatalf("Apply of a bad config: %v", err)
	}
	if b, _ := h.ReadFile(ctx, cfg.Main); string(b) != applied {
		t.Error("the rejected config was left in place")
	}
	if c3, _ := hapWorkerPIDs(t, ctx, h, ctl); !slices.Equal(c3, cur) {
		t.Errorf("haproxy was reloaded on a rejected config: workers %v, were %v", c3, cur)
	}

	// Undo: the original back, loaded by a new worker.
	if err := ex.Undo(ctx, h, ih.Paths, res.Backups); err != nil {
		t.Fatal(err)
	}
	if b, _ := h.ReadFile(ctx, cfg.Main); string(b) != orig {
		t.Error("undo did not restore the original config")
	}
	if c4, _ := hapWorkerPIDs(t, ctx, h, ctl); len(c4) != 1 || c4[0] == cur[0] {
		t.Errorf("undo did not reload haproxy: current %v", c4)
	}
	if err := Probe(ctx, h, cfg.Listen, nil); err != nil {
		t.Error(err)
	}
}
