// Package hosttest is the fake host.Host of the unit tests: files in memory, units whose
// state changes as systemd would change it, a log of every action, and commands answered by
// a handler the test gives. Real hosts, SSH and systemd are tested in the lab (testenv).
package hosttest

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"sync"

	"github.com/mastershrink/mastershrink/host"
)

// Host is a fake host. The zero value with a Name is usable.
type Host struct {
	HostName string
	// Run answers commands; nil answers every command with exit 127.
	RunFunc func(cmd string) (host.Result, error)
	// RunContext, when set, answers commands instead of RunFunc, with the command's context:
	// a command that hangs (umount on a dead NFS server) waits on it.
	RunContext func(ctx context.Context, cmd string) (host.Result, error)
	// Dial makes the host's TCP connections; nil dials directly from this machine (the
	// loopback components of a test are reachable "from the host").
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Fail, when set, is asked before each systemd action on a unit ("start", "stop",
	// "restart", "reload", "enable", "disable"): an error fails the action, which then
	// changes nothing and is not logged.
	Fail func(verb, unit string) error

	mu      sync.Mutex
	files   map[string]string
	units   map[string]host.UnitStatus
	log     []string
	reads   map[string]int
	lastPID int
}

var _ host.Host = (*Host)(nil)

// New returns a fake host called name.
func New(name string) *Host { return &Host{HostName: name} }

// SetFile puts a file on the host.
func (h *Host) SetFile(path, content string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.files == nil {
		h.files = map[string]string{}
	}
	h.files[path] = content
}

// Remove removes a file, or a folder and everything under it, as `rm -rf` would (a handler
// given as RunFunc may call it).
func (h *Host) Remove(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prefix := strings.TrimSuffix(path, "/") + "/"
	for p := range h.files {
		if p == path || strings.HasPrefix(p, prefix) {
			delete(h.files, p)
		}
	}
}

// File returns a file's content and whether it exists.
func (h *Host) File(path string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.files[path]
	return c, ok
}

// SetUnit sets a unit's state (its Name is filled in).
func (h *Host) SetUnit(name string, st host.UnitStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.units == nil {
		h.units = map[string]host.UnitStatus{}
	}
	st.Name = name
	if st.LoadState == "" {
		st.LoadState = "loaded"
	}
	h.units[name] = st
}

// Unit returns a unit's state.
func (h *Host) Unit(name string) host.UnitStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unit(name)
}

func (h *Host) unit(name string) host.UnitStatus {
	if st, ok := h.units[name]; ok {
		return st
	}
	if st, ok := h.units[name+".service"]; ok {
		return st
	}
	return host.UnitStatus{Name: name, LoadState: "not-found", ActiveState: "inactive"}
}

// Log lists what was done, in order ("write /etc/x", "stop etcd.service", ...).
func (h *Host) Log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

// Commands lists the commands given to Run, in order.
func (h *Host) Commands() []string {
	var out []string
	for _, l := range h.Log() {
		if cmd, ok := strings.CutPrefix(l, "run "); ok {
			out = append(out, cmd)
		}
	}
	return out
}

// Reads says how many times path was read with ReadFile.
func (h *Host) Reads(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reads[path]
}

// newPID is a main PID no unit of the host had before (from 1000 up); h.mu is held.
func (h *Host) newPID() int {
	if h.lastPID < 1000 {
		h.lastPID = 1000
	}
	h.lastPID++
	return h.lastPID
}

func (h *Host) record(format string, args ...any) {
	h.log = append(h.log, fmt.Sprintf(format, args...))
}

func (h *Host) Name() string { return h.HostName }

func (h *Host) Run(ctx context.Context, cmd string) (host.Result, error) {
	h.mu.Lock()
	h.record("run %s", cmd)
	run, runCtx := h.RunFunc, h.RunContext
	h.mu.Unlock()
	if runCtx != nil {
		return runCtx(ctx, cmd)
	}
	if run == nil {
		return host.Result{ExitCode: 127}, &host.CmdError{Host: h.HostName, Cmd: cmd, ExitCode: 127, Stderr: "not available on the fake host"}
	}
	return run(cmd)
}

func (h *Host) ReadFile(_ context.Context, path string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reads == nil {
		h.reads = map[string]int{}
	}
	h.reads[path]++
	c, ok := h.files[path]
	if !ok {
		return nil, fmt.Errorf("%s: %s: %w", h.HostName, path, fs.ErrNotExist)
	}
	return []byte(c), nil
}

func (h *Host) Stat(_ context.Context, path string) (host.FileInfo, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.files[path]; ok {
		return host.FileInfo{Path: path, Size: int64(len(c)), Mode: 0o644}, nil
	}
	prefix := strings.TrimSuffix(path, "/") + "/"
	for p := range h.files {
		if strings.HasPrefix(p, prefix) {
			return host.FileInfo{Path: path, IsDir: true, Mode: fs.ModeDir | 0o755}, nil
		}
	}
	return host.FileInfo{}, fmt.Errorf("%s: %s: %w", h.HostName, path, fs.ErrNotExist)
}

func (h *Host) WriteFile(_ context.Context, path string, data []byte, opts host.WriteOptions) (host.WriteResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.files == nil {
		h.files = map[string]string{}
	}
	var res host.WriteResult
	old, existed := h.files[path]
	if opts.Expect != nil && (!existed || old != *opts.Expect) {
		return res, fmt.Errorf("%s: write %s: %w", h.HostName, path, host.ErrFileChanged)
	}
	if existed && old == string(data) {
		return res, nil
	}
	if existed && opts.Backup {
		res.Backup = path + ".bak-test"
		h.files[res.Backup] = old
	}
	h.files[path] = string(data)
	res.Changed = true
	h.record("write %s", path)
	return res, nil
}

func (h *Host) Systemd(context.Context) (host.Systemd, error) { return systemd{h}, nil }

func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if h.Dial != nil {
		return h.Dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (h *Host) Close() error { return nil }

// systemd changes unit states as systemd does and logs each call.
type systemd struct{ h *Host }

func (s systemd) change(unit, verb string, f func(*host.UnitStatus)) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	st := s.h.unit(unit)
	if st.LoadState == "not-found" && verb != "daemon-reload" {
		return fmt.Errorf("%s: %s %s: unit not found", s.h.HostName, verb, unit)
	}
	if s.h.Fail != nil {
		if err := s.h.Fail(verb, unit); err != nil {
			return fmt.Errorf("%s: %s %s: %w", s.h.HostName, verb, unit, err)
		}
	}
	f(&st)
	if s.h.units == nil {
		s.h.units = map[string]host.UnitStatus{}
	}
	s.h.units[st.Name] = st
	s.h.record("%s %s", verb, unit)
	return nil
}

func (s systemd) Status(_ context.Context, unit string) (host.UnitStatus, error) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.h.unit(unit), nil
}

// Start and Restart give the unit a new main PID, as systemd does.
func (s systemd) Start(_ context.Context, unit string) error {
	return s.change(unit, "start", func(st *host.UnitStatus) { st.ActiveState, st.SubState, st.MainPID = "active", "running", s.h.newPID() })
}

func (s systemd) Stop(_ context.Context, unit string) error {
	return s.change(unit, "stop", func(st *host.UnitStatus) { st.ActiveState, st.SubState, st.MainPID = "inactive", "dead", 0 })
}

func (s systemd) Restart(_ context.Context, unit string) error {
	return s.change(unit, "restart", func(st *host.UnitStatus) { st.ActiveState, st.SubState, st.MainPID = "active", "running", s.h.newPID() })
}

func (s systemd) Reload(_ context.Context, unit string) error {
	return s.change(unit, "reload", func(*host.UnitStatus) {})
}

func (s systemd) Enable(_ context.Context, unit string) error {
	return s.change(unit, "enable", func(st *host.UnitStatus) { st.UnitFileState = "enabled" })
}

func (s systemd) Disable(_ context.Context, unit string) error {
	return s.change(unit, "disable", func(st *host.UnitStatus) { st.UnitFileState = "disabled" })
}

func (s systemd) DaemonReload(context.Context) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.record("daemon-reload")
	return nil
}

func (systemd) Close() error { return nil }
