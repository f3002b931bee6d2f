package observe

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/sshdtest"
	"github.com/mastershrink/mastershrink/inventory"
)

// startSSHD runs a real OpenSSH server for one test (host/sshdtest) and returns an
// inventory whose host m1 logs in to it as root.
func startSSHD(t *testing.T) *inventory.Inventory {
	t.Helper()
	s := sshdtest.Start(t, "")
	return &inventory.Inventory{File: filepath.Join(s.Dir, "inventory.yaml"), Hosts: []inventory.Host{{
		Name: "m1", Address: "127.0.0.1", Roles: []inventory.Role{inventory.RoleMaster},
		SSH: inventory.SSH{User: "root", Port: s.Port, IdentityFile: s.ClientKey, KnownHosts: s.KnownHosts,
			ConnectTimeout: inventory.Duration(5 * time.Second)},
	}}}
}

// cutter dials through a relay it can cut from the far side, as when sshd dies or the
// network drops: the client then reads EOF, as it would from the host.
type cutter struct {
	mu    sync.Mutex
	dials int
	ends  []io.Closer
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	real, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	near, far := net.Pipe()
	go func() { io.Copy(far, real); far.Close() }()
	go func() { io.Copy(real, far); real.Close() }()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dials++
	c.ends = append(c.ends, real, far)
	return near, nil
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.ends {
		e.Close()
	}
	c.ends = nil
}

func TestHostConnectionLostRedials(t *testing.T) {
	inv := startSSHD(t)
	cut := &cutter{}
	c := Open(inv, Options{Dial: cut.dial})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	h1, err := c.Host(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := h1.Run(ctx, "echo hi"); err != nil || strings.TrimSpace(string(res.Stdout)) != "hi" {
		t.Fatalf("Run before the cut: %q, %v", res.Stdout, err)
	}
	// A command's own failure and a missing file say nothing of the connection.
	var ce *host.CmdError
	if _, err := h1.Run(ctx, "exit 3"); !errors.As(err, &ce) {
		t.Fatalf("Run(exit 3) = %v, want a CmdError", err)
	}
	if _, err := h1.ReadFile(ctx, "/nonexistent/file"); err == nil || isLost(err) {
		t.Fatalf("ReadFile of a missing file = %v, want its own error", err)
	}
	if again, _ := c.Host(ctx, "m1"); again != h1 || cut.dials != 1 {
		t.Fatalf("a live connection was replaced (%d dials)", cut.dials)
	}

	// A command under way when the connection is cut, and calls made after it.
	running := make(chan error, 1)
	go func() {
		_, err := h1.Run(ctx, "sleep 30")
		running <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		res, err := h1.Run(ctx, "pgrep -f '^sleep 30$' || true")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Stdout) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sleep 30 did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cut.cut()
	const want = "m1: SSH connection lost (EOF): rerun mastershrink apply to continue"
	for what, call := range map[string]func() error{
		"command under way": func() error { return <-running },
		"Run":               func() error { _, err := h1.Run(ctx, "true"); return err },
		"ReadFile":          func() error { _, err := h1.ReadFile(ctx, "/etc/hostname"); return err },
		"WriteFile": func() error {
			_, err := h1.WriteFile(ctx, filepath.Join(t.TempDir(), "x"), []byte("x"), host.WriteOptions{})
			return err
		},
		"DialContext": func() error { _, err := h1.DialContext(ctx, "tcp", "127.0.0.1:1"); return err },
	} {
		err := call()
		t.Logf("%s after the cut: %v", what, err)
		var lost *ConnectionLostError
		if !errors.As(err, &lost) || lost.Host != "m1" {
			t.Errorf("%s after the cut: %v, want a ConnectionLostError for m1", what, err)
			continue
		}
		if what != "command under way" && err.Error() != want {
			t.Errorf("%s after the cut: %q, want %q", what, err, want)
		}
		if what == "command under way" && err.Error() != "m1: SSH connection lost (the command under way got no exit status): rerun mastershrink apply to continue" {
			t.Errorf("%s after the cut: %q", what, err)
		}
	}

	h2, err := c.Host(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h1 || cut.dials != 2 {
		t.Fatalf("Host after the loss: same connection %v, %d dials; want a new one", h2 == h1, cut.dials)
	}
	if res, err := h2.Run(ctx, "echo again"); err != nil || strings.TrimSpace(string(res.Stdout)) != "again" {
		t.Fatalf("Run on the new connection: %q, %v", res.Stdout, err)
	}
}

func isLost(err error) bool {
	var lost *ConnectionLostError
	return errors.As(err, &lost)
}
