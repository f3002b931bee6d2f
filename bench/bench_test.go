package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	s, ok := Summarize([]float64{3, 1, 2})
	if !ok || s.Median != 2 || s.Min != 1 || s.Max != 3 {
		t.Errorf("odd: %+v", s)
	}
	s, _ = Summarize([]float64{4, 1, 2, 3})
	if s.Median != 2.5 {
		t.Errorf("even median %v, want 2.5", s.Median)
	}
	if _, ok := Summarize(nil); ok {
		t.Error("no values summarized")
	}
	if got := (Stats{Median: 52.14, Min: 50.3, Max: 55, Values: []float64{1, 2}}).Format(" s"); got != "52.1 s (50.3-55.0)" {
		t.Errorf("format %q", got)
	}
	if got := (Stats{Median: 0, Values: []float64{0, 0, 0}}).Format(""); got != "0" {
		t.Errorf("format of equal runs %q", got)
	}
}

func TestParseBenchOutput(t *testing.T) {
	out := `goos: linux
BenchmarkInspect1000VsOpenSSL
    certs_test.go:1: something
BenchmarkInspect1000VsOpenSSL-2   	       1	4523312345 ns/op	       312.0 inspect-ms/op	      4211 openssl-ms/op	        13.50 openssl/inspect
PASS
`
	m, ok := ParseBenchOutput(out, "BenchmarkInspect1000VsOpenSSL")
	if !ok || m["openssl/inspect"] != 13.5 || m["inspect-ms/op"] != 312 || m["ns/op"] != 4523312345 {
		t.Errorf("parsed %v, %v", m, ok)
	}
	if _, ok := ParseBenchOutput(out, "BenchmarkInspect1000"); ok {
		t.Error("a benchmark whose name is a prefix of another matched its line")
	}
	if r, ok := skipReason("--- SKIP: BenchmarkLB200Hosts\n    farm.go:1: needs root\n", "BenchmarkLB200Hosts"); !ok || r != "farm.go:1: needs root" {
		t.Errorf("skip reason %q %v", r, ok)
	}
}

func TestJournalPhases(t *testing.T) {
	// The three proxy steps ran concurrently (1 s each, within 1.5 s): their phase is 1.5 s.
	journal := `{"time":"2026-01-01T00:00:00Z","plan":"p","run":"r","event":"run-start"}
{"time":"2026-01-01T00:00:01.5Z","plan":"p","run":"r","step":"preflight","event":"end","seconds":1.5}
{"time":"2026-01-01T00:00:02Z","plan":"p","run":"r","step":"etcd/snapshot","event":"end","seconds":0.5}
{"time":"2026-01-01T00:00:02Z","plan":"p","run":"r","step":"apiserver/update/m1","event":"start"}
{"time":"2026-01-01T00:00:22Z","plan":"p","run":"r","step":"apiserver/update/m1","event":"end","seconds":20}
{"time":"2026-01-01T00:00:23Z","plan":"p","run":"r","step":"lb/update/m1","event":"end","seconds":1}
{"time":"2026-01-01T00:00:23.2Z","plan":"p","run":"r","step":"lb/update/w1","event":"end","seconds":1}
{"time":"2026-01-01T00:00:23.5Z","plan":"p","run":"r","step":"lb/update/w2","event":"end","seconds":1}
{"time":"2026-01-01T00:00:25.5Z","plan":"p","run":"r","step":"etcd/remove-member/m2","event":"end","seconds":2}
{"time":"2026-01-01T00:00:26.5Z","plan":"p","run":"r","step":"etcd/stop/m2","event":"skip","seconds":1}
{"time":"2026-01-01T00:00:27Z","plan":"p","run":"r","step":"verify/final","event":"en`
	p := filepath.Join(t.TempDir(), "plan.journal.jsonl")
	os.WriteFile(p, []byte(journal), 0o600)
	st, err := JournalPhases(p, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := "preflight=1.50 snapshot=0.50 survivor restarts=20 node proxies=1.50 etcd membership=3 lock and re-observe=3.50"
	var got []string
	for _, s := range st {
		got = append(got, s.Name+"="+num(s.Seconds))
	}
	if strings.Join(got, " ") != want {
		t.Errorf("phases %q, want %q", strings.Join(got, " "), want)
	}
}

func TestRenderOneTable(t *testing.T) {
	apply := []ShrinkResult{{Total: 60 * time.Second, Failed: 0, Gap: time.Second, MaxRSSKB: 81920, Stages: []Stage{{"preflight", 2}}},
		{Total: 70 * time.Second, MaxRSSKB: 81920, Stages: []Stage{{"preflight", 3}}}}
	manual := []ShrinkResult{{Total: 30 * time.Second, Failed: 120, Gap: 15 * time.Second, Stages: []Stage{{"reload nginx", 1}}},
		{Total: 35 * time.Second, Failed: 100}}
	r := Results{Runs: 2, Command: "make bench BENCH_RUNS=2", Figures: ShrinkFigures(apply, manual)}
	r.Figures = append(r.Figures, goFigure(t, "certs.inspect1000").Figure([]GoBenchRun{{Metrics: map[string]float64{"inspect-ms/op": 300, "openssl-ms/op": 4000, "openssl/inspect": 13.3}, PeakRSSMB: 40}}))
	var b bytes.Buffer
	if err := r.Render(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"65 s (60-70)", "seed 003 by hand: 32.5 s (30.0-35.0)", "0.50x", "110 (100-120)", "80 MB",
		"apply phase: preflight", "openssl storeutl -noout -text -certs bundle.pem (1 process): 4 s", "13.3x", "produced by: make bench BENCH_RUNS=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "by hand: reload nginx") {
		t.Errorf("detail rows printed:\n%s", out)
	}
}

func goFigure(t *testing.T, id string) GoFigure {
	t.Helper()
	for _, g := range GoFigures {
		if g.ID == id {
			return g
		}
	}
	t.Fatalf("no Go figure %s", id)
	return GoFigure{}
}

// Merged rows replace their namesakes or join their group, and say how they were produced.
func TestMerge(t *testing.T) {
	base := Results{Runs: 3, Command: "make bench", Commit: "abc", Figures: []Figure{
		{ID: "shrink.total"}, {ID: "scale.0.apply"}, {ID: "scale.200.apply"}, {ID: "certs.inspect1000", Title: "old"}, {ID: "nodes.drain400"}}}
	from := Results{Command: "go run ./bench/cmd/benchtable -runs 1 -only scale", Machine: "2 CPUs", Commit: "def",
		Generated: time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC),
		Figures:   []Figure{{ID: "scale.0.apply"}, {ID: "scale.998.apply"}, {ID: "scale.998.failed"}, {ID: "certs.inspect1000", Title: "new"}, {ID: "certs.inspect1000.cfssl"}}}
	if n := base.Merge(from, "scale.998.", "certs."); n != 4 {
		t.Errorf("%d rows merged, want 4", n)
	}
	var ids []string
	for _, f := range base.Figures {
		ids = append(ids, f.ID)
	}
	want := "shrink.total scale.0.apply scale.200.apply scale.998.apply scale.998.failed certs.inspect1000 certs.inspect1000.cfssl nodes.drain400"
	if strings.Join(ids, " ") != want {
		t.Errorf("rows %q, want %q", strings.Join(ids, " "), want)
	}
	if base.Figures[1].Produced != "" || base.Figures[5].Title != "new" ||
		base.Figures[3].Produced != "go run ./bench/cmd/benchtable -runs 1 -only scale, 2026-12-01 on 2 CPUs at def" {
		t.Errorf("merged rows: %+v", base.Figures)
	}
	var b bytes.Buffer
	if err := base.Render(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "; except\n  scale.998.*, certs.inspect1000, certs.inspect1000.cfssl: go run") {
		t.Errorf("rendered:\n%s", b.String())
	}
}

// The scale rows carry mastershrink's own CPU time where the runs measured it, and leave the
// row out for results of before it was measured.
func TestScaleFiguresCPU(t *testing.T) {
	run := func(total, cpu time.Duration) ScaleResult {
		return ScaleResult{ShrinkResult: ShrinkResult{Total: total, CPU: cpu}, Proxies: 203, ProxyPhase: 10 * time.Second}
	}
	find := func(figs []Figure, id string) *Figure {
		for i := range figs {
			if figs[i].ID == id {
				return &figs[i]
			}
		}
		return nil
	}
	figs := ScaleFigures(map[int][]ScaleResult{0: {run(36*time.Second, 3*time.Second)}, 200: {run(63*time.Second, 12*time.Second)}})
	if f := find(figs, "scale.200.cpu"); f == nil || f.Ours == nil || f.Ours.Median != 12 {
		t.Fatalf("scale.200.cpu: %+v", f)
	}
	if f := find(figs, "scale.200.apply"); f == nil || f.Ratio == nil || f.Ratio.Median != 63.0/36.0 {
		t.Fatalf("scale.200.apply: %+v", f)
	}
	if f := find(ScaleFigures(map[int][]ScaleResult{200: {run(63*time.Second, 0)}}), "scale.200.cpu"); f != nil {
		t.Fatalf("a row for runs without CPU time: %+v", f)
	}
}
