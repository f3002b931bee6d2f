package nodes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/host"
)

// DefaultKeyDirs are where the binary layouts keep private keys: the PKI of seed 003 and
// kubeasz (/etc/kubernetes/ssl, with the CA key on masters), etcd's, kubeadm's, the kubelet's.
var DefaultKeyDirs = []string{"/etc/kubernetes", "/etc/etcd", "/var/lib/kubelet/pki", "/opt/k8s/work"}

// LeftSecrets is what still holds a secret of the cluster on a host that left it.
type LeftSecrets struct {
	Host string `json:"host"`
	// KeyFiles hold a private key (PEM) or a kubeconfig's embedded client key.
	KeyFiles []string `json:"key_files,omitempty"`
	// DataDirs exist and hold cluster data (etcd's holds every Secret of the cluster).
	DataDirs []string `json:"data_dirs,omitempty"`
}

// Empty says whether nothing was found.
func (l LeftSecrets) Empty() bool { return len(l.KeyFiles) == 0 && len(l.DataDirs) == 0 }

// Warning is the line the final report prints for the host, "" when nothing was found.
func (l LeftSecrets) Warning() string {
	if l.Empty() {
		return ""
	}
	var parts []string
	if len(l.KeyFiles) > 0 {
		parts = append(parts, fmt.Sprintf("%d files with private keys (%s)", len(l.KeyFiles), strings.Join(l.KeyFiles, ", ")))
	}
	if len(l.DataDirs) > 0 {
		parts = append(parts, "data directories holding every Secret of the cluster ("+strings.Join(l.DataDirs, ", ")+")")
	}
	return fmt.Sprintf("%s left the cluster but still holds %s: remove them, or move them aside 0600, once the snapshot is verified",
		l.Host, strings.Join(parts, " and "))
}

// FindLeftSecrets lists the files under keyDirs (DefaultKeyDirs when nil) that hold a private
// key or an embedded client key, and which of dataDirs exist, on a host leaving the cluster.
// It reads names only, never a key. Each command has the timeout (host.DefaultCommandTimeout
// when 0).
func FindLeftSecrets(ctx context.Context, h host.Host, keyDirs, dataDirs []string, timeout time.Duration) (LeftSecrets, error) {
	if keyDirs == nil {
		keyDirs = DefaultKeyDirs
	}
	c := &cleaner{h: h, o: CleanupOptions{CommandTimeout: timeout}.withDefaults(), rep: &CleanupReport{}}
	out := LeftSecrets{Host: h.Name()}
	var present []string
	for _, d := range keyDirs {
		if _, err := c.stat(ctx, d); err == nil {
			present = append(present, d)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return out, fmt.Errorf("look for keys on %s: %w", h.Name(), err)
		}
	}
	if len(present) > 0 {
		cmd := "grep -rlE -e '-----BEGIN ([A-Z]+ )?PRIVATE KEY' -e 'client-key-data:' --"
		for _, d := range present {
			cmd += " " + shq(d)
		}
		res, err := host.RunTimeout(ctx, h, c.o.CommandTimeout, cmd)
		var ce *host.CmdError
		switch {
		case errors.As(err, &ce) && ce.ExitCode == 1: // grep found nothing
		case err != nil && !(errors.As(err, &ce) && len(res.Stdout) > 0): // exit 2 with matches: some file unreadable
			return out, fmt.Errorf("look for keys on %s: %w", h.Name(), err)
		}
		// Backups (FILE.bak-TIMESTAMP) count: they hold the same keys.
		for _, l := range strings.Split(string(res.Stdout), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out.KeyFiles = append(out.KeyFiles, l)
			}
		}
		slices.Sort(out.KeyFiles)
	}
	for _, d := range dataDirs {
		if _, err := c.stat(ctx, d); err == nil {
			out.DataDirs = append(out.DataDirs, d)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return out, fmt.Errorf("look for data directories on %s: %w", h.Name(), err)
		}
	}
	return out, nil
}

// WipeLeftSecrets removes what FindLeftSecrets found on a host that left the cluster: the key
// files are removed; each data directory is moved into aside (a folder made 0700, its content
// made private) when aside is set, else removed. It returns what it did, one line each. The
// caller proves first that the host serves nothing (no etcd member, no apiserver).
func WipeLeftSecrets(ctx context.Context, h host.Host, left LeftSecrets, aside string, timeout time.Duration) ([]string, error) {
	if timeout <= 0 {
		timeout = host.DefaultCommandTimeout
	}
	var done []string
	run := func(cmd string) error {
		_, err := host.RunTimeout(ctx, h, timeout, cmd)
		return err
	}
	for _, f := range left.KeyFiles {
		if err := run("rm -f -- " + shq(f)); err != nil {
			return done, fmt.Errorf("remove %s:%s: %w", h.Name(), f, err)
		}
		done = append(done, "removed "+f)
	}
	if len(left.DataDirs) > 0 && aside != "" {
		if err := run("mkdir -p -m 0700 -- " + shq(aside) + " && chmod 0700 -- " + shq(aside)); err != nil {
			return done, fmt.Errorf("make %s:%s: %w", h.Name(), aside, err)
		}
	}
	for _, d := range left.DataDirs {
		if aside == "" {
			if err := run("rm -rf -- " + shq(d)); err != nil {
				return done, fmt.Errorf("remove %s:%s: %w", h.Name(), d, err)
			}
			done = append(done, "removed "+d)
			continue
		}
		dest := aside + "/" + strings.ReplaceAll(strings.Trim(d, "/"), "/", "_")
		if err := run("mv -- " + shq(d) + " " + shq(dest) + " && chmod -R go-rwx -- " + shq(dest)); err != nil {
			return done, fmt.Errorf("move %s:%s aside: %w", h.Name(), d, err)
		}
		done = append(done, "moved "+d+" to "+dest+" (0700)")
	}
	return done, nil
}
