package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// The fleet applier of the lb tests and benchmarks: apply drives the node proxies through
// the runner's proxy phase (runner/lbphase.go), one journaled step per node, so this only
// serves to set up and check many nodes at once here.

// Summary is the outcome of ApplyAll.
type Summary struct {
	Done    []string
	Skipped []string
	Failed  map[string]error
	// Backups maps node to rewritten file to its backup, for the journal and Undo.
	Backups map[string]map[string]string
}

// Err joins the failures, sorted by node, or nil.
func (s Summary) Err() error {
	nodes := make([]string, 0, len(s.Failed))
	for n := range s.Failed {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	errs := make([]error, 0, len(nodes))
	for _, n := range nodes {
		errs = append(errs, s.Failed[n])
	}
	return errors.Join(errs...)
}

// fleetConcurrency is how many nodes the test fleet works on at once: a few hundred nodes
// finish in a few rounds, and 50 SSH sessions stay well under sshd's default MaxStartups.
const fleetConcurrency = 50

// ApplyAll applies the targets with a default Executor; see (*Executor).ApplyAll.
func ApplyAll(ctx context.Context, nodes []NodeTarget, concurrency int, progress io.Writer) Summary {
	var e Executor
	return e.ApplyAll(ctx, nodes, concurrency, progress)
}

// ApplyAll applies every node's target, at most concurrency at a time (fleetConcurrency
// when <= 0), writing a progress line to progress (may be nil) after each node and a
// heartbeat every 10 s. A failed node does not stop the others. A rerun skips the nodes
// already done (see NodeResult.Skipped).
func (e *Executor) ApplyAll(ctx context.Context, nodes []NodeTarget, concurrency int, progress io.Writer) Summary {
	if concurrency <= 0 {
		concurrency = fleetConcurrency
	}
	sum := Summary{Failed: map[string]error{}, Backups: map[string]map[string]string{}}
	var mu sync.Mutex
	start := time.Now()
	line := func(prefix string) {
		if progress == nil {
			return
		}
		fmt.Fprintf(progress, "%slb: %d/%d nodes: %d done, %d skipped, %d failed [%s elapsed]\n", prefix,
			len(sum.Done)+len(sum.Skipped)+len(sum.Failed), len(nodes), len(sum.Done), len(sum.Skipped),
			len(sum.Failed), time.Since(start).Round(time.Second))
	}

	stop := make(chan struct{})
	var hb sync.WaitGroup
	hb.Add(1)
	go func() {
		defer hb.Done()
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				mu.Lock()
				line("still working: ")
				mu.Unlock()
			}
		}
	}()

	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, t := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var res NodeResult
			err := ctx.Err()
			if err == nil {
				res, err = e.Apply(ctx, t)
			}
			mu.Lock()
			defer mu.Unlock()
			name := t.Host.Name()
			if len(res.Backups) > 0 {
				sum.Backups[name] = res.Backups
			}
			switch {
			case err != nil:
				sum.Failed[name] = err
			case res.Skipped:
				sum.Skipped = append(sum.Skipped, name)
			default:
				sum.Done = append(sum.Done, name)
			}
			line("")
		}()
	}
	wg.Wait()
	close(stop)
	hb.Wait()
	sort.Strings(sum.Done)
	sort.Strings(sum.Skipped)
	return sum
}
