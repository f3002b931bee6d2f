package plan

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	host "github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/internal/diff"
)

// summarize is the one-line summary: counts of what the plan does and where it turns
// irreversible.
func summarize(p *Plan) string {
	if len(p.Refusals) > 0 {
		return fmt.Sprintf("Refused: %d reason(s), nothing will be changed.", len(p.Refusals))
	}
	counts := map[string]int{}
	for _, s := range p.Steps {
		counts[s.Kind]++
	}
	var parts []string
	for _, k := range Kinds {
		switch n := counts[k.Kind]; {
		case n == 0 || k.One == "":
		case n == 1:
			parts = append(parts, "1 "+k.One)
		default:
			parts = append(parts, fmt.Sprintf("%d %s", n, k.Many))
		}
	}
	s := "Plan: " + strings.Join(parts, ", ") + "."
	if len(parts) == 0 {
		s = "Plan: nothing to change."
	}
	if p.PointOfNoReturn != "" {
		for i, st := range p.Steps {
			if st.ID == p.PointOfNoReturn {
				s += fmt.Sprintf(" Point of no return: step %d (%s).", i+1, st.ID)
			}
		}
	}
	return s
}

// Render writes the human view of the plan: the step table with quorum lines and details,
// the point of no return, a unified diff for every file (identical diffs on many hosts shown
// once), warnings, refusals and the summary.
func Render(w io.Writer, p *Plan) error {
	ew := &errWriter{w: w}
	ew.printf("Plan for cluster %q: remove %s", p.Cluster, orNone(p.Target.Remove))
	if len(p.Target.Drain) > 0 {
		ew.printf(", drain %s", strings.Join(p.Target.Drain, ", "))
	}
	if len(p.Target.Offline) > 0 {
		ew.printf(", offline %s", strings.Join(p.Target.Offline, ", "))
	}
	ew.printf("\nObserved %s, fingerprint %s\n\n", p.Facts.ObservedAt.UTC().Format("2006-01-02T15:04:05Z"), short(p.Fingerprint))

	if len(p.Refusals) > 0 {
		ew.printf("mastershrink refuses this shrink; nothing was changed:\n")
		for _, r := range p.Refusals {
			ew.printf("  x %s\n    way out: %s\n", r.Reason, r.WayOut)
		}
		writeWarnings(ew, p)
		ew.printf("\n%s\n", p.Summary)
		return ew.err
	}

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTEP\tHOST\tRISK\tSUMMARY")
	for i, s := range p.Steps {
		if s.ID == p.PointOfNoReturn {
			fmt.Fprintln(tw, "\t== point of no return ==\t\t\tthe steps below cannot be undone without restoring the snapshot")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, s.ID, orDash(s.Host), s.Risk, s.Summary)
		if q := s.Quorum; q != nil {
			fmt.Fprintf(tw, "\t\t\t\tquorum: members %d -> %d, quorum %d -> %d, healthy after %d\n",
				q.MembersBefore, q.MembersAfter, q.QuorumBefore, q.QuorumAfter, q.HealthyAfter)
		}
		for _, d := range s.Details {
			fmt.Fprintf(tw, "\t\t\t\t%s\n", d)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writeDiffs(ew, p)
	writeWarnings(ew, p)
	ew.printf("\n%s\n", p.Summary)
	return ew.err
}

// writeDiffs prints each distinct diff once, with every host it applies to.
func writeDiffs(ew *errWriter, p *Plan) {
	type group struct {
		hosts []string
		text  string
		step  string
	}
	var order []string
	groups := map[string]*group{}
	add := func(kind, label string, f host.FileChange) {
		text := diff.Unified("a"+f.Path, "b"+f.Path, f.Before, f.After)
		key := kind + "\x00" + text
		g, ok := groups[key]
		if !ok {
			g = &group{text: text, step: label}
			groups[key] = g
			order = append(order, key)
		}
		g.hosts = append(g.hosts, f.Host)
	}
	for _, s := range p.Steps {
		for _, f := range s.Files {
			add(s.Kind, s.ID, f)
		}
		for _, f := range s.Aside {
			add(s.ID+" aside", s.ID+" while it restarts (put back once it is ready)", f)
		}
	}
	if len(order) == 0 {
		return
	}
	ew.printf("\nFiles to rewrite (a timestamped backup of each is kept):\n")
	for _, key := range order {
		g := groups[key]
		sort.Strings(g.hosts)
		ew.printf("\n# %s on %s\n%s", g.step, hostList(g.hosts), g.text)
	}
}

func hostList(hosts []string) string {
	if len(hosts) <= 8 {
		return strings.Join(hosts, ", ")
	}
	return fmt.Sprintf("%s and %d more hosts (same diff)", strings.Join(hosts[:8], ", "), len(hosts)-8)
}

func writeWarnings(ew *errWriter, p *Plan) {
	if len(p.Warnings) == 0 {
		return
	}
	ew.printf("\nWarnings:\n")
	for _, w := range p.Warnings {
		ew.printf("  ! %s\n", w)
	}
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "nothing"
	}
	return strings.Join(xs, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(fp string) string {
	if len(fp) > 19 {
		return fp[:19]
	}
	return fp
}

// errWriter keeps the first write error so rendering code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
