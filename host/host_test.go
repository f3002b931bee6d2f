package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host/machine"
)

// transports runs a test against both transports: the local one and SSH to a real sshd.
func transports(t *testing.T, f func(t *testing.T, h Host)) {
	t.Run("local", func(t *testing.T) { f(t, NewLocal("here")) })
	t.Run("ssh", func(t *testing.T) { f(t, startSSHD(t, "").dial(t)) })
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRun(t *testing.T) {
	transports(t, func(t *testing.T, h Host) {
		ctx := testCtx(t)
		res, err := h.Run(ctx, "echo out; echo err >&2")
		if err != nil {
			t.Fatal(err)
		}
		if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 0 {
			t.Errorf("Run = %q %q %d", res.Stdout, res.Stderr, res.ExitCode)
		}
		res, err = h.Run(ctx, "echo oops >&2; exit 3")
		var ce *CmdError
		if !errors.As(err, &ce) || ce.ExitCode != 3 || ce.Stderr != "oops\n" || ce.Host != h.Name() || ce.Cmd != "echo oops >&2; exit 3" {
			t.Fatalf("Run(exit 3) = %v, want *CmdError with exit 3 and stderr", err)
		}
		if res.ExitCode != 3 {
			t.Errorf("Result.ExitCode = %d", res.ExitCode)
		}
	})
}

func TestRunTimeoutKills(t *testing.T) {
	transports(t, func(t *testing.T, h Host) {
		ctx := testCtx(t)
		// A unique argument finds the process; "; true" keeps the shell as its parent so
		// the child must be killed too, not only the shell.
		marker := fmt.Sprintf("37.%d", time.Now().UnixNano()%1000000)
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := h.Run(short, "sleep "+marker+"; true")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Run = %v, want context.DeadlineExceeded", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, _ := NewLocal("check").Run(ctx, "pgrep -f '[s]leep "+marker+"' || true")
			if len(bytes.TrimSpace(res.Stdout)) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sleep %s still running after the timeout: pids %s", marker, res.Stdout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

func TestReadStat(t *testing.T) {
	transports(t, func(t *testing.T, h Host) {
		ctx := testCtx(t)
		dir := t.TempDir()
		file := filepath.Join(dir, "f")
		content := []byte("binary\x00\xff\nend")
		if err := os.WriteFile(file, content, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(file, 1234, 2345); err != nil {
			t.Fatal(err)
		}
		got, err := h.ReadFile(ctx, file)
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("ReadFile = %q, %v", got, err)
		}
		info, err := h.Stat(ctx, file)
		want := FileInfo{Path: file, Size: int64(len(content)), Mode: 0o640, UID: 1234, GID: 2345}
		if err != nil || info != want {
			t.Errorf("Stat = %+v, %v\nwant %+v", info, err, want)
		}
		info, err = h.Stat(ctx, dir)
		if err != nil || !info.IsDir || !info.Mode.IsDir() {
			t.Errorf("Stat(dir) = %+v, %v", info, err)
		}
		_, err = h.ReadFile(ctx, filepath.Join(dir, "missing"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(missing) = %v, want fs.ErrNotExist", err)
		}
		_, err = h.Stat(ctx, filepath.Join(dir, "missing"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(missing) = %v, want fs.ErrNotExist", err)
		}
	})
}

func TestWriteFile(t *testing.T) {
	transports(t, func(t *testing.T, h Host) {
		ctx := testCtx(t)
		dir := t.TempDir()
		file := filepath.Join(dir, "kube-nginx.conf")
		old := []byte("server 10.0.0.1:6443;\n")
		if err := os.WriteFile(file, old, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, 0o640|fs.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(file, 1234, 2345); err != nil {
			t.Fatal(err)
		}
		oldInfo, _ := os.Stat(file)
		newContent := []byte("server 10.0.0.1:6443 down;\n")

		res, err := h.WriteFile(ctx, file, newContent, WriteOptions{Backup: true})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Changed || res.OldSHA256 != sha256hex(old) || res.NewSHA256 != sha256hex(newContent) {
			t.Errorf("WriteResult = %+v", res)
		}
		if got, _ := os.ReadFile(file); !bytes.Equal(got, newContent) {
			t.Errorf("content = %q", got)
		}
		info, _ := h.Stat(ctx, file)
		if info.Mode != 0o640|fs.ModeSetgid || info.UID != 1234 || info.GID != 2345 {
			t.Errorf("after write: mode %v owner %d:%d, want the old file's -rw-r----- with setgid, 1234:2345", info.Mode, info.UID, info.GID)
		}
		if !strings.HasPrefix(res.Backup, file+".bak-") || len(res.Backup) != len(file+".bak-20060102T150405Z") {
			t.Fatalf("Backup = %q, want %s.bak-YYYYMMDDTHHMMSSZ", res.Backup, file)
		}
		if got, _ := os.ReadFile(res.Backup); !bytes.Equal(got, old) {
			t.Errorf("backup content = %q, want the old content", got)
		}
		bi, _ := h.Stat(ctx, res.Backup)
		if bi.Mode != 0o640|fs.ModeSetgid || bi.UID != 1234 || bi.GID != 2345 {
			t.Errorf("backup mode %v owner %d:%d, want the old file's", bi.Mode, bi.UID, bi.GID)
		}
		if st, _ := os.Stat(res.Backup); !st.ModTime().Equal(oldInfo.ModTime()) {
			t.Errorf("backup mtime %v, want the old file's %v", st.ModTime(), oldInfo.ModTime())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 2 {
			t.Errorf("folder holds %d files, want the file and its backup (no temp file left)", len(entries))
		}

		// Same content: nothing written, no backup.
		before, _ := os.Stat(file)
		res, err = h.WriteFile(ctx, file, newContent, WriteOptions{Backup: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed || res.Backup != "" || res.OldSHA256 != res.NewSHA256 {
			t.Errorf("identical WriteResult = %+v, want no change and no backup", res)
		}
		if after, _ := os.Stat(file); !os.SameFile(before, after) {
			t.Error("identical content replaced the file")
		}

		// A second backup in the same second gets its own name.
		res1, err1 := h.WriteFile(ctx, file, []byte("a\n"), WriteOptions{Backup: true})
		res2, err2 := h.WriteFile(ctx, file, []byte("b\n"), WriteOptions{Backup: true})
		if err1 != nil || err2 != nil || res1.Backup == res2.Backup || res1.Backup == "" || res2.Backup == "" {
			t.Errorf("two backups: %q %v, %q %v", res1.Backup, err1, res2.Backup, err2)
		}
		if got, _ := os.ReadFile(res2.Backup); string(got) != "a\n" {
			t.Errorf("second backup holds %q, want a", got)
		}

		// A new file takes opts.Mode, and no backup is made.
		newFile := filepath.Join(dir, "new.pem")
		res, err = h.WriteFile(ctx, newFile, []byte("key"), WriteOptions{Mode: 0o600, Backup: true})
		if err != nil || !res.Changed || res.Backup != "" || res.OldSHA256 != "" {
			t.Fatalf("new file: %+v, %v", res, err)
		}
		if st, _ := os.Stat(newFile); st.Mode() != 0o600 {
			t.Errorf("new file mode %v, want 0600", st.Mode())
		}
		// Through a symlink the target is replaced and the link kept.
		link := filepath.Join(dir, "link.conf")
		if err := os.Symlink(file, link); err != nil {
			t.Fatal(err)
		}
		if _, err := h.WriteFile(ctx, link, []byte("via link\n"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Lstat(link); fi.Mode()&fs.ModeSymlink == 0 {
			t.Error("the symlink was replaced by a file")
		}
		if got, _ := os.ReadFile(file); string(got) != "via link\n" {
			t.Errorf("target = %q", got)
		}
		// A missing folder is an error, not a panic or a partial write.
		if _, err := h.WriteFile(ctx, filepath.Join(dir, "nope", "f"), []byte("x"), WriteOptions{}); err == nil {
			t.Error("WriteFile into a missing folder succeeded")
		}
	})
}

func TestForEach(t *testing.T) {
	ctx := testCtx(t)
	var running, peak atomic.Int32
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	errs := ForEach(ctx, names, 3, func(ctx context.Context, name string) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // hold the slot so calls overlap
		if name == "c" || name == "f" {
			return errors.New("boom " + name)
		}
		return nil
	})
	if peak.Load() > 3 || peak.Load() < 2 {
		t.Errorf("peak concurrency %d, want 2..3", peak.Load())
	}
	if len(errs) != 2 || errs["c"] == nil || errs["f"] == nil {
		t.Errorf("errs = %v", errs)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var calls atomic.Int32
	errs = ForEach(cancelled, names, 2, func(ctx context.Context, name string) error {
		calls.Add(1)
		return nil
	})
	if calls.Load() != 0 || len(errs) != len(names) || !errors.Is(errs["a"], context.Canceled) {
		t.Errorf("cancelled: %d calls, errs %v", calls.Load(), errs)
	}

	vals, errs := Collect(ctx, names, 0, func(ctx context.Context, name string) (string, error) {
		return strings.ToUpper(name), nil
	})
	if len(errs) != 0 || len(vals) != len(names) || vals["g"] != "G" {
		t.Errorf("Collect = %v %v", vals, errs)
	}
}

func TestParseShow(t *testing.T) {
	st := parseShow("kube-apiserver.service", "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nFragmentPath=/etc/systemd/system/kube-apiserver.service\nDropInPaths=/etc/systemd/system/kube-apiserver.service.d/a.conf /run/x.conf\nMainPID=4242\n")
	want := UnitStatus{Name: "kube-apiserver.service", LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled",
		FragmentPath: "/etc/systemd/system/kube-apiserver.service", DropInPaths: []string{"/etc/systemd/system/kube-apiserver.service.d/a.conf", "/run/x.conf"}, MainPID: 4242}
	if st.Name != want.Name || st.LoadState != want.LoadState || st.MainPID != want.MainPID || strings.Join(st.DropInPaths, " ") != strings.Join(want.DropInPaths, " ") || st.FragmentPath != want.FragmentPath || st.UnitFileState != want.UnitFileState {
		t.Errorf("parseShow = %+v", st)
	}
	for in, want := range map[string]string{"etcd": "etcd.service", "kube-nginx.service": "kube-nginx.service", "multi-user.target": "multi-user.target", "kube-etcd": "kube-etcd.service"} {
		if got := unitName(in); got != want {
			t.Errorf("unitName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLocalSystemdWithoutSystemd(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs here; the lab test covers the D-Bus calls")
	}
	_, err := NewLocal("here").Systemd(testCtx(t))
	if err == nil || !strings.HasPrefix(err.Error(), "here: connect to systemd on the system bus: ") {
		t.Errorf("Systemd without a system bus = %v, want an error naming the host", err)
	}
}

// An existing empty file is read with its mode in the same command as a file with content
// (readStat): its old checksum is the empty one and its mode is kept.
func TestWriteOverEmptyFile(t *testing.T) {
	transports(t, func(t *testing.T, h Host) {
		file := filepath.Join(t.TempDir(), "empty")
		if err := os.WriteFile(file, nil, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, 0o640); err != nil {
			t.Fatal(err)
		}
		res, err := h.WriteFile(testCtx(t), file, []byte("x\n"), WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(file)
		if res.OldSHA256 != sha256hex(nil) || !res.Changed || fi.Mode().Perm() != 0o640 {
			t.Fatalf("old %s, changed %v, mode %v", res.OldSHA256, res.Changed, fi.Mode())
		}
	})
}

// A write given the content the caller read (Expect) checks it on the host as it replaces the
// file, and keeps the file's owner and mode as it finds them, with no read before.
func TestWriteExpect(t *testing.T) {
	transports(t, func(t *testing.T, h Host) {
		ctx := testCtx(t)
		dir := t.TempDir()
		file := filepath.Join(dir, "kube-nginx.conf")
		old := "server 10.0.0.1:6443;\n"
		if err := os.WriteFile(file, []byte(old), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, 0o640|fs.ModeSetgid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(file, 1234, 2345); err != nil {
			t.Fatal(err)
		}
		content := "server 10.0.0.1:6443 down;\n"

		stale := "server 10.0.0.9:6443;\n"
		if _, err := h.WriteFile(ctx, file, []byte(content), WriteOptions{Backup: true, Expect: &stale}); !errors.Is(err, ErrFileChanged) {
			t.Fatalf("WriteFile(expecting other content) = %v, want ErrFileChanged", err)
		}
		if _, err := h.WriteFile(ctx, filepath.Join(dir, "missing"), []byte(content), WriteOptions{Expect: &old}); !errors.Is(err, ErrFileChanged) {
			t.Fatalf("WriteFile(missing, expecting content) = %v, want ErrFileChanged", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a refused write created the file: %v", err)
		}

		res, err := h.WriteFile(ctx, file, []byte(content), WriteOptions{Backup: true, Expect: &old})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Changed || res.OldSHA256 != sha256hex([]byte(old)) || res.Backup == "" {
			t.Errorf("WriteResult = %+v", res)
		}
		if got, _ := os.ReadFile(file); string(got) != content {
			t.Errorf("content = %q", got)
		}
		if got, _ := os.ReadFile(res.Backup); string(got) != old {
			t.Errorf("backup holds %q", got)
		}
		info, err := h.Stat(ctx, file)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode != 0o640|fs.ModeSetgid || info.UID != 1234 || info.GID != 2345 {
			t.Errorf("after the write: mode %v, owner %d:%d; want -rw-r----- with setgid, 1234:2345", info.Mode, info.UID, info.GID)
		}
		// A file already as the temporary one is made (this user's, 0600) stays so.
		key := filepath.Join(dir, "key.pem")
		if err := os.WriteFile(key, []byte("old key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		oldKey := "old key\n"
		if _, err := h.WriteFile(ctx, key, []byte("new key\n"), WriteOptions{Expect: &oldKey}); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(key); fi.Mode() != 0o600 {
			t.Errorf("key.pem is %v after the write, want -rw-------", fi.Mode())
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".mastershrink-") {
				t.Errorf("temporary file left: %s", e.Name())
			}
		}
	})
}

// WriteThen runs its command once the file is in place, in the write's own command over SSH
// (locally, after it): the command sees the new file and no stdin, its output and exit are
// its own; a refused write runs nothing.
func TestWriteThen(t *testing.T) {
	transports(t, func(t *testing.T, h Host) {
		ctx := testCtx(t)
		dir := t.TempDir()
		file, ran := filepath.Join(dir, "nginx.conf"), filepath.Join(dir, "ran")
		old, content := "server 10.0.0.1:6443;\n", "server 10.0.0.1:6443 down;\n"
		if err := os.WriteFile(file, []byte(old), 0o644); err != nil {
			t.Fatal(err)
		}
		then := "touch " + shq(ran) + "; cat " + shq(file) + "; cat; echo to-stderr >&2; exit 3"

		stale := "server 10.0.0.9:6443;\n"
		if _, _, err := machine.WriteThen(ctx, h, file, []byte(content), WriteOptions{Expect: &stale}, then); !errors.Is(err, ErrFileChanged) {
			t.Fatalf("WriteThen(stale expectation) = %v, want ErrFileChanged", err)
		}
		if _, err := os.Stat(ran); err == nil {
			t.Fatal("the command ran after a refused write")
		}

		res, tr, err := machine.WriteThen(ctx, h, file, []byte(content), WriteOptions{Backup: true, Expect: &old}, then)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Changed || res.Backup == "" {
			t.Errorf("write result %+v, want changed with a backup", res)
		}
		if b, err := os.ReadFile(res.Backup); err != nil || string(b) != old {
			t.Errorf("backup %q: %q %v", res.Backup, b, err)
		}
		if string(tr.Result.Stdout) != content {
			t.Errorf("the command printed %q, want the new content alone (no stdin)", tr.Result.Stdout)
		}
		var ce *CmdError
		if !errors.As(tr.Err, &ce) || ce.ExitCode != 3 || !strings.Contains(ce.Stderr, "to-stderr") || ce.Cmd != then {
			t.Errorf("the command's error %v, want its own exit 3 and stderr", tr.Err)
		}
	})
}
