package host

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRunTimeout(t *testing.T) {
	h := NewLocal("w1")
	ctx := context.Background()

	// A command that would wait far longer than its deadline: killed, with the command and
	// the host named, and the whole process group gone (the sleep is a child of the shell).
	start := time.Now()
	res, err := RunTimeout(ctx, h, 300*time.Millisecond, "sleep 30; echo never")
	elapsed := time.Since(start)
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a TimeoutError, got %v", err)
	}
	for _, want := range []string{"w1", `"sleep 30; echo never"`, "timed out after 300ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if elapsed > 10*time.Second || strings.Contains(string(res.Stdout), "never") {
		t.Errorf("took %s, stdout %q: the command was not killed at its deadline", elapsed, res.Stdout)
	}

	// Within the deadline: the result, and a non-zero exit is still a CmdError.
	res, err = RunTimeout(ctx, h, 10*time.Second, "echo ok")
	if err != nil || strings.TrimSpace(string(res.Stdout)) != "ok" {
		t.Errorf("quick command: %v %q", err, res.Stdout)
	}
	var ce *CmdError
	if _, err := RunTimeout(ctx, h, 10*time.Second, "exit 3"); !errors.As(err, &ce) || ce.ExitCode != 3 {
		t.Errorf("failing command: %v", err)
	}

	// The caller's cancel is not a timeout of the command.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if _, err := RunTimeout(cctx, h, 10*time.Second, "sleep 30"); errors.As(err, &te) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled by the caller: %v", err)
	}

	// WithTimeout names what it ran.
	_, err = WithTimeout(ctx, h, 50*time.Millisecond, "stat /mnt/nfs", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if !errors.As(err, &te) || !strings.Contains(err.Error(), `"stat /mnt/nfs" timed out after 50ms`) {
		t.Errorf("WithTimeout: %v", err)
	}
}
