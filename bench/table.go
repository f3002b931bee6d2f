package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// ResultsFormatVersion is the version of the results file's layout.
const ResultsFormatVersion = 1

// Figure is one row of the table: mastershrink's figure, the alternative's, their ratio and
// mastershrink's peak memory, each over the runs.
type Figure struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Unit follows every value ("s", "MB/s", "").
	Unit   string `json:"unit"`
	Ours   *Stats `json:"mastershrink,omitempty"`
	Theirs *Stats `json:"alternative,omitempty"`
	// Alternative names what Theirs measures ("seed 003 by hand").
	Alternative string `json:"alternative_name,omitempty"`
	// Ratio is how many times better mastershrink did, run by run (above 1: better).
	Ratio     *Stats `json:"ratio,omitempty"`
	PeakRSSMB *Stats `json:"peak_rss_mb,omitempty"`
	Note      string `json:"note,omitempty"`
	// Detail rows are in the results file but not in the printed table.
	Detail bool `json:"detail,omitempty"`
	// Produced says how a row merged in from another run was produced (its command, date,
	// machine and commit); empty: as the results file says.
	Produced string `json:"produced,omitempty"`
}

// Results are what `make bench` measured.
type Results struct {
	FormatVersion int       `json:"format_version"`
	Generated     time.Time `json:"generated"`
	Runs          int       `json:"runs"`
	Command       string    `json:"command"`
	Machine       string    `json:"machine"`
	Commit        string    `json:"commit,omitempty"`
	Figures       []Figure  `json:"figures"`
	// ManualScript is the seed 003 procedure the alternative of the shrink ran.
	ManualScript string `json:"manual_script,omitempty"`
}

func statsOrNil(values []float64) *Stats {
	if s, ok := Summarize(values); ok {
		return &s
	}
	return nil
}

func fmtStats(s *Stats, unit string) string {
	if s == nil {
		return "-"
	}
	if unit != "" && unit != "x" {
		unit = " " + unit
	}
	return s.Format(unit)
}

// Render prints the table.
func (r Results) Render(w io.Writer) error {
	fmt.Fprintf(w, "mastershrink figures: median (min-max) of %d runs; %s\n", r.Runs, r.Machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tMASTERSHRINK\tALTERNATIVE\tRATIO\tPEAK RSS")
	for _, f := range r.Figures {
		if f.Detail {
			continue
		}
		alt := fmtStats(f.Theirs, f.Unit)
		if f.Theirs != nil && f.Alternative != "" {
			alt = f.Alternative + ": " + alt
		}
		ratio := "-"
		if f.Ratio != nil {
			ratio = fmtStats(f.Ratio, "x")
		}
		rss := "-"
		if f.PeakRSSMB != nil {
			rss = fmtStats(f.PeakRSSMB, "MB")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Title, fmtStats(f.Ours, f.Unit), alt, ratio, rss)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, f := range r.Figures {
		if f.Note != "" {
			notes = append(notes, fmt.Sprintf("  %s: %s", strings.TrimSpace(f.Title), f.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "notes:\n%s\n", strings.Join(notes, "\n"))
	}
	if _, err := fmt.Fprintf(w, "produced by: %s, %s at %s", r.Command, r.Generated.Format("2006-01-02"), r.Commit); err != nil {
		return err
	}
	// Rows merged from other runs, grouped by run, in the table's order.
	var runs []string
	ids := map[string][]string{}
	for _, f := range r.Figures {
		if f.Produced == "" || f.Detail {
			continue
		}
		if _, ok := ids[f.Produced]; !ok {
			runs = append(runs, f.Produced)
		}
		ids[f.Produced] = append(ids[f.Produced], f.ID)
	}
	if len(runs) > 0 {
		fmt.Fprint(w, "; except")
	}
	for _, p := range runs {
		fmt.Fprintf(w, "\n  %s: %s", strings.Join(collapseIDs(ids[p]), ", "), p)
	}
	_, err := fmt.Fprintln(w)
	return err
}

// Merge puts the figures of another run (from) whose ID has one of the prefixes (all of them
// when none is given) into r: each replaces r's figure of the same ID, or comes after the last
// figure of r that shares the part of its ID before the first dot, or at the end. Each merged
// figure records how it was produced (Produced).
func (r *Results) Merge(from Results, prefixes ...string) int {
	produced := fmt.Sprintf("%s, %s on %s at %s", from.Command, from.Generated.Format("2006-01-02"), from.Machine, from.Commit)
	n := 0
	for _, f := range from.Figures {
		if len(prefixes) > 0 && !hasAnyPrefix(f.ID, prefixes) {
			continue
		}
		if f.Produced == "" {
			f.Produced = produced
		}
		n++
		at, after := -1, -1
		group, _, _ := strings.Cut(f.ID, ".")
		for i, g := range r.Figures {
			if g.ID == f.ID {
				at = i
			}
			if gg, _, _ := strings.Cut(g.ID, "."); gg == group {
				after = i
			}
		}
		switch {
		case at >= 0:
			r.Figures[at] = f
		case after >= 0:
			r.Figures = append(r.Figures[:after+1], append([]Figure{f}, r.Figures[after+1:]...)...)
		default:
			r.Figures = append(r.Figures, f)
		}
	}
	return n
}

// collapseIDs writes a run of two or more IDs that differ only after their last dot as
// "PREFIX.*" (scale.0.apply, scale.0.failed: scale.0.*).
func collapseIDs(ids []string) []string {
	var out []string
	for i := 0; i < len(ids); {
		dot := strings.LastIndex(ids[i], ".")
		j := i + 1
		for dot > 0 && j < len(ids) && strings.LastIndex(ids[j], ".") == dot && ids[j][:dot] == ids[i][:dot] {
			j++
		}
		if j-i >= 2 {
			out = append(out, ids[i][:dot]+".*")
		} else {
			out = append(out, ids[i])
		}
		i = j
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// WriteJSON writes the results to path.
func (r Results) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}
