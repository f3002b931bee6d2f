package observe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/machine"
)

// ConnectionLostError is a call that failed because the host's SSH connection broke (an
// sshd restarted or killed, a network cut). The cached connection is dropped, so the next
// Cluster.Host dials again.
type ConnectionLostError struct {
	Host string
	Err  error // the call's own error
}

func (e *ConnectionLostError) Error() string {
	return fmt.Sprintf("%s: SSH connection lost (%s): rerun mastershrink apply to continue", e.Host, lostCause(e.Err))
}

func (e *ConnectionLostError) Unwrap() error { return e.Err }

// lostCause is the innermost error's text: the wrapping layers repeat the host and command,
// which the message says already, and hide the EOF that tells what happened.
func lostCause(err error) string {
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return "the command under way got no exit status"
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// probeTimeout bounds the check that tells a dead connection from a failed call.
const probeTimeout = 5 * time.Second

// liveHost is a cached host that notices its connection died. A dead SSH connection fails
// every call with errors of many shapes (io.EOF from a new session, a missing exit status
// for a command under way, a closed D-Bus connection), and so can a live one; so an error
// that is not plainly the command's or the file's own is followed by a cheap probe on the
// same connection, and only a probe that cannot open a session marks the connection dead.
type liveHost struct {
	host.Host
	c    *Cluster
	name string
	dead atomic.Bool
}

// check turns the error of a call into a *ConnectionLostError when the connection is dead.
func (h *liveHost) check(err error) error {
	if err == nil || !suspect(err) {
		return err
	}
	if !h.dead.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		_, perr := h.Host.Stat(ctx, "/")
		cancel()
		if !gone(perr) {
			return err
		}
		h.dead.Store(true)
		h.c.drop(h)
	}
	return &ConnectionLostError{Host: h.name, Err: err}
}

// suspect says whether an error may come from the connection rather than from the command,
// the file or the caller.
func suspect(err error) bool {
	var ce *host.CmdError
	switch {
	case errors.As(err, &ce), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, fs.ErrNotExist), errors.Is(err, host.ErrFileChanged):
		return false
	}
	return true
}

// gone says whether the probe's error means the connection is closed: the SSH client
// answers io.EOF for a new session on a closed connection, and net.ErrClosed once closed
// from this side.
func gone(err error) bool {
	return err != nil && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed))
}

func (h *liveHost) Run(ctx context.Context, cmd string) (host.Result, error) {
	res, err := h.Host.Run(ctx, cmd)
	return res, h.check(err)
}

func (h *liveHost) ReadFile(ctx context.Context, path string) ([]byte, error) {
	b, err := h.Host.ReadFile(ctx, path)
	return b, h.check(err)
}

func (h *liveHost) Stat(ctx context.Context, path string) (host.FileInfo, error) {
	fi, err := h.Host.Stat(ctx, path)
	return fi, h.check(err)
}

func (h *liveHost) WriteFile(ctx context.Context, path string, data []byte, opts host.WriteOptions) (host.WriteResult, error) {
	res, err := h.Host.WriteFile(ctx, path, data, opts)
	return res, h.check(err)
}

func (h *liveHost) WriteFileThen(ctx context.Context, path string, data []byte, opts host.WriteOptions, then string) (host.WriteResult, host.ThenResult, error) {
	res, tr, err := machine.WriteThen(ctx, h.Host, path, data, opts, then)
	tr.Err = h.check(tr.Err)
	return res, tr, h.check(err)
}

func (h *liveHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := h.Host.DialContext(ctx, network, addr)
	return conn, h.check(err)
}

func (h *liveHost) Systemd(ctx context.Context) (host.Systemd, error) {
	sd, err := h.Host.Systemd(ctx)
	if err != nil {
		return nil, h.check(err)
	}
	return &liveSystemd{Systemd: sd, h: h}, nil
}

// liveSystemd checks the errors of a host's unit manager as liveHost checks its own.
type liveSystemd struct {
	host.Systemd
	h *liveHost
}

func (s *liveSystemd) Status(ctx context.Context, unit string) (host.UnitStatus, error) {
	st, err := s.Systemd.Status(ctx, unit)
	return st, s.h.check(err)
}

func (s *liveSystemd) Start(ctx context.Context, unit string) error {
	return s.h.check(s.Systemd.Start(ctx, unit))
}

func (s *liveSystemd) Stop(ctx context.Context, unit string) error {
	return s.h.check(s.Systemd.Stop(ctx, unit))
}

func (s *liveSystemd) Restart(ctx context.Context, unit string) error {
	return s.h.check(s.Systemd.Restart(ctx, unit))
}

func (s *liveSystemd) Reload(ctx context.Context, unit string) error {
	return s.h.check(s.Systemd.Reload(ctx, unit))
}

func (s *liveSystemd) Enable(ctx context.Context, unit string) error {
	return s.h.check(s.Systemd.Enable(ctx, unit))
}

func (s *liveSystemd) Disable(ctx context.Context, unit string) error {
	return s.h.check(s.Systemd.Disable(ctx, unit))
}

func (s *liveSystemd) DaemonReload(ctx context.Context) error {
	return s.h.check(s.Systemd.DaemonReload(ctx))
}
