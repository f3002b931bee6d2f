package runner

import (
	"fmt"
	"strings"
	"time"
)

// StepResult is what happened to one step in this run.
type StepResult struct {
	ID       string        `json:"id"`
	Status   string        `json:"status"`
	Duration time.Duration `json:"duration"`
	Note     string        `json:"note,omitempty"`
}

// Summary is the outcome of a run.
type Summary struct {
	Steps    []StepResult  `json:"steps"`
	Duration time.Duration `json:"duration"`
	// Resumed is true when an earlier run of the plan had started changing the cluster.
	Resumed  bool      `json:"resumed"`
	Journal  string    `json:"journal"`
	Audit    string    `json:"audit"`
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// Count returns how many steps ended with status.
func (s Summary) Count(status string) int {
	n := 0
	for _, r := range s.Steps {
		if r.Status == status {
			n++
		}
	}
	return n
}

// Statuses of StepResult.
const (
	StatusDone    = statusDone
	StatusAlready = statusAlready
	StatusSkipped = statusSkipped
	StatusFailed  = statusFailed
)

// summary prints the end of a run: counts, the snapshot, the records, the warnings.
func (r *run) summary(sum Summary, err error) {
	var parts []string
	for _, s := range []string{StatusDone, StatusAlready, StatusSkipped, StatusFailed} {
		if n := sum.Count(s); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, strings.ToLower(s)))
		}
	}
	verb := "Applied"
	if err != nil {
		verb = "Stopped"
	}
	r.prog.printf("\n%s plan %s in %s: %s.\n", verb, short(r.p.Checksum), formatDuration(sum.Duration), strings.Join(parts, ", "))
	if sum.Snapshot != nil {
		r.prog.printf("  snapshot: %s (revision %d, %d keys; it contains every Secret of the cluster: keep it 0600, delete it when done)\n",
			sum.Snapshot.Path, sum.Snapshot.Revision, sum.Snapshot.Keys)
	}
	r.prog.printf("  journal:  %s\n  audit:    %s\n", sum.Journal, sum.Audit)
	if len(sum.Warnings) > 0 {
		r.prog.printf("  %d warning(s):\n", len(sum.Warnings))
		for _, w := range sum.Warnings {
			r.prog.printf("    - %s\n", w)
		}
	}
	if err != nil {
		r.prog.printf("  A rerun of the same command resumes from the failed step once its cause is fixed.\n")
	}
}
