package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/runner"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// SeedKeys is how many etcd keys each shrink writes first and checks afterwards.
const SeedKeys = 1000

// ProbesPerSecond is the prober's rate from each worker.
const ProbesPerSecond = 20

// Stage is a timed part of a shrink: a phase of the plan, or a stage of the manual procedure.
type Stage struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// ShrinkResult is one 3-to-1 shrink in a fresh lab.
type ShrinkResult struct {
	// Total is the wall time of the shrink (the apply process, or the whole manual script).
	Total  time.Duration `json:"total"`
	Stages []Stage       `json:"stages"`
	// Probes is the prober's report over the shrink.
	Probes   testenv.ProbeReport `json:"-"`
	Failed   int                 `json:"failed_requests"`
	Requests int                 `json:"requests"`
	Gap      time.Duration       `json:"longest_gap"`
	// Watches held open and how often one of them broke.
	Watches     int `json:"watches"`
	WatchBreaks int `json:"watch_breaks"`
	// MaxRSSKB is the apply process's peak resident memory (0 for the manual procedure);
	// Plan and PlanMaxRSSKB are the plan command's time and memory.
	MaxRSSKB     int64         `json:"maxrss_kb,omitempty"`
	Plan         time.Duration `json:"plan,omitempty"`
	PlanMaxRSSKB int64         `json:"plan_maxrss_kb,omitempty"`
	// CPU is the apply process's own CPU time (user and system): in a lab whose hosts share
	// this machine's cores, it tells mastershrink's part of the time from the hosts'.
	CPU time.Duration `json:"cpu,omitempty"`
}

// ShrinkOptions say how to run a shrink.
type ShrinkOptions struct {
	// Bin is the mastershrink binary.
	Bin string
	// WorkDir receives the plan, its journal and the snapshot.
	WorkDir string
	// Log receives the commands' output.
	Log io.Writer
}

// load writes the seed keys, then starts the prober and the watches.
func load(ctx context.Context, lab *testenv.Lab) (*testenv.Prober, *Watches, error) {
	ec, err := lab.EtcdClient()
	if err != nil {
		return nil, nil, err
	}
	defer ec.Close()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := seed.WriteKeys(sctx, ec, "/bench/", SeedKeys); err != nil {
		return nil, nil, fmt.Errorf("seed keys: %w", err)
	}
	w, err := StartWatches(ctx, lab)
	if err != nil {
		return nil, nil, fmt.Errorf("watches: %w", err)
	}
	return lab.StartProber(ctx, ProbesPerSecond), w, nil
}

func (r *ShrinkResult) stopLoad(p *testenv.Prober, w *Watches) {
	r.Probes = p.Stop()
	r.Failed, r.Requests, r.Gap = r.Probes.Failed, r.Probes.Total, r.Probes.LongestGap
	r.Watches = w.Open()
	r.WatchBreaks = w.Stop()
}

// checkAfter asserts the shrink's result: one etcd member holding every seed key, and the
// API answering through a worker's proxy.
func checkAfter(ctx context.Context, lab *testenv.Lab) error {
	m1, _ := lab.Machine("m1")
	ec, err := lab.EtcdClient("https://" + m1.Address + ":2379")
	if err != nil {
		return err
	}
	defer ec.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ml, err := ec.MemberList(cctx)
	if err != nil {
		return fmt.Errorf("etcd members after the shrink: %w", err)
	}
	if len(ml.Members) != 1 {
		return fmt.Errorf("after the shrink etcd has %d members, want 1", len(ml.Members))
	}
	if err := seed.CheckKeys(cctx, ec, "/bench/", SeedKeys); err != nil {
		return fmt.Errorf("seed keys after the shrink: %w", err)
	}
	return ReadyThroughWorker(cctx, lab, "w1")
}

// ReadyThroughWorker polls GET /readyz through worker's local proxy until it answers 200.
func ReadyThroughWorker(ctx context.Context, lab *testenv.Lab, worker string) error {
	m, ok := lab.Machine(worker)
	if !ok {
		return fmt.Errorf("no machine %s", worker)
	}
	lay, err := testenv.LookupLayout(lab.Layout)
	if err != nil {
		return err
	}
	if err := lab.WaitReadyz(ctx, "https://"+lay.Paths.NginxListen+"/readyz", testenv.DialerIn(m.NetNS)); err != nil {
		return fmt.Errorf("/readyz through %s's proxy: %w", worker, err)
	}
	return nil
}

// runMastershrink runs the binary in the lab's network namespace, as an operator on that
// network would, and returns its wall time and peak memory (its own: it starts no children).
func runMastershrink(ctx context.Context, lab *testenv.Lab, o ShrinkOptions, args ...string) (time.Duration, int64, error) {
	took, rss, _, err := runMastershrinkCPU(ctx, lab, o, args...)
	return took, rss, err
}

// runMastershrinkCPU is runMastershrink with the process's CPU time, user and system.
func runMastershrinkCPU(ctx context.Context, lab *testenv.Lab, o ShrinkOptions, args ...string) (time.Duration, int64, time.Duration, error) {
	// ip netns exec execs the binary in place, so the rusage is mastershrink's.
	took, ps, out, err := runInLab(ctx, lab, o, filepath.Dir(lab.Inventory), "mastershrink "+strings.Join(args, " "), append([]string{o.Bin}, args...)...)
	var rss int64
	var cpu time.Duration
	if ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss
		}
		cpu = ps.UserTime() + ps.SystemTime()
	}
	if err != nil {
		return took, rss, cpu, fmt.Errorf("mastershrink %s: %w\n%s", args[0], err, tail(out, 30))
	}
	return took, rss, cpu, nil
}

// runInLab runs argv in the lab's network namespace from dir, logs it as shown with its
// output, and returns its wall time, its process state (nil when it did not start) and its
// output.
func runInLab(ctx context.Context, lab *testenv.Lab, o ShrinkOptions, dir, shown string, argv ...string) (time.Duration, *os.ProcessState, string, error) {
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", filepath.Base(lab.NetNS)}, argv...)...)
	c.Dir = dir
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	start := time.Now()
	err := c.Run()
	took := time.Since(start)
	if o.Log != nil {
		fmt.Fprintf(o.Log, "$ %s\n%s\n", shown, out.String())
	}
	return took, c.ProcessState, out.String(), err
}

// ApplyShrink retires m2 and m3 of a fresh lab with `mastershrink plan` then `mastershrink
// apply`, with the prober and the watches running through the apply.
func ApplyShrink(ctx context.Context, lab *testenv.Lab, o ShrinkOptions) (ShrinkResult, error) {
	var r ShrinkResult
	planPath := filepath.Join(o.WorkDir, "plan.json")
	took, rss, err := runMastershrink(ctx, lab, o, "plan", "-i", lab.Inventory, "--remove", "m2,m3", "--out", planPath)
	if err != nil {
		return r, err
	}
	r.Plan, r.PlanMaxRSSKB = took, rss
	prober, watches, err := load(ctx, lab)
	if err != nil {
		return r, err
	}
	r.Total, r.MaxRSSKB, r.CPU, err = runMastershrinkCPU(ctx, lab, o, "apply", planPath, "-i", lab.Inventory)
	r.stopLoad(prober, watches)
	if err != nil {
		return r, err
	}
	if r.Stages, err = JournalPhases(strings.TrimSuffix(planPath, ".json")+".journal.jsonl", r.Total); err != nil {
		return r, err
	}
	return r, checkAfter(ctx, lab)
}

// OtherPhase is the apply's time outside its steps: start, lock, re-observing the cluster.
const OtherPhase = "lock and re-observe"

// JournalPhases is the wall time of each phase a journal records: the union of its steps'
// intervals (each ends at its entry's time and lasted its seconds), so the steps of a phase
// that ran concurrently (the node proxies) count once; the rest of total is OtherPhase.
func JournalPhases(path string, total time.Duration) ([]Stage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	type span struct{ from, to time.Time }
	spans := map[string][]span{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e runner.Entry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Step == "" {
			continue
		}
		if e.Event != runner.EventEnd && e.Event != runner.EventSkip && e.Event != runner.EventFail {
			continue
		}
		name := e.Step
		if k, ok := plan.KindOfID(e.Step); ok {
			name = k.Phase
		}
		spans[name] = append(spans[name], span{e.Time.Add(-time.Duration(e.Seconds * float64(time.Second))), e.Time})
	}
	if len(spans) == 0 {
		return nil, errors.New("journal " + path + ": no step durations")
	}
	secs := map[string]float64{}
	var sum float64
	for name, ss := range spans {
		sort.Slice(ss, func(i, j int) bool { return ss[i].from.Before(ss[j].from) })
		var wall time.Duration
		cur := ss[0]
		for _, s := range ss[1:] {
			if s.from.After(cur.to) {
				wall += cur.to.Sub(cur.from)
				cur = s
			} else if s.to.After(cur.to) {
				cur.to = s.to
			}
		}
		wall += cur.to.Sub(cur.from)
		secs[name] = wall.Seconds()
		sum += wall.Seconds()
	}
	var out []Stage
	for _, k := range plan.Kinds {
		if s, ok := secs[k.Phase]; ok {
			out = append(out, Stage{Name: k.Phase, Seconds: s})
			delete(secs, k.Phase)
		}
	}
	out = append(out, Stage{Name: OtherPhase, Seconds: max(0, total.Seconds()-sum)})
	return out, nil
}
