//go:build faultinject

package runner

import (
	"os"
	"syscall"
	"time"
)

// Fault injection for the crash-resume tests, compiled in only with -tags faultinject so a
// stray environment variable can never kill a real apply:
//
//	MASTERSHRINK_CRASH_AFTER=<step-id>  SIGKILL right after the step's end (or its skip, when
//	                                    already done) is journaled
//	MASTERSHRINK_CRASH_IN=<step-id>     SIGKILL in the middle of the step, a delay after it
//	                                    starts (MASTERSHRINK_CRASH_IN_DELAY, default 3s)
//	MASTERSHRINK_PAUSE_AFTER=<step-id>  after the step's end, wait while the file named by
//	                                    MASTERSHRINK_PAUSE_FILE exists (at most 5 minutes), so a
//	                                    test can act on the cluster between two steps
//
// SIGKILL leaves no chance to clean up, as a power cut or an OOM kill would not: the lock
// stays until its lease expires and the journal may end in a half line.
const (
	envCrashAfter   = "MASTERSHRINK_CRASH_AFTER"
	envCrashIn      = "MASTERSHRINK_CRASH_IN"
	envCrashInDelay = "MASTERSHRINK_CRASH_IN_DELAY"
	envPauseAfter   = "MASTERSHRINK_PAUSE_AFTER"
	envPauseFile    = "MASTERSHRINK_PAUSE_FILE"
)

func kill() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }

func crashAfter(id string) {
	if v := os.Getenv(envCrashAfter); v != "" && v == id {
		kill()
	}
}

func crashIn(id string) (stop func()) {
	if v := os.Getenv(envCrashIn); v == "" || v != id {
		return func() {}
	}
	delay := 3 * time.Second
	if d, err := time.ParseDuration(os.Getenv(envCrashInDelay)); err == nil {
		delay = d
	}
	t := time.AfterFunc(delay, kill)
	return func() { t.Stop() }
}

func pauseAfter(id string) {
	f := os.Getenv(envPauseFile)
	if v := os.Getenv(envPauseAfter); v == "" || v != id || f == "" {
		return
	}
	for end := time.Now().Add(5 * time.Minute); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(f); err != nil {
			return
		}
	}
}
