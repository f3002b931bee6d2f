package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
)

// A TCP proxy without health checks keeps sending requests to an apiserver that is shutting
// down (its /readyz answers 500 until it closes), and old nginx workers keep their clients'
// connections to servers a reload marked down. So before a survivor's apiserver restarts it
// is taken out of every node's proxy, and put back once ready; and after a reload on a worker
// the old nginx workers are told to close, so its clients reconnect through the new
// configuration.

// asideOn are the step's planned set-aside rewrites on one node.
func asideOn(st plan.Step, node string) []host.FileChange {
	var out []host.FileChange
	for _, c := range st.Aside {
		if c.Host == node {
			out = append(out, c)
		}
	}
	return out
}

// asideHosts are the nodes a step sets its apiserver aside on, sorted.
func asideHosts(st plan.Step) []string {
	var out []string
	for _, c := range st.Aside {
		if !slices.Contains(out, c.Host) {
			out = append(out, c.Host)
		}
	}
	sort.Strings(out)
	return out
}

// proxyHosts are the nodes whose proxy stays, sorted.
func (r *run) proxyHosts() []string {
	var out []string
	for name := range r.p.Facts.LB {
		if !r.leaving(name) && !r.offline(name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func reversed(cs []host.FileChange) []host.FileChange {
	out := make([]host.FileChange, len(cs))
	for i, c := range cs {
		out[i] = host.FileChange{Host: c.Host, Path: c.Path, Before: c.After, After: c.Before}
	}
	return out
}

// Old workers are cut at most asideCutBatch proxies per asideCutPause (r.cutPace), each as
// soon as its own reload is done. What limits the pace is the surviving apiservers, not the
// nodes: every node's clients (its kubelet and kube-proxy, a few connections each) reconnect
// at once and resume their watches, each a TLS handshake and a few requests served from the
// watch cache. 64 nodes are a few hundred such requests, within one apiserver's default
// --max-requests-inflight (400) and its priority and fairness seats, and spreading each 64
// over half a second lets them finish before the next land: 1,000 nodes take about 8 s at
// the most instead of 1,000 staggers (over 8 minutes). Cutting as each reload ends, not in
// a phase after the last one, spends no pause where the reloads are slower than the pace.
const (
	asideCutBatch = 64
	asideCutPause = 500 * time.Millisecond
)

// cutOldWorkers ends the old workers of a node's proxy once the run's pace allows.
func (r *run) cutOldWorkers(ctx context.Context, node string) error {
	r.cutPaceOnce.Do(func() {
		r.cutPace = rate.NewLimiter(rate.Every(asideCutPause/asideCutBatch), asideCutBatch)
	})
	if err := r.cutPace.Wait(ctx); err != nil {
		return err
	}
	h, ih, err := r.host(ctx, node)
	if err != nil {
		return err
	}
	return r.lbExecutor(node).CutOldWorkers(ctx, h, ih.Paths)
}

// setAside makes the step's planned set-aside rewrites (st.Aside: its apiserver marked down
// on every node's proxy) when aside is true, or puts the planned configs back, on up to
// lbConcurrency nodes at once. Nodes already in
// the wanted state are left alone, so it also repairs what a crash in the middle of a restart
// left. Aside, the old workers of each worker's proxy are then ended, paced (see
// asideCutBatch). A failed aside puts back every proxy it set aside, whatever ctx says, so
// an apiserver that is not restarted is not left out of some proxies; the error names every
// node that failed.
func (r *run) setAside(ctx context.Context, st plan.Step, aside bool) error {
	return r.moveAside(ctx, st, aside, nil)
}

// putBack puts a restarted apiserver back into the proxies, as setAside(false) does, except
// on the nodes whose own lb/update step follows in this run with no other restart between
// (updateFollows): there the planned config is written back and left for that step's
// reload, which loads it with its own change. Until then such a node's proxy keeps serving
// through the other apiservers, which are all running. It says how many nodes it left so.
func (r *run) putBack(ctx context.Context, st plan.Step) (int, error) {
	staged := r.updateFollows(st)
	n := 0
	for node, ok := range staged {
		if ok {
			r.staged.Store(node, r.apiserverAddr(st.Host))
			n++
		}
	}
	return n, r.moveAside(ctx, st, false, staged)
}

// updateFollows are the nodes of st's set-aside whose lb/update step runs later in this run
// (selected, not ended in an earlier run) with no step setting another apiserver aside
// before it.
func (r *run) updateFollows(st plan.Step) map[string]bool {
	out := map[string]bool{}
	after := false
	for _, s := range r.p.Steps {
		switch {
		case s.ID == st.ID:
			after = true
		case !after:
		case len(s.Aside) > 0:
			return out
		case s.Kind == plan.KindLBUpdate && len(asideOn(st, s.Host)) > 0:
			out[s.Host] = r.sel.Runs(s) && !r.history.Ended[s.ID]
		}
	}
	return out
}

func (r *run) moveAside(ctx context.Context, st plan.Step, aside bool, staged map[string]bool) error {
	errs := host.ForEach(ctx, asideHosts(st), r.lbConcurrency(), func(ctx context.Context, node string) error {
		changed, err := r.setAsideOn(ctx, st, node, aside, staged[node])
		if err == nil && changed && aside && r.cutsOldWorkers(node) {
			err = r.cutOldWorkers(ctx, node)
		}
		return err
	})
	if len(errs) == 0 {
		return nil
	}
	err := nodeErrors(errs)
	addr := r.apiserverAddr(st.Host)
	if aside {
		if perr := r.setAside(context.WithoutCancel(ctx), st, false); perr != nil {
			return fmt.Errorf("%w; and putting %s back into the proxies failed too (a rerun does): %v", err, addr, perr)
		}
		return fmt.Errorf("%w; %s was put back into every proxy", err, addr)
	}
	return err
}

// setAsideOn is setAside on one node; changed says whether it rewrote and reloaded the proxy.
// With stage, it only writes the files (lb.Executor.Stage).
func (r *run) setAsideOn(ctx context.Context, st plan.Step, node string, aside, stage bool) (bool, error) {
	changes := asideOn(st, node)
	if !aside {
		changes = reversed(changes)
	}
	h, ih, err := r.host(ctx, node)
	if err != nil {
		return false, err
	}
	ex := r.lbExecutor(node)
	t := lb.NodeTarget{Host: h, Paths: ih.Paths, Changes: changes, Listen: r.proxyListen(node, ih)}
	if t.Current = guessBefore(changes); t.Current != nil {
		changed, err := moveProxy(ctx, ex, t, stage)
		if !errors.Is(err, host.ErrFileChanged) {
			return changed, err
		}
	}
	state, read, err := readFileState(ctx, h, changes)
	if err != nil {
		return false, err
	}
	if state == "after" || (state == "drift" && !aside) {
		// Already so, or (putting back) not ours to touch: the planned LB step checks it.
		return false, nil
	}
	t.Current = read
	return moveProxy(ctx, ex, t, stage)
}

func moveProxy(ctx context.Context, ex *lb.Executor, t lb.NodeTarget, stage bool) (bool, error) {
	if stage {
		_, err := ex.Stage(ctx, t)
		return false, err
	}
	if _, err := ex.Apply(ctx, t); err != nil {
		return false, err
	}
	return true, nil
}

// guessBefore is what a node's one proxy file most likely holds when a change is due: its
// content before the change, as planned. Given as lb.NodeTarget.Current, it spares the read
// of the file, one SSH command on every node of a fan-out: the write checks the guess on the
// node as it replaces the file, and a wrong one (a resumed run, an edited file) fails with
// host.ErrFileChanged before anything is written, sending the caller back to reading it.
// nil for several files, where a wrong guess could come after a first file was written.
func guessBefore(changes []host.FileChange) map[string]string {
	if len(changes) != 1 {
		return nil
	}
	return map[string]string{changes[0].Path: changes[0].Before}
}

// nodeErrors joins errors by node, sorted by node, naming how many failed.
func nodeErrors(errs map[string]error) error {
	names := make([]string, 0, len(errs))
	for n := range errs {
		names = append(names, n)
	}
	sort.Strings(names)
	joined := make([]error, 0, len(names))
	for _, n := range names {
		joined = append(joined, fmt.Errorf("%s: %w", n, errs[n]))
	}
	return fmt.Errorf("%d node proxies failed (%s): %w", len(names), strings.Join(names, ", "), errors.Join(joined...))
}

// cutsOldWorkers says whether a node's proxy has its old workers ended after a reload: on
// workers, whose clients (kubelets, health checks) reconnect cheaply; not on masters, where
// an abrupt close makes the controller-manager relist everything and stall the next
// apiserver (in the lab for over a second, even on /livez), while the apiserver's own
// graceful shutdown (GOAWAY) lets its watches resume. A master whose keepalived may hold a VIP
// is cut like a worker: its proxy serves every client of the VIP, whose kept connections would
// otherwise stay on the apiserver being restarted or stopped (its /readyz failing).
func (r *run) cutsOldWorkers(node string) bool {
	ih, ok := r.planned(node)
	return ok && (!ih.Has(inventory.RoleMaster) || r.mayHoldVIP(node))
}

// lbExecutor is the proxy executor for a node, for the proxy the plan observed there (nginx
// or haproxy: the plan's facts, which apply checked against the live hosts before it ran).
// It detects per node whether systemd runs it (lb.ReloadDetect): a node whose nginx no unit
// can run (no systemd) is reloaded by signal, one with systemd through its nginx_unit as
// always; haproxy only through its unit. One per node for the run (see lb.NewNodeExecutor).
func (r *run) lbExecutor(node string) *lb.Executor {
	if ex, ok := r.lbExecs.Load(node); ok {
		return ex.(*lb.Executor)
	}
	ex, _ := r.lbExecs.LoadOrStore(node, lb.NewNodeExecutor(lb.ReloadDetect, r.p.Facts.LB[node].Kind))
	return ex.(*lb.Executor)
}

// proxyListen is where to probe a node's proxy: for haproxy, where its config binds the
// apiservers' frontend (observed); for nginx, the inventory's nginx_listen, as always.
func (r *run) proxyListen(node string, ih *inventory.Host) string {
	if cfg := r.p.Facts.LB[node]; cfg.Kind == lb.KindHAProxy && cfg.Listen != "" {
		return cfg.Listen
	}
	return ih.Paths.NginxListen
}

// proxyUnit is the unit of a node's proxy.
func (r *run) proxyUnit(node string, ih *inventory.Host) string {
	if r.p.Facts.LB[node].Kind == lb.KindHAProxy {
		_, unit, _ := ih.Paths.HAProxyPaths()
		return unit
	}
	return ih.Paths.NginxUnit
}

// apiserverAddr is the address the proxies know a master's apiserver by.
func (r *run) apiserverAddr(name string) string {
	ih, ok := r.planned(name)
	if !ok {
		return ""
	}
	port := ih.Paths.APIServerPort
	if port == 0 {
		port = 6443
	}
	return net.JoinHostPort(ih.Address, strconv.Itoa(port))
}
