package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// GoFigure maps one Go benchmark's ReportMetric figures to a row of the table.
type GoFigure struct {
	Bench       GoBench
	ID, Title   string
	Unit        string
	Alternative string
	// Ours, Theirs and Ratio pick the figures out of a run's metrics; nil ones are left out.
	Ours, Theirs, Ratio func(m map[string]float64) (float64, bool)
	// PeakRSS, when set, picks mastershrink's peak memory in MB out of the metrics (a
	// benchmark that runs mastershrink as a process of its own measures it); otherwise it is
	// the benchmark process's own high-water mark.
	PeakRSS func(m map[string]float64) (float64, bool)
	Note    string
	// Also are more rows from the same runs (another alternative arm, say); their Bench is
	// unused.
	Also []GoFigure
}

func metric(name string, scale float64) func(map[string]float64) (float64, bool) {
	return func(m map[string]float64) (float64, bool) {
		v, ok := m[name]
		return v * scale, ok
	}
}

// GoFigures are the component benchmarks `make bench` runs, each against the alternative its
// benchmark runs alongside.
var GoFigures = []GoFigure{
	{
		Bench: GoBench{Pkg: "bench", Name: "BenchmarkInspect1000"},
		ID:    "certs.inspect1000", Title: "certificate inspection, 1000 certificates (subject, SANs, expiry)", Unit: "s",
		Alternative: "openssl storeutl -noout -text -certs bundle.pem (1 process)",
		Ours:        metric("inspect-ms/op", 1e-3), Theirs: metric("openssl-ms/op", 1e-3), Ratio: metric("openssl/inspect", 1),
		PeakRSS: metric("inspect-maxrss-MB", 1),
		Also: []GoFigure{{
			ID: "certs.inspect1000.cfssl", Title: "  the same 1000 files, against cfssl certinfo", Unit: "s",
			Alternative: "xargs -P $(nproc) -n 1 cfssl certinfo -cert (1000 processes)",
			Ours:        metric("inspect-ms/op", 1e-3), Theirs: metric("cfssl-ms/op", 1e-3), Ratio: metric("cfssl/inspect", 1),
			PeakRSS: metric("inspect-maxrss-MB", 1),
		}},
	},
	{
		Bench: GoBench{Pkg: "etcd", Name: "BenchmarkSnapshotVsEtcdctl", Env: []string{fmt.Sprintf("MASTERSHRINK_BENCH_ETCD_MB=%d", snapshotMB())}},
		ID:    "etcd.snapshot", Title: fmt.Sprintf("etcd snapshot of a %s keyspace from the leader, verified as it is written", mib(snapshotMB())), Unit: "MB/s",
		Alternative: "etcdctl snapshot save, same leader",
		Ours:        metric("MB/s-mastershrink", 1), Theirs: metric("MB/s-etcdctl", 1), Ratio: metric("ratio", 1),
	},
	{
		Bench: GoBench{Pkg: "nodes", Name: "BenchmarkDrain400"},
		ID:    "nodes.drain400", Title: "drain 400 pods off 4 nodes (PDBs of 25%)", Unit: "s",
		Alternative: "kubectl drain",
		Ours:        metric("mastershrink-s/op", 1), Theirs: metric("kubectl-s/op", 1), Ratio: metric("kubectl/mastershrink", 1),
	},
}

// Figures are the rows of a Go benchmark's runs: its own, then Also's.
func (g GoFigure) Figures(runs []GoBenchRun) []Figure {
	figs := []Figure{g.Figure(runs)}
	for _, a := range g.Also {
		figs = append(figs, a.Figure(runs))
	}
	return figs
}

// snapshotMB is the keyspace of the snapshot benchmark in MiB: MASTERSHRINK_BENCH_ETCD_MB,
// 1024 by default (the figure).
func snapshotMB() int {
	if v, err := strconv.Atoi(os.Getenv("MASTERSHRINK_BENCH_ETCD_MB")); err == nil && v > 0 {
		return v
	}
	return 1024
}

func mib(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d GiB", n/1024)
	}
	return fmt.Sprintf("%d MiB", n)
}

// Figure turns the runs of a Go benchmark into its row; skipped runs are named in the note.
func (g GoFigure) Figure(runs []GoBenchRun) Figure {
	f := Figure{ID: g.ID, Title: g.Title, Unit: g.Unit, Alternative: g.Alternative, Note: g.Note}
	var ours, theirs, ratio, rss []float64
	var skipped []string
	pick := func(fn func(map[string]float64) (float64, bool), m map[string]float64, into *[]float64) {
		if fn == nil {
			return
		}
		if v, ok := fn(m); ok {
			*into = append(*into, v)
		}
	}
	for _, r := range runs {
		if r.Skipped != "" {
			skipped = append(skipped, r.Skipped)
			continue
		}
		pick(g.Ours, r.Metrics, &ours)
		pick(g.Theirs, r.Metrics, &theirs)
		pick(g.Ratio, r.Metrics, &ratio)
		switch {
		case g.PeakRSS != nil:
			pick(g.PeakRSS, r.Metrics, &rss)
		case r.PeakRSSMB > 0:
			rss = append(rss, r.PeakRSSMB)
		}
	}
	f.Ours, f.Theirs, f.Ratio, f.PeakRSSMB = statsOrNil(ours), statsOrNil(theirs), statsOrNil(ratio), statsOrNil(rss)
	if len(skipped) > 0 {
		f.Note = strings.TrimSpace(f.Note + "; skipped: " + skipped[0])
	}
	return f
}

// ShrinkFigures turns paired runs of the apply and the manual procedure into rows: total time
// (with the ratio of each pair), the prober's failed requests and longest gap, broken watches,
// the apply's phases, and the plan command. The manual procedure's stages are Detail rows.
func ShrinkFigures(apply, manual []ShrinkResult) []Figure {
	col := func(rs []ShrinkResult, fn func(ShrinkResult) float64) *Stats {
		var v []float64
		for _, r := range rs {
			v = append(v, fn(r))
		}
		return statsOrNil(v)
	}
	var ratios []float64
	for i := range min(len(apply), len(manual)) {
		if apply[i].Total > 0 {
			ratios = append(ratios, manual[i].Total.Seconds()/apply[i].Total.Seconds())
		}
	}
	watches := 0
	if len(apply) > 0 {
		watches = apply[0].Watches
	}
	by := "seed 003 by hand"
	figs := []Figure{
		{ID: "shrink.total", Title: "3-to-1 shrink in the lab: total time", Unit: "s", Alternative: by,
			Ours:      col(apply, func(r ShrinkResult) float64 { return r.Total.Seconds() }),
			Theirs:    col(manual, func(r ShrinkResult) float64 { return r.Total.Seconds() }),
			Ratio:     statsOrNil(ratios),
			PeakRSSMB: col(apply, func(r ShrinkResult) float64 { return float64(r.MaxRSSKB) / 1024 }),
			Note:      "ratio above 1: mastershrink took less time than the manual procedure"},
		{ID: "shrink.failed", Title: fmt.Sprintf("  failed requests (prober: %d GET /readyz per s per worker)", ProbesPerSecond), Alternative: by,
			Ours:   col(apply, func(r ShrinkResult) float64 { return float64(r.Failed) }),
			Theirs: col(manual, func(r ShrinkResult) float64 { return float64(r.Failed) })},
		{ID: "shrink.gap", Title: "  longest time a worker got no answer", Unit: "s", Alternative: by,
			Ours:   col(apply, func(r ShrinkResult) float64 { return r.Gap.Seconds() }),
			Theirs: col(manual, func(r ShrinkResult) float64 { return r.Gap.Seconds() })},
		{ID: "shrink.watch_breaks", Title: fmt.Sprintf("  watch streams broken (%d held through the proxies)", watches), Alternative: by,
			Ours:   col(apply, func(r ShrinkResult) float64 { return float64(r.WatchBreaks) }),
			Theirs: col(manual, func(r ShrinkResult) float64 { return float64(r.WatchBreaks) })},
	}
	seen := map[string]bool{}
	var names []string
	for _, r := range apply {
		for _, s := range r.Stages {
			if !seen[s.Name] {
				seen[s.Name] = true
				names = append(names, s.Name)
			}
		}
	}
	for _, n := range names {
		figs = append(figs, Figure{ID: "shrink.phase." + strings.ReplaceAll(n, " ", "_"), Title: "  apply phase: " + n, Unit: "s",
			Ours: col(apply, func(r ShrinkResult) float64 { return stageSeconds(r, n) })})
	}
	figs = append(figs, Figure{ID: "shrink.plan", Title: "mastershrink plan (observe 5 hosts, build the plan)", Unit: "s",
		Ours:      col(apply, func(r ShrinkResult) float64 { return r.Plan.Seconds() }),
		PeakRSSMB: col(apply, func(r ShrinkResult) float64 { return float64(r.PlanMaxRSSKB) / 1024 })})
	if len(manual) > 0 {
		for i, s := range manual[0].Stages {
			figs = append(figs, Figure{ID: fmt.Sprintf("shrink.manual.%02d", i+1), Title: "  by hand: " + s.Name, Unit: "s", Detail: true,
				Alternative: by, Theirs: col(manual, func(r ShrinkResult) float64 { return stageSeconds(r, s.Name) })})
		}
	}
	return figs
}

func stageSeconds(r ShrinkResult, name string) float64 {
	for _, s := range r.Stages {
		if s.Name == name {
			return s.Seconds
		}
	}
	return 0
}
