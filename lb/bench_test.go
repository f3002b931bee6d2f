package lb

import (
	"context"
	"flag"
	"fmt"
	"path"
	"runtime"
	"testing"
)

var benchNodes = flag.Int("lb.nodes", 200, "nodes in the ApplyAll benchmark")

// BenchmarkRewrite rewrites 200 node configs (the layouts of the golden tests, each node with
// its own addresses) per op.
func BenchmarkRewrite(b *testing.B) {
	var cfgs []NodeConfig
	var leaving [][]string
	for i := 0; len(cfgs) < 200; i++ {
		tc := rwCases[i%len(rwCases)]
		if tc.wantErr != nil || tc.changed == 0 {
			continue
		}
		dir := tc.dir
		if dir == "" {
			dir = tc.name
		}
		files := loadCase(b, dir, tc.root)
		main := path.Join(tc.root, tc.main)
		cfg, err := Parse(fmt.Sprintf("node-%d", i), main, files, tc.apiservers)
		if err != nil {
			b.Fatal(err)
		}
		cfgs = append(cfgs, cfg)
		leaving = append(leaving, tc.leaving)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i, cfg := range cfgs {
			if _, err := Rewrite(cfg, leaving[i], MarkDown); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(cfgs)), "ns/node")
}

// BenchmarkApplyAllLocal runs the whole node step (write with backup, nginx -t, reload, wait
// for the new workers, probe) on -lb.nodes real nginx proxies on this machine, all at once
// with the default concurrency. SSH is not in the loop: the lab's benchmark adds it.
func BenchmarkApplyAllLocal(b *testing.B) {
	requireNginx(b)
	bs := startBackends(b, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	var nodes []*node
	for i := range *benchNodes {
		nodes = append(nodes, startNode(b, fmt.Sprintf("w%03d", i), bs, false))
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		var targets []NodeTarget
		for _, n := range nodes {
			// Each op starts from the original config.
			if tg := n.target(b, bs, nil); len(tg.Changes) != 0 {
				b.Fatal("unexpected change")
			}
			tg := n.target(b, bs, []string{bs[2].addr})
			targets = append(targets, tg)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.StartTimer()
		sum := ApplyAll(context.Background(), targets, 0, nil)
		b.StopTimer()
		if err := sum.Err(); err != nil || len(sum.Done) != len(nodes) {
			b.Fatalf("done %d of %d: %v", len(sum.Done), len(nodes), err)
		}
		for _, n := range nodes {
			if err := Undo(context.Background(), n.h, n.nginx.paths(""), sum.Backups[n.h.name]); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/rollout")
	b.ReportMetric(float64(len(nodes)), "nodes")
}
