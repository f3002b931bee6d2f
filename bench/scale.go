package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/runner"
	"github.com/mastershrink/mastershrink/testenv"
)

// ScaleResult is one 3-to-1 shrink in a lab with extra scale nodes.
type ScaleResult struct {
	ShrinkResult
	// Nodes is how many scale nodes the lab had (0: the plain lab, 2 workers).
	Nodes int `json:"nodes"`
	// Proxies is how many node proxies the apply updated (lb/update steps).
	Proxies int `json:"proxies"`
	// ProxyPhase is the wall time of the apply's node-proxy phase (first start to last end).
	ProxyPhase time.Duration `json:"proxy_phase"`
	// Loop is the alternative arm's time over the same proxies (see LoopScript), 0 if not run.
	Loop time.Duration `json:"loop,omitempty"`
}

// LoopParallel is the alternative arm's xargs -P.
const LoopParallel = 64

// LoopScript is what a skilled operator runs on every node proxy to mark the leaving
// apiservers down (down true) or back up: xargs -P LoopParallel over lines "ADDRESS NGINX
// PREFIX CONFIG", each running this script, one ssh doing sed, nginx -t and nginx -s reload
// on its node. No backup, no wait for the new workers, no probe through the proxy:
//
//	xargs -P 64 -L 1 sh loop.sh < proxies.txt
func LoopScript(leaving []string, key, knownHosts string, down bool) string {
	var res []string
	for _, a := range leaving {
		res = append(res, strings.ReplaceAll(a, ".", `\.`))
	}
	sed := fmt.Sprintf(`s/^( *server (%s):[0-9]+[^;]*);/\1 down;/`, strings.Join(res, "|"))
	if !down {
		sed = fmt.Sprintf(`s/^( *server (%s):[0-9]+[^;]*) down;/\1;/`, strings.Join(res, "|"))
	}
	return fmt.Sprintf("ssh -n -i %s -o UserKnownHostsFile=%s -o BatchMode=yes root@\"$1\" \\\n"+
		"  \"sed -i -E '%s' $4 && $2 -p $3 -c $4 -t -q && $2 -p $3 -c $4 -s reload\"\n", key, knownHosts, sed)
}

// loopLines are the alternative arm's input: every proxy mastershrink updates (the hosts
// that stay, with a proxy config), as "ADDRESS NGINX PREFIX CONFIG".
func loopLines(lab *testenv.Lab, leaving map[string]bool) (string, int, error) {
	inv, err := inventory.Load(lab.Inventory)
	if err != nil {
		return "", 0, err
	}
	var b strings.Builder
	n := 0
	for _, h := range inv.Hosts {
		if leaving[h.Name] || h.Paths.NginxConfig == "" {
			continue
		}
		bin := h.Paths.NginxBinary
		if bin == "" {
			bin = "nginx"
		}
		prefix := h.Paths.NginxPrefix
		if prefix == "" {
			prefix = "/usr/share/nginx"
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", h.Address, bin, prefix, h.Paths.NginxConfig)
		n++
	}
	return b.String(), n, nil
}

// RunLoop runs the alternative arm in the lab's namespace, then (untimed) puts every
// proxy's config back as it was, so the shrink that follows starts from the lab as built.
func RunLoop(ctx context.Context, lab *testenv.Lab, o ShrinkOptions, leavingAddrs []string, leaving map[string]bool) (time.Duration, error) {
	lines, _, err := loopLines(lab, leaving)
	if err != nil {
		return 0, err
	}
	list := filepath.Join(o.WorkDir, "proxies.txt")
	if err := os.WriteFile(list, []byte(lines), 0o600); err != nil {
		return 0, err
	}
	var took time.Duration
	for _, down := range []bool{true, false} {
		script := filepath.Join(o.WorkDir, "loop.sh")
		if err := os.WriteFile(script, []byte(LoopScript(leavingAddrs, lab.SSHKey, lab.KnownHosts, down)), 0o600); err != nil {
			return 0, err
		}
		t, err := inLab(ctx, lab, o, fmt.Sprintf("xargs -P %d -L 1 sh %s < %s", LoopParallel, script, list))
		if err != nil {
			return 0, fmt.Errorf("the xargs loop (down %v): %w", down, err)
		}
		if down {
			took = t
		}
	}
	return took, nil
}

func inLab(ctx context.Context, lab *testenv.Lab, o ShrinkOptions, script string) (time.Duration, error) {
	took, _, out, err := runInLab(ctx, lab, o, "", script, "sh", "-c", script)
	if err != nil {
		return took, fmt.Errorf("%w: %s", err, tail(out, 20))
	}
	return took, nil
}

// ScaleShrink is ApplyShrink in a lab with scale nodes (nodes may be nil: the plain lab),
// after the alternative arm (loop true) on the same proxies. It also reports the apply's
// node-proxy phase as wall time.
func ScaleShrink(ctx context.Context, lab *testenv.Lab, nodes *testenv.ScaleNodes, o ShrinkOptions, loop bool) (ScaleResult, error) {
	r := ScaleResult{}
	if nodes != nil {
		r.Nodes = len(nodes.Names)
	}
	if loop {
		var addrs []string
		leaving := map[string]bool{}
		for _, name := range []string{"m2", "m3"} {
			m, _ := lab.Machine(name)
			addrs = append(addrs, m.Address)
			leaving[name] = true
		}
		took, err := RunLoop(ctx, lab, o, addrs, leaving)
		if err != nil {
			return r, err
		}
		r.Loop = took
	}
	sr, err := ApplyShrink(ctx, lab, o)
	r.ShrinkResult = sr
	if err != nil {
		return r, err
	}
	r.Proxies, r.ProxyPhase, err = phaseSpan(filepath.Join(o.WorkDir, "plan.journal.jsonl"), "lb/update/")
	return r, err
}

// phaseSpan is how many steps with the prefix ended in a journal, and the wall time from the
// first one's start to the last one's end.
func phaseSpan(path, prefix string) (int, time.Duration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("journal: %w", err)
	}
	var first, last time.Time
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e runner.Entry
		if json.Unmarshal(sc.Bytes(), &e) != nil || !strings.HasPrefix(e.Step, prefix) {
			continue
		}
		switch e.Event {
		case runner.EventStart:
			if first.IsZero() || e.Time.Before(first) {
				first = e.Time
			}
		case runner.EventEnd:
			n++
			if e.Time.After(last) {
				last = e.Time
			}
		}
	}
	if n == 0 || first.IsZero() {
		return 0, 0, fmt.Errorf("journal %s: no %s step ran", path, prefix)
	}
	return n, last.Sub(first), nil
}

// ScaleFigures are the rows of the scale runs: by N, the apply's total time (with the ratio
// to the plain lab's), failed requests, peak memory, the proxy phase against the loop, and
// plan time.
func ScaleFigures(runs map[int][]ScaleResult) []Figure {
	var ns []int
	for n := range runs {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	col := func(rs []ScaleResult, fn func(ScaleResult) float64) *Stats {
		var v []float64
		for _, r := range rs {
			v = append(v, fn(r))
		}
		return statsOrNil(v)
	}
	base := runs[0]
	var figs []Figure
	for _, n := range ns {
		rs := runs[n]
		proxies := 0
		if len(rs) > 0 {
			proxies = rs[0].Proxies
		}
		label := fmt.Sprintf("N=%d", 2+n)
		f := Figure{ID: fmt.Sprintf("scale.%d.apply", n), Unit: "s",
			Title:     fmt.Sprintf("3-to-1 apply, %s node proxies (%d updated): total time", label, proxies),
			Ours:      col(rs, func(r ScaleResult) float64 { return r.Total.Seconds() }),
			PeakRSSMB: col(rs, func(r ScaleResult) float64 { return float64(r.MaxRSSKB) / 1024 })}
		if n != 0 && len(base) > 0 {
			var ratios []float64
			for i := range min(len(rs), len(base)) {
				ratios = append(ratios, rs[i].Total.Seconds()/base[i].Total.Seconds())
			}
			f.Alternative = "N=2 (the plain lab)"
			f.Theirs = col(base, func(r ScaleResult) float64 { return r.Total.Seconds() })
			f.Ratio = statsOrNil(ratios)
			f.Note = "ratio: time at N over time at N=2 (target at most 1.5x)"
		}
		figs = append(figs, f,
			Figure{ID: fmt.Sprintf("scale.%d.failed", n), Title: fmt.Sprintf("  %s: failed requests (prober through w1, w2)", label),
				Ours: col(rs, func(r ScaleResult) float64 { return float64(r.Failed) })},
			Figure{ID: fmt.Sprintf("scale.%d.plan", n), Title: fmt.Sprintf("  %s: mastershrink plan", label), Unit: "s",
				Ours:      col(rs, func(r ScaleResult) float64 { return r.Plan.Seconds() }),
				PeakRSSMB: col(rs, func(r ScaleResult) float64 { return float64(r.PlanMaxRSSKB) / 1024 })})
		if cpu := col(rs, func(r ScaleResult) float64 { return r.CPU.Seconds() }); cpu != nil && cpu.Median > 0 {
			figs = append(figs, Figure{ID: fmt.Sprintf("scale.%d.cpu", n), Unit: "s", Ours: cpu,
				Title: fmt.Sprintf("  %s: mastershrink's own CPU time in the apply (user+system)", label)})
		}
		pf := Figure{ID: fmt.Sprintf("scale.%d.proxies", n), Title: fmt.Sprintf("  %s: node-proxy phase of the apply", label), Unit: "s",
			Ours: col(rs, func(r ScaleResult) float64 { return r.ProxyPhase.Seconds() })}
		var loops, lratios []float64
		for _, r := range rs {
			if r.Loop > 0 {
				loops = append(loops, r.Loop.Seconds())
				lratios = append(lratios, r.Loop.Seconds()/r.ProxyPhase.Seconds())
			}
		}
		if len(loops) > 0 {
			pf.Alternative = fmt.Sprintf("xargs -P %d ssh sed+nginx -t+reload", LoopParallel)
			pf.Theirs, pf.Ratio = statsOrNil(loops), statsOrNil(lratios)
		}
		figs = append(figs, pf)
	}
	return figs
}
