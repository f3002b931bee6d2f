package etcd_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mastershrink/mastershrink/etcd"
)

// The snapshot holds every Secret of the cluster: its folder is made 0700, and an existing
// folder others could reach, or a link that could send it elsewhere, is refused and left as
// it was.
func TestEnsureSnapshotDir(t *testing.T) {
	old := syscall.Umask(0o277) // a umask that would leave a new folder unwritable
	defer syscall.Umask(old)
	base := t.TempDir()

	fresh := filepath.Join(base, "a", "snapshots")
	if err := etcd.CheckSnapshotDir(fresh); err != nil {
		t.Errorf("check of a folder still to make: %v", err)
	}
	if err := etcd.EnsureSnapshotDir(fresh); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(fresh); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("new folder: %v, mode %v, want 0700", err, fi.Mode())
	}
	if err := etcd.EnsureSnapshotDir(fresh); err != nil {
		t.Errorf("existing 0700 folder: %v", err)
	}
	syscall.Umask(old)

	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o755)
	err := etcd.EnsureSnapshotDir(open)
	if !errors.Is(err, etcd.ErrSnapshotDirNotPrivate) || !strings.Contains(err.Error(), "0755") || !strings.Contains(err.Error(), "chmod 700 "+open) {
		t.Errorf("0755 folder: %v", err)
	}
	if fi, _ := os.Stat(open); fi.Mode().Perm() != 0o755 {
		t.Errorf("the operator's folder was changed to %v", fi.Mode().Perm())
	}

	private := filepath.Join(base, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	if err := etcd.EnsureSnapshotDir(link); !errors.Is(err, etcd.ErrSnapshotDirNotPrivate) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("symlink to a private folder: %v", err)
	}

	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := etcd.CheckSnapshotDir(file); !errors.Is(err, etcd.ErrSnapshotDirNotPrivate) || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("a file: %v", err)
	}

	// /tmp is 1777: refused, never tightened.
	if fi, err := os.Stat("/tmp"); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := etcd.EnsureSnapshotDir("/tmp"); !errors.Is(err, etcd.ErrSnapshotDirNotPrivate) {
			t.Errorf("/tmp: %v", err)
		}
		if after, _ := os.Stat("/tmp"); after.Mode() != fi.Mode() {
			t.Errorf("/tmp changed from %v to %v", fi.Mode(), after.Mode())
		}
	}
}
