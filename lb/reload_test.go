package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/machine"
)

// noSystemd is a node where nginx runs without a systemd unit.
type noSystemd struct{ *localHost }

func (noSystemd) Systemd(context.Context) (host.Systemd, error) {
	return nil, errors.New("no systemd on this node")
}

func TestReloadSignalWithoutSystemd(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	n, bs, tg := signalNode(t, "bare-1")

	var def Executor
	if _, err := def.Apply(ctx, tg); err == nil {
		t.Fatal("the default executor applied without systemd")
	}
	e := Executor{Reload: ReloadSignal}
	rec := &recording{Host: tg.Host}
	tg.Host = rec
	tg.Current = map[string]string{} // read here: rec's reads are Apply's after it writes
	for _, c := range tg.Changes {
		tg.Current[c.Path] = c.Before
	}
	res, err := e.Apply(ctx, tg)
	if err != nil || res.Skipped {
		t.Fatalf("Apply: %+v %v", res, err)
	}
	if h := hitsDuring(t, n.listen, bs, 20); h[1] != 0 {
		t.Fatalf("after the signal reload: hits per backend %v", h)
	}
	// The wait for the new workers is in the reload's own command, not in more commands, and
	// the pid file is found in the config just written, not in the config read back.
	for _, c := range rec.cmds {
		if strings.Contains(c, "/children") && !strings.Contains(c, "kill -HUP") {
			t.Errorf("the reload wait ran a command of its own:\n%s", c)
		}
	}
	if slices.Contains(rec.reads, MainConfigPath(tg.Paths)) {
		t.Errorf("the config was read back after it was written: reads %v", rec.reads)
	}
	tg.Current = nil
	if res2, err := e.Apply(ctx, tg); err != nil || !res2.Skipped {
		t.Fatalf("rerun: %+v %v, want skipped", res2, err)
	}
	if err := e.Undo(ctx, tg.Host, tg.Paths, res.Backups); err != nil {
		t.Fatal(err)
	}
	if h := hitsDuring(t, n.listen, bs, 20); h[1] == 0 {
		t.Fatalf("after undo: hits per backend %v", h)
	}
}

// Over SSH, a signal reload is one command: the write, nginx -t, the signal and the wait for
// the new workers. The proxy then serves on the new config, and a rerun finds it loaded.
func TestSignalReloadOverSSH(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	n, bs, tg := signalNode(t, "ssh-1")
	rec := &recording{Host: sshNode(t, "ssh-1")}
	tg.Host = rec
	tg.Current = map[string]string{}
	for _, c := range tg.Changes {
		tg.Current[c.Path] = c.Before
	}
	e := Executor{Reload: ReloadSignal}
	if _, err := e.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if h := hitsDuring(t, n.listen, bs, 20); h[1] != 0 {
		t.Fatalf("after the signal reload: hits per backend %v", h)
	}
	if len(rec.cmds) != 1 || !strings.HasPrefix(rec.cmds[0], "write ") {
		t.Errorf("commands %q, want the write alone, with the reload in it", rec.cmds)
	}
	tg.Current = nil
	if res, err := e.Apply(ctx, tg); err != nil || !res.Skipped {
		t.Fatalf("rerun: %+v %v, want skipped", res, err)
	}
}

func TestSignalPIDFile(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	h := newLocalHost("n", nil)
	for _, tt := range []struct{ conf, prefix, want string }{
		{"pid logs/x.pid;\nevents {}\n", dir, filepath.Join(dir, "logs/x.pid")},
		{"pid /run/y.pid;\nevents {}\n", dir, "/run/y.pid"},
		{"events { }\nhttp { }\n", dir, builtinPIDPath(t)},
	} {
		if err := os.WriteFile(conf, []byte(tt.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		p := (&testNginx{prefix: tt.prefix, conf: conf}).paths("")
		got, err := (&signalController{h: h, p: p}).pidFile(ctx)
		if err != nil || got != tt.want {
			t.Errorf("pid file of %q: %q %v, want %q", tt.conf, got, err, tt.want)
		}
	}
}

func builtinPIDPath(t *testing.T) string {
	res, err := (newLocalHost("n", nil)).Run(context.Background(), "nginx -V 2>&1")
	if err != nil {
		t.Fatal(err)
	}
	p := configureArgs(string(res.Stdout))["pid-path"]
	if p == "" {
		t.Skip("this nginx was built without --pid-path")
	}
	return p
}

func TestConfigureArgs(t *testing.T) {
	out := "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.11\nconfigure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx --pid-path=/run/nginx.pid --with-debug\n"
	m := configureArgs(out)
	if m["prefix"] != "/usr/share/nginx" || m["pid-path"] != "/run/nginx.pid" {
		t.Fatalf("configureArgs = %v", m)
	}
}

// booted is a node without a systemd unit for nginx that answers the systemd check as told:
// "" runs it for real on this machine.
type booted struct {
	noSystemd
	answer string // "yes", "no", "broken"
}

func (b booted) Run(ctx context.Context, cmd string) (host.Result, error) {
	if cmd == "test -d /run/systemd/system" {
		switch b.answer {
		case "yes":
			return host.Result{}, nil
		case "no":
			return host.Result{ExitCode: 1}, &host.CmdError{Host: b.Name(), Cmd: cmd, ExitCode: 1}
		case "broken":
			return host.Result{}, errors.New("connection lost")
		}
	}
	return b.noSystemd.Run(ctx, cmd)
}

// ReloadDetect reloads by signal on a node not booted with systemd, goes through systemd on
// one that is (and so fails here, where its systemd cannot be reached), and refuses to guess
// when the check itself fails.
func TestReloadDetect(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	bs := startBackends(t, "127.0.0.2", "127.0.0.3")
	n := startNode(t, "bare-2", bs, false)
	tg := n.target(t, bs, []string{bs[1].addr})
	e := Executor{Reload: ReloadDetect}

	tg.Host = booted{noSystemd{n.h}, "yes"}
	if _, err := e.Apply(ctx, tg); err == nil || !strings.Contains(err.Error(), "no systemd on this node") {
		t.Errorf("a node booted with systemd: %v, want the systemd path taken", err)
	}
	tg.Host = booted{noSystemd{n.h}, "broken"}
	if _, err := e.Apply(ctx, tg); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("a failed check: %v, want its error", err)
	}
	tg.Host = booted{noSystemd{n.h}, "no"}
	res, err := e.Apply(ctx, tg)
	if err != nil || res.Skipped {
		t.Fatalf("a node without systemd: %+v %v, want a signal reload", res, err)
	}
	if h := hitsDuring(t, n.listen, bs, 20); h[1] != 0 {
		t.Fatalf("after the detected signal reload: hits per backend %v", h)
	}
}

// The signal path reads the pid file in the same command as it lists or cuts the workers: a
// worker kept by a client across the reload is "shutting down" after it, and gone, with its
// client's connection, after CutOldWorkers.
func TestCutOldWorkersSignal(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	n, _, tg := signalNode(t, "bare-3")

	held, err := tls.Dial("tcp", n.listen, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test backend
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	e := Executor{Reload: ReloadSignal}
	if _, err := e.Apply(ctx, tg); err != nil {
		t.Fatal(err)
	}
	master := n.nginx.cmd.Process.Pid
	shuttingDown := func() int {
		out, _ := exec.Command("ps", "-o", "args=", "--ppid", strconv.Itoa(master)).Output()
		return strings.Count(string(out), "shutting down")
	}
	if shuttingDown() != 1 {
		t.Fatalf("after the reload, %d workers shutting down; want the one holding the client", shuttingDown())
	}
	// The reload wait's cheap listing sees the same workers, in the same states, as the full one.
	full, err := workers(ctx, tg.Host, master)
	if err != nil {
		t.Fatal(err)
	}
	cheap, err := reloadWorkers(ctx, tg.Host, master)
	if err != nil {
		t.Fatal(err)
	}
	states := func(ws []worker) map[int]bool {
		m := map[int]bool{}
		for _, w := range ws {
			m[w.pid] = w.shuttingDown
		}
		return m
	}
	if got, want := states(cheap), states(full); len(want) < 2 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reloadWorkers: %v, the full listing: %v", got, want)
	}
	if err := e.CutOldWorkers(ctx, tg.Host, tg.Paths); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for shuttingDown() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the old worker still runs 5 s after CutOldWorkers")
		}
		time.Sleep(50 * time.Millisecond)
	}
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the held connection is still open after the cut: %v", err)
	}
}

// A refused signal reload names the command and nginx's own message, not the script around
// it, and the old config is written back.
func TestSignalReloadRefused(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	n, _, tg := signalNode(t, "bare-4")
	before, err := os.ReadFile(tg.Paths.NginxConfig)
	if err != nil {
		t.Fatal(err)
	}
	// nginx stopped: no pid file, so `nginx -s reload` fails.
	if err := n.nginx.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(n.nginx.prefix, "logs", "nginx.pid")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(pidFile); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx did not stop")
		}
	}
	_, err = (&Executor{Reload: ReloadSignal}).Apply(ctx, tg)
	if err == nil || !strings.Contains(err.Error(), `"/usr/sbin/nginx -p`) || !strings.Contains(err.Error(), "-s reload") ||
		!strings.Contains(err.Error(), "nginx.pid") || strings.Contains(err.Error(), listedMark) || !strings.Contains(err.Error(), "old config restored") {
		t.Fatalf("Apply with nginx stopped: %v", err)
	}
	if after, _ := os.ReadFile(tg.Paths.NginxConfig); string(after) != string(before) {
		t.Fatalf("the config was left rewritten:\n%s", after)
	}
}

// signalNode is a real nginx proxy in front of two backends on a node without systemd, and
// the target that marks the second backend down.
// recording keeps the commands run and the files read on a host.
type recording struct {
	host.Host
	cmds, reads []string
}

// WriteFileThen keeps the write's command as one, as the host runs it.
func (r *recording) WriteFileThen(ctx context.Context, path string, data []byte, opts host.WriteOptions, then string) (host.WriteResult, host.ThenResult, error) {
	r.cmds = append(r.cmds, "write "+path+" then "+then)
	return machine.WriteThen(ctx, r.Host, path, data, opts, then)
}

func (r *recording) ReadFile(ctx context.Context, path string) ([]byte, error) {
	r.reads = append(r.reads, path)
	return r.Host.ReadFile(ctx, path)
}

func (r *recording) Run(ctx context.Context, cmd string) (host.Result, error) {
	r.cmds = append(r.cmds, cmd)
	return r.Host.Run(ctx, cmd)
}

func signalNode(t *testing.T, name string) (*node, []*backend, NodeTarget) {
	t.Helper()
	bs := startBackends(t, "127.0.0.2", "127.0.0.3")
	n := startNode(t, name, bs, false)
	tg := n.target(t, bs, []string{bs[1].addr})
	tg.Host = noSystemd{n.h}
	return n, bs, tg
}

// The signal reload's command waits on the node for the reload to settle: a master whose
// new worker comes up 0.5 s after the signal (and whose old one is gone then) is listed
// settled by the one command, not 0.1 s after the signal with the old worker still there.
func TestReloadListedWaitsOnTheNode(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is needed for the stand-in nginx master")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "nginx.pid")
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte("pid "+pidFile+";\nevents {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A stand-in master: its workers are children titled as nginx titles them; on SIGHUP
	// it starts a new one after 0.5 s and ends the old one.
	master := exec.Command("bash", "-c", `echo $$ > "$1"
spawn() { bash -c 'exec -a "nginx: worker process" sleep 60' & w=$!; }
spawn
trap 'sleep 0.5; old=$w; spawn; kill $old' HUP
trap 'kill $w; exit 0' TERM
while :; do sleep 0.05 & wait $!; done`, "master", pidFile)
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = master.Process.Signal(syscall.SIGTERM); _ = master.Wait() })
	// Ready once it lists one titled worker, as the reload will list it.
	bare := host.NewLocal("bare")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ws, err := reloadWorkers(ctx, bare, master.Process.Pid)
		if err == nil && len(ws) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in master has no titled worker: %v %v", ws, err)
		}
	}

	c := &signalController{h: bare, p: (&testNginx{prefix: dir, conf: conf}).paths("")}
	pid, before, after, err := c.reloadListed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pid != master.Process.Pid || len(before) != 1 {
		t.Fatalf("master %d, workers before %v; want %d and one worker", pid, before, master.Process.Pid)
	}
	if len(after) != 1 || after[0].pid == before[0].pid {
		t.Errorf("workers after the reload %v, want only a new one (old %d)", after, before[0].pid)
	}
}
