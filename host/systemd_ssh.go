package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/crypto/ssh"
)

// errNoBridge is a host without systemd-stdio-bridge.
var errNoBridge = errors.New("systemd-stdio-bridge not found")

// Systemd reaches the host's systemd over D-Bus the way `systemctl -H` does: an SSH channel
// runs systemd-stdio-bridge, which relays the D-Bus protocol between its stdin/stdout and
// the host's system bus. A host without the bridge gets systemctl over SSH instead.
func (h *sshHost) Systemd(ctx context.Context) (Systemd, error) {
	conn, err := sdbus.NewConnection(func() (*godbus.Conn, error) { return h.dialBus(ctx) })
	if errors.Is(err, errNoBridge) {
		return NewSystemctl(h), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: connect to systemd over D-Bus: %w", h.name, err)
	}
	return &dbusSystemd{host: h.name, conn: conn}, nil
}

// dialBus opens one D-Bus connection through the bridge, authenticated and past Hello.
func (h *sshHost) dialBus(ctx context.Context) (*godbus.Conn, error) {
	s, err := h.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open SSH session: %w", err)
	}
	stdin, err1 := s.StdinPipe()
	stdout, err2 := s.StdoutPipe()
	if err := errors.Join(err1, err2); err != nil {
		s.Close()
		return nil, err
	}
	stderr := &syncBuffer{}
	s.Stderr = stderr
	if err := s.Start("exec /bin/sh -c " + shq(h.bridge)); err != nil {
		s.Close()
		return nil, fmt.Errorf("start systemd-stdio-bridge: %w", err)
	}
	rwc := &sessionConn{Reader: stdout, w: stdin, s: s}
	// Not the caller's ctx: godbus would close the connection when it is done.
	bus, err := godbus.NewConn(rwc)
	if err != nil {
		rwc.Close()
		return nil, err
	}
	// Auth and Hello take no context; closing the session is how ctx bounds them.
	stop := context.AfterFunc(ctx, func() { bus.Close() })
	defer stop()
	// The bridge accepts anonymous clients, as its system-bus side is already the SSH user;
	// EXTERNAL is what sd-bus (systemctl -H) sends first.
	if err := bus.Auth([]godbus.Auth{godbus.AuthExternal("0"), godbus.AuthAnonymous()}); err != nil {
		bus.Close()
		return nil, bridgeError("authenticate to the bus through systemd-stdio-bridge", err, s, stderr)
	}
	if err := bus.Hello(); err != nil {
		bus.Close()
		return nil, bridgeError("hello to the bus through systemd-stdio-bridge", err, s, stderr)
	}
	return bus, nil
}

func bridgeError(what string, err error, s *ssh.Session, stderr *syncBuffer) error {
	// Let the bridge's last words arrive: Wait returns once stderr is copied.
	exited := make(chan struct{})
	go func() { s.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Contains(msg, "systemd-stdio-bridge not found") {
		return errNoBridge
	}
	if msg != "" {
		return fmt.Errorf("%s: %w (bridge said: %s)", what, err, msg)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// sessionConn is an SSH session's stdin and stdout as one stream for godbus.
type sessionConn struct {
	io.Reader
	w    io.WriteCloser
	s    *ssh.Session
	once sync.Once
}

func (c *sessionConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *sessionConn) Close() error {
	c.once.Do(func() {
		c.w.Close()
		c.s.Close()
	})
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 4096 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
