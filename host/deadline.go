package host

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultCommandTimeout bounds a command that should take seconds: long enough for a slow
// disk, short enough that a hung NFS mount or a wedged daemon does not hold the cluster lock.
const DefaultCommandTimeout = 60 * time.Second

// TimeoutError is a command stopped because it ran past its deadline. It wraps
// context.DeadlineExceeded.
type TimeoutError struct {
	Host  string
	Cmd   string
	After time.Duration
}

func (e *TimeoutError) Error() string {
	cmd := e.Cmd
	if len(cmd) > 200 {
		cmd = cmd[:200] + "..."
	}
	return fmt.Sprintf("%s: command %q timed out after %s and was killed (a hung mount, a wedged daemon or a held lock on the host can cause this; run it there by hand to see where it waits)",
		e.Host, cmd, e.After)
}

func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// RunTimeout runs cmd on h, killing it after d (DefaultCommandTimeout when d <= 0). Past the
// deadline it returns *TimeoutError naming the command and the host; a ctx that ends first
// returns ctx's own error, so a cancelled run is not reported as a slow command.
func RunTimeout(ctx context.Context, h Host, d time.Duration, cmd string) (Result, error) {
	if d <= 0 {
		d = DefaultCommandTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	res, err := h.Run(cctx, cmd)
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return res, &TimeoutError{Host: h.Name(), Cmd: cmd, After: d}
	}
	return res, err
}

// WithTimeout runs fn (a Stat, a systemd call) with a context that ends after d
// (DefaultCommandTimeout when d <= 0), and names what timed out the way RunTimeout does.
func WithTimeout[T any](ctx context.Context, h Host, d time.Duration, what string, fn func(ctx context.Context) (T, error)) (T, error) {
	if d <= 0 {
		d = DefaultCommandTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := fn(cctx)
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return v, &TimeoutError{Host: h.Name(), Cmd: what, After: d}
	}
	return v, err
}
