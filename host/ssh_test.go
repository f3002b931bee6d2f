package host

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/crypto/ssh"

	"github.com/mastershrink/mastershrink/host/sshdtest"
	"github.com/mastershrink/mastershrink/inventory"
)

func TestSSHDialContextTunnel(t *testing.T) {
	h := startSSHD(t, "").dial(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	conn, err := h.DialContext(testCtx(t), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Errorf("echo through the tunnel = %q, %v", line, err)
	}
	// A closed port on the far side is an error, not a hang.
	if _, err := h.DialContext(testCtx(t), "tcp", "127.0.0.1:"+strconv.Itoa(sshdtest.FreePort(t))); err == nil {
		t.Error("dial to a closed port through SSH succeeded")
	}
}

func run(t *testing.T, cmd string) {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
}

// suggested returns the command a message tells the operator to run after "prefix".
func suggested(t *testing.T, msg, prefix string) string {
	t.Helper()
	i := strings.Index(msg, prefix)
	if i < 0 {
		t.Fatalf("message does not say %q: %s", prefix, msg)
	}
	cmd := msg[i:]
	if j := strings.Index(cmd, ", then"); j >= 0 {
		cmd = cmd[:j]
	}
	return cmd
}

func TestSSHUnknownHostKey(t *testing.T) {
	s := startSSHD(t, "")
	cfg := s.config("m1")
	cfg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(cfg.KnownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Dial(testCtx(t), cfg)
	var hke *HostKeyError
	if !errors.As(err, &hke) || len(hke.Want) != 0 {
		t.Fatalf("Dial = %v, want an unknown-key *HostKeyError", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "m1") || !strings.Contains(msg, "is unknown") {
		t.Errorf("message: %s", msg)
	}
	// The way out the message gives works.
	keyscan := suggested(t, msg, "ssh-keyscan ")
	if want := fmt.Sprintf("ssh-keyscan -p %d 127.0.0.1 >> %s", s.Port, cfg.KnownHosts); keyscan != want {
		t.Errorf("suggests %q, want %q", keyscan, want)
	}
	run(t, keyscan)
	h, err := Dial(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("after the suggested ssh-keyscan: %v", err)
	}
	h.Close()

	// A missing known_hosts file is named, with the way to fill it.
	cfg.KnownHosts = filepath.Join(t.TempDir(), "none")
	if _, err := Dial(testCtx(t), cfg); err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "ssh-keyscan") {
		t.Errorf("missing known_hosts: %v", err)
	}
}

func TestSSHChangedHostKey(t *testing.T) {
	s := startSSHD(t, "")
	other := sshdtest.WriteKey(t, filepath.Join(t.TempDir(), "other"))
	cfg := s.config("m1")
	cfg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("# a comment\n[127.0.0.1]:%d %s", s.Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other))))
	if err := os.WriteFile(cfg.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Dial(testCtx(t), cfg)
	var hke *HostKeyError
	if !errors.As(err, &hke) || len(hke.Want) != 1 || hke.Want[0].Line != 2 {
		t.Fatalf("Dial = %v, want a changed-key *HostKeyError naming line 2", err)
	}
	msg := err.Error()
	for _, want := range []string{"CHANGED", "man-in-the-middle", fmt.Sprintf("%s:2", cfg.KnownHosts)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	remove := suggested(t, msg, "ssh-keygen -R ")
	if want := fmt.Sprintf("ssh-keygen -R '[127.0.0.1]:%d' -f %s", s.Port, cfg.KnownHosts); remove != want {
		t.Errorf("suggests %q, want %q", remove, want)
	}
	run(t, remove+" 2>/dev/null")
	run(t, suggested(t, msg[strings.Index(msg, "then add"):], "ssh-keyscan "))
	h, err := Dial(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("after the suggested ssh-keygen -R and ssh-keyscan: %v", err)
	}
	h.Close()
}

func TestSSHAuthRefused(t *testing.T) {
	s := startSSHD(t, "")
	cfg := s.config("m1")
	cfg.IdentityFile = filepath.Join(t.TempDir(), "wrong")
	sshdtest.WriteKey(t, cfg.IdentityFile)
	_, err := Dial(testCtx(t), cfg)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.User != "root" || !strings.Contains(err.Error(), "ssh.identity_file") {
		t.Errorf("wrong key: %v, want *AuthError", err)
	}
	cfg = s.config("m1")
	cfg.User = "nosuchuser"
	_, err = Dial(testCtx(t), cfg)
	if !errors.As(err, &ae) || ae.User != "nosuchuser" {
		t.Errorf("wrong user: %v, want *AuthError", err)
	}
	cfg = s.config("m1")
	cfg.IdentityFile = filepath.Join(t.TempDir(), "missing")
	if _, err = Dial(testCtx(t), cfg); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "identity file") {
		t.Errorf("missing identity file: %v", err)
	}
}

func TestSSHUnreachable(t *testing.T) {
	s := startSSHD(t, "")
	cfg := s.config("m3")
	cfg.Port = sshdtest.FreePort(t) // nothing listens there
	_, err := Dial(testCtx(t), cfg)
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Host != "m3" || ue.Address != "127.0.0.1:"+strconv.Itoa(cfg.Port) {
		t.Fatalf("closed port: %v, want *UnreachableError", err)
	}
	if !strings.Contains(err.Error(), "host m3 unreachable") {
		t.Errorf("message: %s", err)
	}

	// A port that accepts but never speaks SSH is bounded by the connection timeout.
	cfg.Port = sshdtest.Mute(t)
	cfg.ConnectTimeout = inventory.Duration(300 * time.Millisecond)
	_, err = Dial(testCtx(t), cfg)
	if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent port: %v, want *UnreachableError wrapping the deadline", err)
	}
}

func TestSSHJumpHost(t *testing.T) {
	target := startSSHD(t, "")
	jump := startSSHD(t, "")
	// One known_hosts and one key for both, as an operator would have.
	kh, _ := os.ReadFile(jump.KnownHosts)
	f, err := os.OpenFile(target.KnownHosts, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(kh)
	f.Close()
	run(t, fmt.Sprintf("cat %s/authorized_keys >> %s/authorized_keys", target.Dir, jump.Dir))

	cfg := target.config("m2")
	cfg.JumpHost = "root@127.0.0.1:" + strconv.Itoa(jump.Port)
	var dialled []string
	// The dialler only reaches the jump host, so the target can only be reached through it.
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialled = append(dialled, addr)
		if addr != jump.Addr {
			return nil, fmt.Errorf("test dialler: %s is only reachable through the jump host", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	h, err := Dial(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if len(dialled) != 1 || dialled[0] != jump.Addr {
		t.Errorf("dialled %v, want only the jump host", dialled)
	}
	res, err := h.Run(testCtx(t), "echo $SSH_CONNECTION")
	if err != nil {
		t.Fatal(err)
	}
	// The target sees the connection arrive at its own port.
	if f := strings.Fields(string(res.Stdout)); len(f) != 4 || f[3] != strconv.Itoa(target.Port) {
		t.Errorf("SSH_CONNECTION = %q, want the target's port %d", res.Stdout, target.Port)
	}

	// The target down behind a working jump host: unreachable, naming the jump.
	cfg.Port = sshdtest.FreePort(t)
	_, err = Dial(testCtx(t), cfg)
	var ue *UnreachableError
	if !errors.As(err, &ue) || ue.Via != cfg.JumpHost {
		t.Errorf("target down behind the jump: %v", err)
	}
	// The jump host down: unreachable, naming it.
	cfg.JumpHost = "127.0.0.1:" + strconv.Itoa(sshdtest.FreePort(t))
	cfg.Dial = nil
	_, err = Dial(testCtx(t), cfg)
	if !errors.As(err, &ue) || !strings.Contains(ue.Host, "jump host") {
		t.Errorf("jump down: %v", err)
	}
}

func TestConnect(t *testing.T) {
	s := startSSHD(t, "")
	dir := t.TempDir()
	// The inventory names the admin kubeconfig and checks it exists; this test needs none.
	if err := os.WriteFile(filepath.Join(dir, "admin.kubeconfig"), []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := fmt.Sprintf(`format_version: 1
cluster: test
kubeconfig: admin.kubeconfig
layout: seed003
ssh:
  identity_file: %s
  known_hosts: %s
hosts:
  - {name: m1, address: 127.0.0.1, roles: [etcd, master], ssh: {port: %d}}
  - {name: here, address: 127.0.0.2, roles: [worker], ssh: {local: true}}
`, s.ClientKey, s.KnownHosts, s.Port)
	file := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(file, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	i, err := inventory.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Connect(testCtx(t), i, "m1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, ok := h.(*sshHost); !ok || h.Name() != "m1" {
		t.Errorf("m1 = %T %s, want SSH", h, h.Name())
	}
	l, err := Connect(testCtx(t), i, "here", nil)
	if _, ok := l.(*local); err != nil || !ok {
		t.Errorf("here = %T %v, want local", l, err)
	}
	if _, err := Connect(testCtx(t), i, "m9", nil); err == nil || !strings.Contains(err.Error(), `"m9" is not in inventory`) {
		t.Errorf("unknown host: %v", err)
	}
}

// TestSSHDBusBridge checks the D-Bus transport the remote Systemd uses, through the real
// systemd-stdio-bridge over SSH, against a private dbus-daemon (this machine has no systemd
// to answer; the lab test covers the unit calls).
func TestSSHDBusBridge(t *testing.T) {
	for _, bin := range []string{"dbus-daemon", "systemd-stdio-bridge"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "bus")
	daemon := exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--address=unix:path="+sock)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dbus-daemon did not make its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}

	h := startSSHD(t, "").dial(t).(*sshHost)
	h.bridge = "exec systemd-stdio-bridge --bus-path=unix:path=" + sock
	ctx := testCtx(t)
	bus, err := h.dialBus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if names := bus.Names(); len(names) == 0 || !strings.HasPrefix(names[0], ":") {
		t.Errorf("no unique name after Hello: %v", names)
	}
	var names []string
	if err := bus.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		t.Fatal(err)
	}
	if !contains(names, "org.freedesktop.DBus") || !contains(names, bus.Names()[0]) {
		t.Errorf("ListNames = %v, want the bus and our own name", names)
	}

	// The whole Systemd: connects, and a call names the host and unit when systemd is absent.
	sd, err := h.Systemd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sd.(*dbusSystemd); !ok {
		t.Fatalf("Systemd = %T, want D-Bus", sd)
	}
	_, err = sd.Status(ctx, "kube-apiserver")
	var dbe godbus.Error
	if err == nil || !strings.Contains(err.Error(), "m1: status of kube-apiserver.service") || !errors.As(err, &dbe) {
		t.Errorf("Status without systemd on the bus = %v", err)
	}
	sd.Close()

	// No bridge on the host: systemctl over SSH instead.
	h.bridge = `echo "systemd-stdio-bridge not found" >&2; exit 127`
	sd, err = h.Systemd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sd.(*systemctl); !ok {
		t.Errorf("Systemd without a bridge = %T, want the systemctl fallback", sd)
	}
	// A bridge that dies otherwise is an error that quotes it.
	h.bridge = `echo "Failed to connect to bus: No such file or directory" >&2; exit 1`
	if _, err := h.Systemd(ctx); err == nil || !strings.Contains(err.Error(), "bridge said: Failed to connect to bus") {
		t.Errorf("broken bridge: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Every connection keeps its known_hosts database for its re-keys: one database per file
// version, shared, keeps that from growing with the hosts squared; a file changed between
// two Dials (a key added with ssh-keyscan) is read again.
func TestKnownHostsSharedUntilChanged(t *testing.T) {
	file := filepath.Join(t.TempDir(), "known_hosts")
	key := func(name string) string {
		k := sshdtest.WriteKey(t, filepath.Join(t.TempDir(), name))
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	}
	k1, k2 := key("k1"), key("k2")
	if err := os.WriteFile(file, []byte("10.0.0.1 "+k1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := loadKnownHosts(file)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := loadKnownHosts(file); err != nil || b != a {
		t.Fatalf("second load of an unchanged file = %p, %v; want the first one's %p", b, err, a)
	}

	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "10.0.0.2 %s\n", k2)
	f.Close()
	c, err := loadKnownHosts(file)
	if err != nil || c == a {
		t.Fatalf("load after a line was added = %p, %v; want a new database", c, err)
	}
	if got := c.algorithms("10.0.0.2:22"); len(got) != 1 || got[0] != ssh.KeyAlgoED25519 {
		t.Errorf("the added host's algorithms = %v, want [%s]", got, ssh.KeyAlgoED25519)
	}

	// Same size, same inode, another key: the modification time tells.
	if err := os.WriteFile(file, []byte("10.0.0.1 "+k2+"\n10.0.0.2 "+k1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	if d, err := loadKnownHosts(file); err != nil || d == c {
		t.Fatalf("load after a rewrite = %p, %v; want a new database", d, err)
	}

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKnownHosts(file); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("load of a removed file = %v, want does not exist", err)
	}
}

// run writes stdin straight to the channel: a payload past the channel's window (2 MiB)
// arrives whole, and a command that never reads its stdin still ends.
func TestSSHStdinPastTheWindow(t *testing.T) {
	h := startSSHD(t, "").dial(t)
	ctx := testCtx(t)
	data := make([]byte, 5<<20+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	file := filepath.Join(t.TempDir(), "big")
	if _, err := h.WriteFile(ctx, file, data, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("written %d bytes (%v), want the %d sent", len(got), err, len(data))
	}
	res, err := h.(*sshHost).run(ctx, "true", "true", bytes.NewReader(data))
	if err != nil || res.ExitCode != 0 {
		t.Errorf("a command not reading its stdin = %+v, %v", res, err)
	}
}

// pgidScript prints the process group of the shell that runs it, then its own pid.
const pgidScript = `read -r s < /proc/$$/stat; s=${s##*) }; set -- $s; echo "$3 $$"`

// Over SSH the wrapper leads its process group (sshd made it a session leader), so the
// command runs in that group, with no setsid of its own.
func TestKillableInSSHGroup(t *testing.T) {
	h := startSSHD(t, "").dial(t)
	res, err := h.Run(testCtx(t), pgidScript)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(res.Stdout))
	if len(f) != 2 || f[0] == f[1] {
		t.Fatalf("the command's process group and pid: %q; want it in the wrapper's group, not a group of its own", res.Stdout)
	}
}

// Where the wrapper does not lead its group, the command gets a group of its own, and the end
// of stdin kills that group and nothing else: here the wrapper shares this test's group.
func TestKillableOwnGroupElsewhere(t *testing.T) {
	marker := fmt.Sprintf("38.%d", time.Now().UnixNano()%1000000)
	c := exec.Command("sh", "-c", killable(pgidScript+"; sleep "+marker+"; true"))
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the command printed nothing: %v", err)
	}
	if f := strings.Fields(line); len(f) != 2 || f[0] != f[1] {
		t.Fatalf("the command's process group and pid: %q; want a group of its own", line)
	}
	stdin.Close()
	c.Wait()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, _ := exec.Command("sh", "-c", "pgrep -f '[s]leep "+marker+"' || true").Output()
		if len(bytes.TrimSpace(res)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep %s still running after stdin ended", marker)
		}
	}
	// Still here: the kill reached only the command's group.
}
