package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := interruptible(context.Background())
	defer stop()
	root := newRootCmd(defaultStreams())
	root.SetArgs(os.Args[1:])
	err := root.ExecuteContext(ctx)
	code := report(ctx, err, os.Stderr)
	stop()
	os.Exit(code)
}

// interruptedError is the cause of the command's context when a signal stopped it.
type interruptedError struct{ sig os.Signal }

func (e interruptedError) Error() string { return "interrupted by " + e.sig.String() }

// interruptible returns a context cancelled by the first SIGINT or SIGTERM, with the
// signal as its cause. A second signal gets the default action, so an operator can still
// kill a run that does not stop.
func interruptible(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			signal.Stop(sigs)
			cancel(interruptedError{s})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		select {
		case <-done:
		default:
			close(done)
		}
		cancel(nil)
	}
}

// report prints the error and returns the exit code. A command that failed because the
// operator interrupted it says so, with the way on, instead of the error the cancellation
// caused (which names whichever host was being talked to): 130 for SIGINT and 143 for
// SIGTERM, as shells report them.
func report(ctx context.Context, err error, stderr io.Writer) int {
	var in interruptedError
	if err != nil && errors.As(context.Cause(ctx), &in) {
		fmt.Fprintln(stderr, "error: interrupted; run the same command to continue")
		if in.sig == syscall.SIGTERM {
			return 128 + int(syscall.SIGTERM)
		}
		return 128 + int(syscall.SIGINT)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
	}
	return exitCode(err)
}
