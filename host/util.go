package host

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/mastershrink/mastershrink/host/machine"
)

// shq quotes s for a POSIX shell.
var shq = machine.Quote

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// BackupSuffix is the part WriteFile appends to a file's path to name its backup.
func BackupSuffix(t time.Time) string {
	return ".bak-" + t.UTC().Format("20060102T150405Z")
}

// defaultNewFileMode is the mode of a file WriteFile creates when opts.Mode is 0.
const defaultNewFileMode = 0o644

var (
	_ Host    = (*local)(nil)
	_ Host    = (*sshHost)(nil)
	_ Systemd = (*dbusSystemd)(nil)
	_ Systemd = (*systemctl)(nil)
)
