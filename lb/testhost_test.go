package lb

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
)

// localHost is this machine as a node (host.NewLocal: commands through sh, its files,
// loopback) running a real nginx started by the test. The one part that is not real is
// Systemd: this machine has no systemd, so Reload runs what the nginx units' ExecReload runs
// (`nginx -p PREFIX -c CONF -s reload`) and Status reports the nginx master as MainPID.
type localHost struct {
	host.Host
	name  string
	nginx *testNginx
}

func newLocalHost(name string, n *testNginx) *localHost {
	return &localHost{Host: host.NewLocal(name), name: name, nginx: n}
}

func (h *localHost) Systemd(context.Context) (host.Systemd, error) { return &testSystemd{h.nginx}, nil }

type testSystemd struct{ n *testNginx }

func (s *testSystemd) Status(_ context.Context, unit string) (host.UnitStatus, error) {
	st := host.UnitStatus{Name: unit, LoadState: "loaded", ActiveState: "inactive"}
	if s.n.cmd != nil && s.n.cmd.ProcessState == nil {
		st.ActiveState, st.SubState, st.MainPID = "active", "running", s.n.cmd.Process.Pid
	}
	return st, nil
}

func (s *testSystemd) Reload(ctx context.Context, unit string) error {
	out, err := exec.CommandContext(ctx, "nginx", "-p", s.n.prefix+"/", "-c", s.n.conf, "-s", "reload").CombinedOutput()
	if err != nil {
		return fmt.Errorf("reload %s: %v: %s", unit, err, out)
	}
	return nil
}

var errNotInTest = errors.New("not used by these tests")

func (s *testSystemd) Start(context.Context, string) error   { return errNotInTest }
func (s *testSystemd) Stop(context.Context, string) error    { return errNotInTest }
func (s *testSystemd) Restart(context.Context, string) error { return errNotInTest }
func (s *testSystemd) Enable(context.Context, string) error  { return errNotInTest }
func (s *testSystemd) Disable(context.Context, string) error { return errNotInTest }
func (s *testSystemd) DaemonReload(context.Context) error    { return errNotInTest }
func (s *testSystemd) Close() error                          { return nil }

// testNginx is a real nginx master (daemon off, so the test owns the process) with its own
// prefix in a temp folder.
type testNginx struct {
	prefix, conf string
	cmd          *exec.Cmd
}

func (n *testNginx) paths(listen string) inventory.Paths {
	return inventory.Paths{NginxUnit: "kube-nginx.service", NginxBinary: "/usr/sbin/nginx",
		NginxPrefix: n.prefix, NginxConfig: n.conf, NginxListen: listen}
}

// startNginx writes conf (with %PREFIX% replaced) and starts nginx on it; it is stopped at
// cleanup by its own PID.
func startNginx(t testing.TB, conf string, extra map[string]string) *testNginx {
	t.Helper()
	dir := t.TempDir()
	n := &testNginx{prefix: dir, conf: filepath.Join(dir, "conf", "nginx.conf")}
	for _, d := range []string{"conf", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(s, "%PREFIX%", dir)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(n.conf, conf)
	for rel, s := range extra {
		write(filepath.Join(dir, "conf", rel), s)
	}
	n.cmd = exec.Command("nginx", "-p", dir+"/", "-c", n.conf, "-g", "daemon off;")
	var stderr bytes.Buffer
	n.cmd.Stderr = &stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { n.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			n.cmd.Process.Kill()
			<-exited
		}
	})
	// Ready when the master has written its pid file and a worker runs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("ps", "-o", "args=", "--ppid", fmt.Sprint(n.cmd.Process.Pid)).Output()
		if strings.Contains(string(out), "worker process") {
			return n
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx started no worker: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backend is a small TLS server standing in for one apiserver; it counts requests.
type backend struct {
	addr string
	hits atomic.Int64
	srv  *httptest.Server
}

func startBackends(t testing.TB, ips ...string) []*backend {
	t.Helper()
	var bs []*backend
	for _, ip := range ips {
		b := &backend{}
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.hits.Add(1)
			if r.URL.Path != "/readyz" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("X-Backend", ip)
			fmt.Fprint(w, "ok")
		}))
		b.srv.Listener.Close()
		b.srv.Listener = l
		b.srv.StartTLS()
		t.Cleanup(b.srv.Close)
		b.addr = l.Addr().String()
		bs = append(bs, b)
	}
	return bs
}

// get does one request through the proxy on a new connection and says which backend answered.
func get(ctx context.Context, listen string) (string, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+listen+"/readyz", nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return resp.Header.Get("X-Backend"), nil
}

// load sends requests through the proxy until stopped, counting failures.
type load struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(listen string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if _, err := get(context.Background(), listen); err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) finish() { close(l.stop); l.wg.Wait() }
