package machine

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"time"
)

// Host is one machine of the cluster, reached over SSH or locally. It is the only way the
// rest of mastershrink touches a machine.
type Host interface {
	// Name is the inventory name of the host (for messages and journals).
	Name() string
	// Run runs a shell command. A non-zero exit returns *CmdError with the result filled.
	Run(ctx context.Context, cmd string) (Result, error)
	// ReadFile returns a file's content. A missing file returns an error wrapping fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Stat describes a file. A missing file returns an error wrapping fs.ErrNotExist.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// WriteFile replaces a file atomically (temp file in the same folder, fsync, rename),
	// keeping the old file's mode and owner unless opts say otherwise, and first copying the
	// old file to a timestamped backup when opts.Backup is set.
	WriteFile(ctx context.Context, path string, data []byte, opts WriteOptions) (WriteResult, error)
	// Systemd returns the host's unit manager (D-Bus; remote hosts through systemd-stdio-bridge).
	Systemd(ctx context.Context) (Systemd, error)
	// DialContext opens a TCP connection from the host's point of view (an SSH tunnel for
	// remote hosts), so "127.0.0.1:8443" means the host's own loopback.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	Close() error
}

// Result is the outcome of a command.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
	Duration time.Duration
}

// CmdError is a command that ran and exited non-zero.
type CmdError struct {
	Host     string
	Cmd      string
	ExitCode int
	Stderr   string
}

func (e *CmdError) Error() string {
	msg := e.Stderr
	if len(msg) > 500 {
		msg = msg[:500] + "..."
	}
	return fmt.Sprintf("%s: command %q exited %d: %s", e.Host, e.Cmd, e.ExitCode, msg)
}

// FileInfo describes a file on a host.
type FileInfo struct {
	Path  string
	Size  int64
	Mode  fs.FileMode
	UID   int
	GID   int
	IsDir bool
}

// WriteOptions control WriteFile.
type WriteOptions struct {
	// Mode for a new file; an existing file keeps its own mode when Mode is 0.
	Mode fs.FileMode
	// Backup copies an existing file to PATH.bak-<UTC timestamp> before replacing it.
	Backup bool
	// Expect, when set, is the content the caller has just read from the file: the write
	// does not read it again, and is refused (host.ErrFileChanged) unless the file exists and
	// holds exactly Expect when it is replaced. The file keeps its owner and mode as the
	// write finds them. Over SSH that is one command per write instead of two.
	Expect *string
}

// WriteResult reports what WriteFile did.
type WriteResult struct {
	// Backup is the backup's path, empty when no backup was made (no old file, or not asked).
	Backup string
	// Changed is false when the file already held exactly data (nothing was written).
	Changed bool
	// OldSHA256 and NewSHA256 are hex digests; OldSHA256 is empty for a new file.
	OldSHA256 string
	NewSHA256 string
}

// UnitStatus is what systemd says of a unit.
type UnitStatus struct {
	Name          string
	LoadState     string // loaded, not-found, masked
	ActiveState   string // active, inactive, failed, activating, deactivating
	SubState      string
	UnitFileState string // enabled, disabled, static, masked, ""
	FragmentPath  string
	DropInPaths   []string
	MainPID       int
}

// Systemd controls the units of one host. Every call waits for its job to finish.
type Systemd interface {
	Status(ctx context.Context, unit string) (UnitStatus, error)
	Start(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	Restart(ctx context.Context, unit string) error
	// Reload asks the unit to reload its configuration (ExecReload), never restarting it.
	Reload(ctx context.Context, unit string) error
	Enable(ctx context.Context, unit string) error
	Disable(ctx context.Context, unit string) error
	DaemonReload(ctx context.Context) error
	Close() error
}

// FileChange is a planned rewrite of one file on one host: the exact content before and after.
type FileChange struct {
	Host   string `json:"host"`
	Path   string `json:"path"`
	Before string `json:"before"`
	After  string `json:"after"`
}
