package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

type local struct {
	name string
	now  func() time.Time
}

// NewLocal returns the machine mastershrink runs on: commands through /bin/sh -c, files
// through the os package, systemd on the local system bus.
func NewLocal(name string) Host {
	return &local{name: name, now: time.Now}
}

func (l *local) Name() string { return l.name }

func (l *local) Close() error { return nil }

func (l *local) Run(ctx context.Context, cmd string) (Result, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	// Its own process group, so a cancel kills the command's children too, not only the shell.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	start := time.Now()
	err := c.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Duration: time.Since(start), ExitCode: -1}
	if c.ProcessState != nil {
		res.ExitCode = c.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s: command %q: %w", l.name, cmd, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return res, &CmdError{Host: l.name, Cmd: cmd, ExitCode: res.ExitCode, Stderr: string(res.Stderr)}
	}
	if err != nil {
		return res, fmt.Errorf("%s: command %q: %w", l.name, cmd, err)
	}
	return res, nil
}

func (l *local) ReadFile(ctx context.Context, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: read %w", l.name, err)
	}
	return b, nil
}

func (l *local) Stat(ctx context.Context, path string) (FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileInfo{}, fmt.Errorf("%s: stat %w", l.name, err)
	}
	return fileInfo(path, fi), nil
}

func fileInfo(path string, fi fs.FileInfo) FileInfo {
	info := FileInfo{Path: path, Size: fi.Size(), Mode: fi.Mode(), IsDir: fi.IsDir(), UID: -1, GID: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.UID, info.GID = int(st.Uid), int(st.Gid)
	}
	return info
}

func (l *local) WriteFile(ctx context.Context, path string, data []byte, opts WriteOptions) (WriteResult, error) {
	res, err := l.writeFile(path, data, opts)
	if err != nil {
		return res, fmt.Errorf("%s: write %s: %w", l.name, path, err)
	}
	return res, nil
}

func (l *local) writeFile(path string, data []byte, opts WriteOptions) (WriteResult, error) {
	res := WriteResult{NewSHA256: sha256hex(data)}
	// Replace a symlink's target, not the link.
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	old, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	if opts.Expect != nil && (!exists || string(old) != *opts.Expect) {
		return res, ErrFileChanged
	}
	mode, uid, gid := fs.FileMode(defaultNewFileMode), -1, -1
	if exists {
		res.OldSHA256 = sha256hex(old)
		if bytes.Equal(old, data) && (opts.Mode == 0 || l.modeIs(path, opts.Mode)) {
			return res, nil
		}
		fi, err := os.Stat(path)
		if err != nil {
			return res, err
		}
		info := fileInfo(path, fi)
		mode, uid, gid = fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), info.UID, info.GID
	}
	if opts.Mode != 0 {
		mode = opts.Mode
	}
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+".mastershrink-*")
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := writeSynced(tmp, data, mode, uid, gid); err != nil {
		return res, err
	}
	if exists && opts.Backup {
		bak, err := backupLocal(path, l.now())
		if err != nil {
			return res, err
		}
		res.Backup = bak
	}
	if exists {
		now, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(now, old) {
			return res, ErrFileChanged
		}
	} else if _, err := os.Lstat(path); err == nil {
		return res, ErrFileChanged
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return res, err
	}
	res.Changed = true
	return res, syncDir(dir)
}

func (l *local) modeIs(path string, mode fs.FileMode) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm() == mode.Perm()
}

func writeSynced(f *os.File, data []byte, mode fs.FileMode, uid, gid int) error {
	_, err := f.Write(data)
	if err == nil && uid >= 0 {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		// After chown, which clears setuid bits.
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// backupLocal copies path to a free timestamped name, keeping mode, owner and times like cp -p.
func backupLocal(path string, now time.Time) (string, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return "", err
	}
	base := path + BackupSuffix(now)
	var dst *os.File
	var name string
	for n := 1; ; n++ {
		name = base
		if n > 1 {
			name = base + "-" + strconv.Itoa(n)
		}
		dst, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return "", err
	}
	info := fileInfo(path, fi)
	if err := writeSynced(dst, nil, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), info.UID, info.GID); err != nil {
		return "", err
	}
	if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
		return "", err
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (l *local) Systemd(ctx context.Context) (Systemd, error) {
	conn, err := sdbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to systemd on the system bus: %w", l.name, err)
	}
	return &dbusSystemd{host: l.name, conn: conn}, nil
}

func (l *local) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
