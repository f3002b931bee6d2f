// Command benchtable is `make bench`: it runs the 3-to-1 shrink in fresh labs with
// `mastershrink apply` and with seed 003's manual procedure, then the component benchmarks,
// each several times, and prints one table of medians and spreads (also written as JSON).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mastershrink/mastershrink/bench"
	"github.com/mastershrink/mastershrink/testenv"
)

type options struct {
	runs     int
	bin      string
	out      string
	only     map[string]bool
	labName  string
	logPath  string
	merge    string
	mergeIDs []string
	// scaleTimeout bounds each scale run once its lab is up (the loop, plan and apply).
	scaleTimeout time.Duration
}

func main() {
	var o options
	var only string
	defRuns := 3
	if v, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && v > 0 {
		defRuns = v
	}
	flag.IntVar(&o.runs, "runs", defRuns, "runs of each figure (BENCH_RUNS)")
	flag.StringVar(&o.bin, "bin", "bin/mastershrink", "the mastershrink binary (make build)")
	flag.StringVar(&o.out, "out", "bench/results.json", "where to write the results as JSON")
	flag.StringVar(&only, "only", "", "comma-separated subset: shrink,scale,"+strings.Join(goIDs(), ","))
	flag.StringVar(&o.labName, "lab", "msbench", "lab name for the shrink runs")
	flag.StringVar(&o.logPath, "log", filepath.Join(os.TempDir(), "mastershrink-bench.log"), "the labs' and commands' log")
	flag.DurationVar(&o.scaleTimeout, "scale-timeout", 20*time.Minute, "bound on each scale run once its lab is up (N=1000 by hand needs more)")
	render := flag.String("render", "", "print the table of a results file (bench/results.json) and exit")
	flag.StringVar(&o.merge, "merge", "", "merge this run's rows into this results file (bench/results.json), each row saying how it was produced, and write that to -out")
	from := flag.String("from", "", "with -merge: take the rows from this results file of an earlier run instead of running anything")
	ids := flag.String("ids", "", "with -merge: only the rows whose ID starts with one of these, comma-separated (scale.998.)")
	flag.Parse()
	if *ids != "" {
		o.mergeIDs = strings.Split(*ids, ",")
	}
	if *render != "" {
		if err := renderFile(*render); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *from != "" {
		if err := mergeFile(o, *from); err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			o.only[strings.TrimSpace(s)] = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
		os.Exit(1)
	}
}

func renderFile(path string) error {
	r, err := readResults(path)
	if err != nil {
		return err
	}
	return r.Render(os.Stdout)
}

func readResults(path string) (bench.Results, error) {
	var r bench.Results
	data, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// mergeFile merges the rows of the results file from into o.merge and writes it to o.out.
func mergeFile(o options, from string) error {
	if o.merge == "" {
		return errors.New("-from needs -merge: the results file to merge into")
	}
	r, err := readResults(from)
	if err != nil {
		return err
	}
	return mergeInto(o, r)
}

func mergeInto(o options, r bench.Results) error {
	base, err := readResults(o.merge)
	if err != nil {
		return err
	}
	n := base.Merge(r, o.mergeIDs...)
	if n == 0 {
		return fmt.Errorf("no row to merge into %s", o.merge)
	}
	if err := base.Render(os.Stdout); err != nil {
		return err
	}
	if err := base.WriteJSON(o.out); err != nil {
		return err
	}
	progress("%d rows merged into %s, written to %s", n, o.merge, o.out)
	return nil
}

func goIDs() []string {
	var ids []string
	for _, g := range bench.GoFigures {
		ids = append(ids, g.ID)
	}
	return ids
}

func (o options) wants(id string) bool { return o.only == nil || o.only[id] }

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, o options) error {
	if o.runs < 1 {
		return errors.New("-runs: want at least 1")
	}
	if os.Geteuid() != 0 {
		return errors.New("the lab and the LB farm need root: run make bench as root")
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run from the repository root (make bench does)")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	logf, err := os.Create(o.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	progress("%d runs of each figure; log in %s", o.runs, o.logPath)

	res := bench.Results{FormatVersion: bench.ResultsFormatVersion, Generated: time.Now().UTC().Truncate(time.Second),
		Runs: o.runs, Command: command(o), Machine: machine(), Commit: commit()}

	if o.wants("shrink") {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (make build makes it)", o.bin, err)
		}
		apply, manual, err := shrinks(ctx, o, bin, logf)
		if err != nil {
			return err
		}
		res.Figures = append(res.Figures, bench.ShrinkFigures(apply, manual)...)
	}

	if o.wants("scale") {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (make build makes it)", o.bin, err)
		}
		runs, err := scaleRuns(ctx, o, bin, logf)
		if err != nil {
			return err
		}
		res.Figures = append(res.Figures, bench.ScaleFigures(runs)...)
	}

	tmp, err := os.MkdirTemp("", "mastershrink-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, g := range bench.GoFigures {
		if !o.wants(g.ID) {
			continue
		}
		binary, err := bench.CompileTests(ctx, root, g.Bench.Pkg, tmp)
		if err != nil {
			return err
		}
		// A benchmark that runs mastershrink as a process runs this binary.
		gb := g.Bench
		gb.Env = append(append([]string(nil), gb.Env...), "MASTERSHRINK_BENCH_BIN="+bin)
		var runs []bench.GoBenchRun
		for i := range o.runs {
			r, err := bench.RunGoBench(ctx, root, binary, gb)
			if err != nil {
				return err
			}
			if r.Skipped != "" {
				progress("%s: skipped: %s", g.Bench.Name, r.Skipped)
				runs = append(runs, r)
				break
			}
			progress("%s run %d/%d in %s: %v, peak RSS %.0f MB", g.Bench.Name, i+1, o.runs, r.Took.Round(time.Second), r.Metrics, r.PeakRSSMB)
			runs = append(runs, r)
		}
		res.Figures = append(res.Figures, g.Figures(runs)...)
	}

	if o.wants("shrink") {
		// Any lab serves to print the script: the addresses are the lab's fixed ones.
		if steps, err := bench.Seed003Steps(&testenv.Lab{Options: testenv.Options{Name: o.labName, Layout: "seed003"},
			Machines: labMachines()}); err == nil {
			res.ManualScript = bench.Script(steps)
		}
	}
	fmt.Println()
	if o.merge != "" {
		return mergeInto(o, res)
	}
	if err := res.Render(os.Stdout); err != nil {
		return err
	}
	if o.out != "" {
		if err := res.WriteJSON(o.out); err != nil {
			return err
		}
		progress("results written to %s", o.out)
	}
	return nil
}

// labMachines are the default lab's machines, for rendering the manual script.
func labMachines() []testenv.Machine {
	return []testenv.Machine{
		{Name: "m1", Address: "10.88.0.11", Roles: []string{"etcd", "master"}},
		{Name: "m2", Address: "10.88.0.12", Roles: []string{"etcd", "master"}},
		{Name: "m3", Address: "10.88.0.13", Roles: []string{"etcd", "master"}},
		{Name: "w1", Address: "10.88.0.21", Roles: []string{"worker"}},
		{Name: "w2", Address: "10.88.0.22", Roles: []string{"worker"}},
	}
}

// shrinks runs the apply and the manual procedure o.runs times each, alternating which goes
// first, each in a lab of its own brought up for it and torn down after.
func shrinks(ctx context.Context, o options, bin string, logf io.Writer) ([]bench.ShrinkResult, []bench.ShrinkResult, error) {
	var apply, manual []bench.ShrinkResult
	for i := range o.runs {
		kinds := []string{"apply", "manual"}
		if i%2 == 1 {
			kinds = []string{"manual", "apply"}
		}
		for _, kind := range kinds {
			r, err := oneShrink(ctx, o, bin, kind, logf)
			if err != nil {
				return nil, nil, fmt.Errorf("shrink run %d (%s): %w", i+1, kind, err)
			}
			progress("shrink run %d/%d %-6s: %s, %d of %d requests failed, longest gap %s, %d watch breaks, peak RSS %d MB",
				i+1, o.runs, kind, r.Total.Round(100*time.Millisecond), r.Failed, r.Requests, r.Gap.Round(10*time.Millisecond), r.WatchBreaks, r.MaxRSSKB/1024)
			if kind == "apply" {
				apply = append(apply, r)
			} else {
				manual = append(manual, r)
			}
		}
	}
	return apply, manual, nil
}

func oneShrink(ctx context.Context, o options, bin, kind string, logf io.Writer) (r bench.ShrinkResult, err error) {
	work, err := os.MkdirTemp("", "mastershrink-bench-"+kind+"-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(work)
	start := time.Now()
	lab, err := testenv.Up(ctx, testenv.Options{Name: o.labName, Log: logf})
	if err != nil {
		return r, fmt.Errorf("lab up: %w (log %s)", err, o.logPath)
	}
	defer func() {
		if derr := lab.Down(context.Background()); derr != nil && err == nil {
			err = fmt.Errorf("lab down: %w", derr)
		}
	}()
	progress("lab %s up in %s for the %s shrink", o.labName, time.Since(start).Round(time.Second), kind)
	so := bench.ShrinkOptions{Bin: bin, WorkDir: work, Log: logf}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	if kind == "apply" {
		return bench.ApplyShrink(sctx, lab, so)
	}
	return bench.ManualShrink(sctx, lab, so)
}

func command(o options) string {
	c := "make bench"
	if o.runs != 3 {
		c = fmt.Sprintf("make bench BENCH_RUNS=%d", o.runs)
	}
	if o.only != nil {
		var ids []string
		for id := range o.only {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		c = fmt.Sprintf("go run ./bench/cmd/benchtable -runs %d -only %s", o.runs, strings.Join(ids, ","))
		// The settings the rows depend on, when set.
		for _, v := range []string{"MASTERSHRINK_BENCH_ETCD_MB", "MASTERSHRINK_BENCH_SCALE_NODES"} {
			if val := os.Getenv(v); val != "" {
				c = v + "=" + val + " " + c
			}
		}
	}
	return c
}

func machine() string {
	kernel := "linux"
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d CPUs, %s, %s", runtime.NumCPU(), kernel, runtime.Version())
}

func commit() string {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// scaleNodes is the N of the scale runs besides the plain lab (MASTERSHRINK_BENCH_SCALE_NODES,
// 200 by default, at most testenv.MaxScaleNodes).
func scaleNodes() int {
	if v, err := strconv.Atoi(os.Getenv("MASTERSHRINK_BENCH_SCALE_NODES")); err == nil && v > 0 {
		return v
	}
	return 200
}

// scaleRuns runs the apply in the plain lab and in one with scale nodes, o.runs times each,
// alternating, each in a lab of its own; with scale nodes the xargs loop runs first.
func scaleRuns(ctx context.Context, o options, bin string, logf io.Writer) (map[int][]bench.ScaleResult, error) {
	out := map[int][]bench.ScaleResult{}
	for i := range o.runs {
		ns := []int{0, scaleNodes()}
		if i%2 == 1 {
			ns = []int{scaleNodes(), 0}
		}
		for _, n := range ns {
			r, err := oneScale(ctx, o, bin, n, logf)
			if err != nil {
				return nil, fmt.Errorf("scale run %d (N=%d): %w", i+1, 2+n, err)
			}
			progress("scale run %d/%d N=%d: apply %s (proxy phase %s over %d proxies, loop %s), plan %s, %d of %d requests failed, peak RSS %d MB",
				i+1, o.runs, 2+n, r.Total.Round(100*time.Millisecond), r.ProxyPhase.Round(10*time.Millisecond), r.Proxies,
				r.Loop.Round(10*time.Millisecond), r.Plan.Round(10*time.Millisecond), r.Failed, r.Requests, r.MaxRSSKB/1024)
			out[n] = append(out[n], r)
		}
	}
	return out, nil
}

func oneScale(ctx context.Context, o options, bin string, n int, logf io.Writer) (r bench.ScaleResult, err error) {
	work, err := os.MkdirTemp("", "mastershrink-bench-scale-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(work)
	start := time.Now()
	name := o.labName + "s"
	lab, err := testenv.Up(ctx, testenv.Options{Name: name, Log: logf})
	if err != nil {
		return r, fmt.Errorf("lab up: %w (log %s)", err, o.logPath)
	}
	defer func() {
		if derr := lab.Down(context.Background()); derr != nil && err == nil {
			err = fmt.Errorf("lab down: %w", derr)
		}
	}()
	var nodes *testenv.ScaleNodes
	if n > 0 {
		if nodes, err = lab.AddScaleNodes(ctx, n); err != nil {
			return r, err
		}
		defer func() {
			if serr := nodes.Stop(); serr != nil && err == nil {
				err = fmt.Errorf("stop scale nodes: %w", serr)
			}
		}()
	}
	progress("lab %s up with %d scale nodes in %s", name, n, time.Since(start).Round(time.Second))
	sctx, cancel := context.WithTimeout(ctx, o.scaleTimeout)
	defer cancel()
	return bench.ScaleShrink(sctx, lab, nodes, bench.ShrinkOptions{Bin: bin, WorkDir: work, Log: logf}, n > 0)
}
