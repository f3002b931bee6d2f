package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// StartLab brings a lab up for one test and registers its teardown on t.Cleanup. It fails
// the test (it never skips) when the lab cannot be built: the lab is part of the test.
func StartLab(t testing.TB, opts Options) *Lab {
	t.Helper()
	if opts.Log == nil {
		opts.Log = testWriter{t}
	}
	if opts.OutDir == "" {
		opts.OutDir = t.TempDir()
	}
	if opts.Name == "" {
		// Packages' tests run in parallel: each test gets its own lab, never another's.
		opts.Name = derivedName(t.Name())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l, err := Up(ctx, opts)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		// The test's writer is dead once its cleanups run; teardown reports to stderr.
		l.Log = os.Stderr
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// derivedName names a lab after the test binary's package folder (and test), so concurrent
// test processes never clean up each other's labs.
func derivedName(test string) string {
	wd, _ := os.Getwd()
	sum := sha256.Sum256([]byte(wd + "\x00" + test))
	return "ms" + hex.EncodeToString(sum[:])[:8]
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

var (
	sharedMu   sync.Mutex
	sharedLabs = map[string]*Lab{}
)

// Shared brings up one lab for the tests of a package, from TestMain:
//
//	func TestMain(m *testing.M) {
//		lab, down, err := testenv.Shared(testenv.Options{Name: "mspkg"})
//		if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
//		code := m.Run()
//		down()
//		os.Exit(code)
//	}
//
// With no Name, the lab is named after the package folder. Calling it again with the same Name
// returns the same lab. Tests that change the cluster must
// leave it as they found it, or use StartLab with a name of their own.
func Shared(opts Options) (*Lab, func(), error) {
	if opts.Name == "" {
		// `go test ./...` runs packages at once: each package gets its own lab.
		opts.Name = derivedName("")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, nil, err
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if l, ok := sharedLabs[opts.Name]; ok {
		return l, func() {}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l, err := Up(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("shared lab %s: %w", opts.Name, err)
	}
	sharedLabs[opts.Name] = l
	var once sync.Once
	down := func() {
		once.Do(func() {
			sharedMu.Lock()
			delete(sharedLabs, opts.Name)
			sharedMu.Unlock()
			if err := l.Down(context.Background()); err != nil {
				fmt.Fprintf(os.Stderr, "shared lab %s down: %v\n", opts.Name, err)
			}
		})
	}
	return l, down, nil
}
