package lb

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/sshdtest"
	"github.com/mastershrink/mastershrink/inventory"
)

func requireNginx(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not installed (apt-get install nginx libnginx-mod-stream)")
	}
	if _, err := os.Stat(streamModule); err != nil {
		t.Skip("nginx stream module not installed (apt-get install libnginx-mod-stream)")
	}
}

const proxyConf = `load_module ` + streamModule + `;
worker_processes 1;
pid %PREFIX%/logs/nginx.pid;
error_log %PREFIX%/logs/error.log;

events {
    worker_connections 1024;
}

stream {
    # the apiservers
    upstream apiserver {
%SERVERS%    }

    server {
        listen %LISTEN%;
        proxy_connect_timeout 1s;
        proxy_pass apiserver;
    }
%INCLUDE%}
`

type node struct {
	h      *localHost
	nginx  *testNginx
	listen string
}

// startNode runs a real nginx proxy in front of backends, as a node's kube-nginx does.
func startNode(t testing.TB, name string, bs []*backend, include bool) *node {
	t.Helper()
	var servers strings.Builder
	for _, b := range bs {
		fmt.Fprintf(&servers, "        server %s max_fails=3 fail_timeout=30s;\n", b.addr)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", sshdtest.FreePort(t))
	inc := ""
	extra := map[string]string{}
	if include {
		inc = "    include conf.d/*.conf;\n"
		extra["conf.d/10-log.conf"] = "proxy_timeout 10m;\n"
	}
	conf := strings.NewReplacer("%SERVERS%", servers.String(), "%LISTEN%", listen, "%INCLUDE%", inc).Replace(proxyConf)
	n := startNginx(t, conf, extra)
	return &node{h: newLocalHost(name, n), nginx: n, listen: listen}
}

func addrs(bs []*backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.addr)
	}
	return out
}

func (n *node) target(t testing.TB, bs []*backend, leaving []string) NodeTarget {
	t.Helper()
	p := n.nginx.paths("")
	cfg, err := Observe(context.Background(), n.h, p, addrs(bs))
	if err != nil {
		t.Fatalf("Observe %s: %v", n.h.name, err)
	}
	if cfg.Listen != n.listen {
		t.Fatalf("Observe %s: listen %q, want %q", n.h.name, cfg.Listen, n.listen)
	}
	changes, err := Rewrite(cfg, leaving, MarkDown)
	if err != nil {
		t.Fatalf("Rewrite %s: %v", n.h.name, err)
	}
	return NodeTarget{Host: n.h, Paths: p, Changes: changes, Listen: cfg.Listen}
}

// hitsDuring sends n requests through the proxy and returns how many each backend got.
func hitsDuring(t testing.TB, listen string, bs []*backend, n int) []int64 {
	t.Helper()
	before := make([]int64, len(bs))
	for i, b := range bs {
		before[i] = b.hits.Load()
	}
	for range n {
		if _, err := get(context.Background(), listen); err != nil {
			t.Fatalf("request through %s: %v", listen, err)
		}
	}
	out := make([]int64, len(bs))
	for i, b := range bs {
		out[i] = b.hits.Load() - before[i]
	}
	return out
}

func TestApplyMarksDownWithoutDroppingRequestsThenUndo(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	bs := startBackends(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	n := startNode(t, "worker-1", bs, false)
	if h := hitsDuring(t, n.listen, bs, 30); h[1] == 0 || h[2] == 0 {
		t.Fatalf("before: round robin did not reach every backend: %v", h)
	}

	tg := n.target(t, bs, []string{bs[1].addr, bs[2].addr})
	before := tg.Changes[0].Before
	l := startLoad(n.listen, 4)
	var e Executor
	res, err := e.Apply(ctx, tg)
	okDuring := l.ok.Load()
	l.finish()
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if l.failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the reload: %v", l.failed.Load(), l.ok.Load()+l.failed.Load(), l.firstErr.Load())
	}
	if okDuring == 0 {
		t.Fatal("no request went through while Apply ran")
	}
	if res.Skipped || len(res.Backups) != 1 {
		t.Fatalf("result %+v, want done with one backup", res)
	}
	if b, _ := os.ReadFile(res.Backups[n.nginx.conf]); string(b) != before {
		t.Fatal("backup does not hold the old config")
	}
	if h := hitsDuring(t, n.listen, bs, 30); h[1] != 0 || h[2] != 0 || h[0] != 30 {
		t.Fatalf("after: hits per backend %v, want all 30 on the survivor", h)
	}

	// A rerun finds the node done.
	res2, err := e.Apply(ctx, tg)
	if err != nil || !res2.Skipped {
		t.Fatalf("rerun: %+v, %v; want skipped", res2, err)
	}

	if err := Undo(ctx, n.h, tg.Paths, res.Backups); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	if b, _ := os.ReadFile(n.nginx.conf); string(b) != before {
		t.Fatal("Undo did not restore the old config")
	}
	if h := hitsDuring(t, n.listen, bs, 30); h[1] == 0 || h[2] == 0 {
		t.Fatalf("after undo: hits per backend %v, want every backend again", h)
	}
}

// A config nginx -t rejects is written back and nothing is reloaded, whether the node reloads
// through systemd (a test command of its own) or by signal (the test runs in the reload's
// command).
func TestApplyRejectedConfigKeepsOldConfig(t *testing.T) {
	requireNginx(t)
	// signal 2: by signal over SSH, where the test and reload run in the write's command.
	for _, signal := range []int{0, 1, 2} {
		ctx := context.Background()
		bs := startBackends(t, "127.0.0.2", "127.0.0.3")
		n := startNode(t, "worker-7", bs, true)
		tg := n.target(t, bs, []string{bs[1].addr})
		var e Executor
		switch signal {
		case 1:
			tg.Host, e.Reload = noSystemd{n.h}, ReloadSignal
		case 2:
			tg.Host, e.Reload = sshNode(t, "worker-7"), ReloadSignal
		}
		// A broken include appears on this node after nginx last loaded its config.
		broken := filepath.Join(n.nginx.prefix, "conf", "conf.d", "20-broken.conf")
		if err := os.WriteFile(broken, []byte("proxy_timeout 10m\n"), 0o644); err != nil {
			t.Fatal(err)
		}

		_, err := e.Apply(ctx, tg)
		if err == nil {
			t.Fatalf("signal %v: Apply succeeded with a broken include", signal)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "worker-7: nginx -t rejected the config: ") || !strings.Contains(msg, "20-broken.conf") ||
			!strings.HasSuffix(msg, "old config restored, nginx not reloaded") {
			t.Fatalf("signal %v: error %q does not name the node, nginx's message and the restore", signal, msg)
		}
		if b, _ := os.ReadFile(n.nginx.conf); string(b) != tg.Changes[0].Before {
			t.Fatalf("signal %v: the old config was not restored", signal)
		}
		// Still serving, on the old config: the leaving backend still gets traffic.
		if h := hitsDuring(t, n.listen, bs, 20); h[1] == 0 {
			t.Fatalf("signal %v: hits per backend %v: old config not live", signal, h)
		}
	}
}

// sshNode is this machine reached as name over SSH, through a real sshd on loopback.
func sshNode(t *testing.T, name string) host.Host {
	t.Helper()
	s := sshdtest.Start(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h, err := host.Dial(ctx, host.SSHConfig{Name: name, Address: "127.0.0.1", SSH: inventory.SSH{
		User: "root", Port: s.Port, IdentityFile: s.ClientKey, KnownHosts: s.KnownHosts,
		ConnectTimeout: inventory.Duration(5 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestApplyAllReportsAndRerunsOnlyWhatIsLeft(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	bs := startBackends(t, "127.0.0.2", "127.0.0.3")
	var nodes []*node
	var targets []NodeTarget
	for _, name := range []string{"w1", "w2", "w3"} {
		n := startNode(t, name, bs, true)
		nodes = append(nodes, n)
		targets = append(targets, n.target(t, bs, []string{bs[1].addr}))
	}
	broken := filepath.Join(nodes[1].nginx.prefix, "conf", "conf.d", "20-broken.conf")
	if err := os.WriteFile(broken, []byte("no_such_directive on;\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var progress bytes.Buffer
	sum := ApplyAll(ctx, targets, 2, &progress)
	if !slices.Equal(sum.Done, []string{"w1", "w3"}) || len(sum.Skipped) != 0 || len(sum.Failed) != 1 || sum.Failed["w2"] == nil {
		t.Fatalf("summary %+v", sum)
	}
	if !strings.Contains(sum.Err().Error(), "w2: ") || !strings.Contains(sum.Err().Error(), "no_such_directive") {
		t.Fatalf("error %v does not name w2 and nginx's message", sum.Err())
	}
	if len(sum.Backups["w1"]) != 1 || len(sum.Backups["w3"]) != 1 || len(sum.Backups["w2"]) != 0 {
		t.Fatalf("backups %v", sum.Backups)
	}
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[2], "lb: 3/3 nodes: 2 done, 0 skipped, 1 failed") {
		t.Fatalf("progress:\n%s", progress.String())
	}

	// The operator fixes w2; the rerun touches only w2.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	sum = ApplyAll(ctx, targets, 0, nil)
	if !slices.Equal(sum.Done, []string{"w2"}) || !slices.Equal(sum.Skipped, []string{"w1", "w3"}) || len(sum.Failed) != 0 {
		t.Fatalf("rerun summary %+v", sum)
	}
	for _, n := range nodes {
		if h := hitsDuring(t, n.listen, bs, 10); h[1] != 0 {
			t.Fatalf("%s: leaving backend still gets traffic: %v", n.h.name, h)
		}
	}
}

func TestProbeStatuses(t *testing.T) {
	for _, tt := range []struct {
		status int
		ok     bool
	}{{200, true}, {401, true}, {403, true}, {500, false}, {404, false}} {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != ProbePath {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			w.WriteHeader(tt.status)
		}))
		err := Probe(context.Background(), newLocalHost("n", nil), strings.TrimPrefix(srv.URL, "https://"), nil)
		srv.Close()
		if (err == nil) != tt.ok {
			t.Errorf("status %d: Probe error %v, want ok=%v", tt.status, err, tt.ok)
		}
	}
	if err := Probe(context.Background(), newLocalHost("n", nil), fmt.Sprintf("127.0.0.1:%d", sshdtest.FreePort(t)), nil); err == nil {
		t.Error("Probe of a closed port succeeded")
	}
}
