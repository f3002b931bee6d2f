package runner

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/mastershrink/mastershrink/internal/heartbeat"
)

// heartbeatEvery is how often a running step says it is still at work (a variable so that a
// test need not wait 10 s).
var heartbeatEvery = 10 * time.Second

// progress writes the per-step lines and heartbeats. Lines go out whole, under one lock, so
// a heartbeat never splits a step line.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	total    int
	width    int
}

func newProgress(w io.Writer, terminal bool, steps []string) *progress {
	if w == nil {
		w = io.Discard
	}
	width := 0
	for _, id := range steps {
		width = max(width, len(id))
	}
	return &progress{w: w, terminal: terminal, total: len(steps), width: width}
}

func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// Status words of the per-step line.
const (
	statusDone     = "done"
	statusAlready  = "already done"
	statusSkipped  = "skipped"
	statusFailed   = "FAILED"
	statusChecked  = "ok"
	statusDegraded = "warnings"
)

func (p *progress) color(status string) string {
	if !p.terminal {
		return status
	}
	switch status {
	case statusDone, statusChecked:
		return "\x1b[32m" + status + "\x1b[0m"
	case statusFailed:
		return "\x1b[31;1m" + status + "\x1b[0m"
	case statusDegraded:
		return "\x1b[33m" + status + "\x1b[0m"
	default:
		return "\x1b[2m" + status + "\x1b[0m"
	}
}

// step prints "[ 3/17] apiserver/update/m1   done          12.0s  note".
func (p *progress) step(n int, id, status string, d time.Duration, note string) {
	num := fmt.Sprintf("[%*d/%d]", len(fmt.Sprint(p.total)), n, p.total)
	dur := ""
	if d > 0 {
		dur = formatDuration(d)
	}
	line := fmt.Sprintf("%s %-*s  %s%s  %7s", num, p.width, id, p.color(status), strings.Repeat(" ", max(0, 13-len(status))), dur)
	if note != "" {
		line += "  " + note
	}
	p.printf("%s\n", strings.TrimRight(line, " "))
}

// heartbeat prints "still PHASE [00m20s elapsed]" every heartbeatEvery until stopped.
func (p *progress) heartbeat(phase string) (stop func()) {
	return p.heartbeatf(func() string { return phase })
}

// heartbeatf is heartbeat with the text asked of text each time: a concurrent phase's
// counts change while it runs.
func (p *progress) heartbeatf(text func() string) (stop func()) {
	return heartbeat.Start(context.Background(), heartbeatEvery, func(elapsed time.Duration) {
		p.printf("        still %s [%s elapsed]\n", text(), heartbeat.Elapsed(elapsed))
	})
}

// formatDuration is a step's duration: "0.4s", "12.0s", "1m05s".
func formatDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	s := int(d.Round(time.Second) / time.Second)
	return fmt.Sprintf("%dm%02ds", s/60, s%60)
}

// indent prefixes every line an executor writes, so its details sit under the step lines.
type indent struct {
	p *progress
}

func (w indent) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.p.printf("        %s\n", l)
	}
	return len(b), nil
}
