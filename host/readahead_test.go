package host

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// counted counts the commands and reads that reach the host under a ReadAhead.
type counted struct {
	Host
	runs, reads atomic.Int32
}

func (c *counted) Run(ctx context.Context, cmd string) (Result, error) {
	c.runs.Add(1)
	return c.Host.Run(ctx, cmd)
}

func (c *counted) ReadFile(ctx context.Context, path string) ([]byte, error) {
	c.reads.Add(1)
	return c.Host.ReadFile(ctx, path)
}

// ReadAhead answers its files and commands from one command, byte for byte as the host
// would (no trailing newline, an empty file, bytes that are not text, a missing file), and
// leaves to the host what it cannot answer exactly: an unreadable path, a failing command,
// anything it was not given.
func TestReadAhead(t *testing.T) {
	transports(t, func(t *testing.T, h Host) {
		ctx := testCtx(t)
		dir := t.TempDir()
		files := map[string]string{
			"nginx.conf": "stream {\n  server 10.0.0.1:6443;\n}\n",
			"no-newline": "last line",
			"empty":      "",
			"binary":     "\x00\xff\n\nmastershrink-\n",
		}
		var paths []string
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		missing, aDir := filepath.Join(dir, "missing"), filepath.Join(dir, "sub")
		if err := os.Mkdir(aDir, 0o700); err != nil {
			t.Fatal(err)
		}
		ls, fails := "ls -1 -- "+shq(dir)+" | grep -c .", "echo partial; exit 3"
		c := &counted{Host: h}
		ra := ReadAhead(ctx, c, append(paths, missing, aDir), []string{ls, fails})
		if n := c.runs.Load(); n != 1 {
			t.Fatalf("ReadAhead ran %d commands, want 1", n)
		}
		for name, want := range files {
			got, err := ra.ReadFile(ctx, filepath.Join(dir, name))
			if err != nil || string(got) != want {
				t.Errorf("ReadFile(%s) = %q, %v; want %q", name, got, err, want)
			}
		}
		if _, err := ra.ReadFile(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(missing) = %v, want fs.ErrNotExist", err)
		}
		res, err := ra.Run(ctx, ls)
		if err != nil || strings.TrimSpace(string(res.Stdout)) != "5" {
			t.Errorf("Run(ls) = %q, %v", res.Stdout, err)
		}
		if n, r := c.runs.Load(), c.reads.Load(); n != 1 || r != 0 {
			t.Errorf("answered reads reached the host: %d commands, %d reads", n, r)
		}

		// What it could not answer exactly is the host's.
		if _, err := ra.ReadFile(ctx, aDir); err == nil || c.reads.Load() != 1 {
			t.Errorf("ReadFile(a folder) = %v after %d reads of the host, want the host's error", err, c.reads.Load())
		}
		var ce *CmdError
		if _, err := ra.Run(ctx, fails); !errors.As(err, &ce) || ce.ExitCode != 3 || c.runs.Load() != 2 {
			t.Errorf("Run(failing) = %v, want the host's exit 3 from a second command", err)
		}
		if _, err := ra.Run(ctx, "true"); err != nil || c.runs.Load() != 3 {
			t.Errorf("Run(not read ahead) = %v, want it run on the host", err)
		}

		// A host that cannot run the one command is used as it is.
		broken := &counted{Host: h}
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		if got := ReadAhead(canceled, broken, paths, []string{ls}); got != Host(broken) {
			t.Errorf("ReadAhead on a canceled context wrapped the host")
		}
	})
}
