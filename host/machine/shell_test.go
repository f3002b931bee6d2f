package machine

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// shellHost runs commands in this machine's sh: enough of a Host for Quote and Resolve.
type shellHost struct{ Host }

func (shellHost) Run(ctx context.Context, cmd string) (Result, error) {
	out, err := exec.CommandContext(ctx, "sh", "-c", cmd).Output()
	return Result{Stdout: out}, err
}

func TestQuote(t *testing.T) {
	for _, s := range []string{"plain", "with space", "it's", `$(rm -rf /) "x" \n`, ""} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("Quote(%q): the shell gave %q (%v)", s, out, err)
		}
	}
}

// TestWord: every word comes back from the shell as it went in, and the plain ones stand bare.
func TestWord(t *testing.T) {
	for s, bare := range map[string]bool{
		"/var/lib/kubelet": true, "a-b_c.d=e:f@g%h+i,j": true, "": false, "two words": false,
		"it's": false, "$(id)": false, "*": false, "a;b": false, "~root": false, "x\ny": false,
	} {
		q := Word(s)
		if out, err := exec.Command("sh", "-c", "printf %s "+q).Output(); err != nil || string(out) != s {
			t.Errorf("Word(%q) = %s: the shell gave %q (%v)", s, q, out, err)
		}
		if (q == s) != bare {
			t.Errorf("Word(%q) = %s: bare %v, want %v", s, q, q == s, bare)
		}
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	if got, err := Resolve(ctx, shellHost{}, "10.0.0.7"); err != nil || !slices.Equal(got, []string{"10.0.0.7"}) {
		t.Errorf("an address: %v, %v", got, err)
	}
	got, err := Resolve(ctx, shellHost{}, "localhost")
	if err != nil || !slices.Contains(got, "127.0.0.1") && !slices.Contains(got, "::1") {
		t.Errorf("localhost resolved to %v (%v)", got, err)
	}
	if got, err := Resolve(ctx, shellHost{}, "no-such-host.invalid"); err != nil || len(got) != 0 {
		t.Errorf("a name that does not resolve: %v, %v; want none", got, err)
	}
}

func (shellHost) Name() string { return "local" }

// TestAfterChange: cmd's output comes back whole, the newest of the files (one named with a
// space and a quote) gives the mtime, and the clock is read after cmd has run.
func TestAfterChange(t *testing.T) {
	dir := t.TempDir()
	old, newest := filepath.Join(dir, "old"), filepath.Join(dir, "it's new")
	for f, at := range map[string]int64{old: 1_000_000, newest: 2_000_000} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, time.Unix(at, 0), time.Unix(at, 0)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now().Unix()
	out, now, mtime, err := AfterChange(t.Context(), shellHost{}, "sleep 1.1; echo 42; echo 43", []string{old, newest})
	if err != nil {
		t.Fatal(err)
	}
	if out != "42\n43\n" || mtime != 2_000_000 {
		t.Errorf("out %q, mtime %d: want \"42\\n43\\n\", 2000000", out, mtime)
	}
	if now < start+1 {
		t.Errorf("clock %d read before cmd ran (started at %d, cmd sleeps 1.1 s)", now, start)
	}
	if _, _, _, err := AfterChange(t.Context(), shellHost{}, "true", []string{filepath.Join(dir, "missing")}); err == nil || !strings.Contains(err.Error(), "local: unexpected output") {
		t.Errorf("missing file: %v, want unexpected output naming the host", err)
	}
}
