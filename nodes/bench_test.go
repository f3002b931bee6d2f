package nodes_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/testenv/kubetest"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// BenchmarkDrain400 drains 4 nodes carrying 400 pods (20 Deployments of 20, each with a PDB of
// maxUnavailable 25%) onto 2 spare nodes, with Drain and with `kubectl drain` of the same
// nodes one after another, and reports both times and their ratio. Run with -benchtime=1x.
func BenchmarkDrain400(b *testing.B) {
	work := []string{"b1", "b2", "b3", "b4"}
	spare := []string{"s1", "s2"}
	env := kubetest.Start(b, kubetest.Options{Nodes: append(append([]string{}, work...), spare...), PodsPerNode: 300})
	kube := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	const ns = "bench"
	const deployments, replicas = 20, 20

	setCordon := func(names []string, on bool) {
		for _, n := range names {
			var err error
			if on {
				_, err = nodes.Cordon(ctx, kube, n)
			} else {
				_, err = nodes.Uncordon(ctx, kube, n)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	// place puts all pods back on the work nodes.
	place := func(first bool) {
		setCordon(spare, true)
		setCordon(work, false)
		if first {
			if err := seed.SeedBulk(ctx, kube, ns, nil, deployments, replicas, true); err != nil {
				b.Fatal(err)
			}
		} else {
			if err := kube.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
				b.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
			err := seed.WaitPodsRunning(wctx, kube, ns, deployments*replicas)
			wcancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		setCordon(spare, false)
	}

	var ours, theirs time.Duration
	first := true
	runs := 0
	for b.Loop() {
		runs++
		place(first)
		first = false
		start := time.Now()
		sum, err := nodes.Drain(ctx, kube, work, nodes.DrainOptions{IgnoreDaemonSets: true, Timeout: 15 * time.Minute})
		if err != nil {
			b.Fatalf("drain: %v", err)
		}
		ours += time.Since(start)
		evicted := 0
		for _, n := range sum.Nodes {
			evicted += len(n.Evicted)
		}
		if evicted != deployments*replicas {
			b.Fatalf("evicted %d pods, want %d", evicted, deployments*replicas)
		}

		place(false)
		start = time.Now()
		setCordon(work, true) // as an operator would, so pods do not hop between drained nodes
		for _, n := range work {
			out, err := exec.CommandContext(ctx, env.Kubectl, "--kubeconfig", env.Kubeconfig, "drain", n,
				"--ignore-daemonsets", "--delete-emptydir-data", "--timeout=15m").CombinedOutput()
			if err != nil {
				b.Fatalf("kubectl drain %s: %v: %s", n, err, out)
			}
		}
		theirs += time.Since(start)
	}
	b.ReportMetric(ours.Seconds()/float64(runs), "mastershrink-s/op")
	b.ReportMetric(theirs.Seconds()/float64(runs), "kubectl-s/op")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "kubectl/mastershrink")
	b.Logf("mastershrink %s, kubectl drain one by one %s (%d runs)", ours, theirs, runs)
}
