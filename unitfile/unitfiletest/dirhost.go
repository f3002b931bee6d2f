// Package unitfiletest provides a host.Host that reads files from a folder on this machine,
// for tests of code that reads unit files. It is only for file reading: systemd answers with
// canned statuses, and real systemd behaviour is tested in the lab.
package unitfiletest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/mastershrink/mastershrink/host"
)

// DirHost is a host whose "/" is Root. Statuses holds what Systemd().Status answers per unit
// name ("kube-apiserver.service"); a unit without an entry is reported not-found.
type DirHost struct {
	HostName string
	Root     string
	Statuses map[string]host.UnitStatus
}

var _ host.Host = (*DirHost)(nil)

// ErrNotSupported is returned by the operations DirHost does not offer.
var ErrNotSupported = errors.New("not supported by the test host")

func (h *DirHost) Name() string { return h.HostName }

func (h *DirHost) path(p string) string { return filepath.Join(h.Root, filepath.FromSlash(p)) }

func (h *DirHost) Run(_ context.Context, cmd string) (host.Result, error) {
	return host.Result{}, &host.CmdError{Host: h.HostName, Cmd: cmd, ExitCode: 127, Stderr: ErrNotSupported.Error()}
}

func (h *DirHost) ReadFile(_ context.Context, p string) ([]byte, error) {
	b, err := os.ReadFile(h.path(p))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.HostName, err)
	}
	return b, nil
}

func (h *DirHost) Stat(_ context.Context, p string) (host.FileInfo, error) {
	fi, err := os.Stat(h.path(p))
	if err != nil {
		return host.FileInfo{}, fmt.Errorf("%s: %w", h.HostName, err)
	}
	return host.FileInfo{Path: p, Size: fi.Size(), Mode: fi.Mode(), IsDir: fi.IsDir()}, nil
}

// WriteFile writes under Root (no backup folder games: Backup copies to PATH.bak-test).
func (h *DirHost) WriteFile(_ context.Context, p string, data []byte, opts host.WriteOptions) (host.WriteResult, error) {
	full := h.path(p)
	var res host.WriteResult
	old, err := os.ReadFile(full)
	if opts.Expect != nil && (err != nil || string(old) != *opts.Expect) {
		return res, fmt.Errorf("%s: write %s: %w", h.HostName, p, host.ErrFileChanged)
	}
	if err == nil {
		sum := sha256.Sum256(old)
		res.OldSHA256 = hex.EncodeToString(sum[:])
		if string(old) == string(data) {
			res.NewSHA256 = res.OldSHA256
			return res, nil
		}
		if opts.Backup {
			res.Backup = p + ".bak-test"
			if err := os.WriteFile(h.path(res.Backup), old, 0o600); err != nil {
				return res, err
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	if err := os.WriteFile(full, data, mode); err != nil {
		return res, err
	}
	sum := sha256.Sum256(data)
	res.NewSHA256 = hex.EncodeToString(sum[:])
	res.Changed = true
	return res, nil
}

func (h *DirHost) Systemd(context.Context) (host.Systemd, error) { return cannedSystemd{h}, nil }

func (h *DirHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (h *DirHost) Close() error { return nil }

type cannedSystemd struct{ h *DirHost }

func (s cannedSystemd) Status(_ context.Context, unit string) (host.UnitStatus, error) {
	st, ok := s.h.Statuses[unit]
	if !ok {
		return host.UnitStatus{Name: unit, LoadState: "not-found", ActiveState: "inactive"}, nil
	}
	st.Name = unit
	return st, nil
}
func (cannedSystemd) Start(context.Context, string) error   { return ErrNotSupported }
func (cannedSystemd) Stop(context.Context, string) error    { return ErrNotSupported }
func (cannedSystemd) Restart(context.Context, string) error { return ErrNotSupported }
func (cannedSystemd) Reload(context.Context, string) error  { return ErrNotSupported }
func (cannedSystemd) Enable(context.Context, string) error  { return ErrNotSupported }
func (cannedSystemd) Disable(context.Context, string) error { return ErrNotSupported }
func (cannedSystemd) DaemonReload(context.Context) error    { return ErrNotSupported }
func (cannedSystemd) Close() error                          { return nil }
