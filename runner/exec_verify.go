package runner

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/plan"
)

var (
	_ = register(plan.KindVerify, untyped(func(r *run, _ plan.Step) executor {
		return executor{phase: "verifying the result", apply: r.verify}
	}))
)

// ---- final verification

func (r *run) verify(ctx context.Context) (outcome, error) {
	// The checks on the nodes run while the API checks below wait: the leader leases move to
	// a survivor up to a lease duration after a leader's master was retired, and over a fleet
	// the probes and the scan then cost no time of their own. Nothing of it outlives the step.
	nctx, cancel := context.WithCancel(ctx)
	var nc nodeChecks
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc = r.checkNodes(nctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	var problems []string
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return outcome{}, err
	}
	f, err := cli.Observe(ctx)
	if err != nil {
		return outcome{}, err
	}
	for _, id := range r.leavingIDs() {
		if m, ok := f.Member(id); ok {
			problems = append(problems, fmt.Sprintf("etcd member %s (%x) is still a member", m.Name, id))
		}
	}
	for _, m := range f.Members {
		if !m.Healthy {
			problems = append(problems, fmt.Sprintf("etcd member %s unhealthy: %s", m.Name, m.Error))
		}
	}
	if f.LeaderID == 0 {
		problems = append(problems, "etcd has no leader")
	}

	kube, _, err := r.c.Kube()
	if err != nil {
		return outcome{}, err
	}
	for _, s := range r.p.Steps {
		if s.Kind == plan.KindDeleteNode {
			dp, _ := plan.DecodeParams[plan.DeleteNodeParams](s)
			if gone, _, err := r.nodeGone(ctx, dp.Node); err != nil || !gone {
				problems = append(problems, fmt.Sprintf("Node %s still exists (%v)", dp.Node, err))
			}
		}
	}
	var addrs, names []string
	for _, ih := range r.survivingMasters() {
		addrs = append(addrs, ih.Address)
		names = append(names, ih.Name)
	}
	if err := apiserver.WaitEndpointSlice(ctx, kube, addrs, 90*time.Second); err != nil {
		problems = append(problems, err.Error())
	}
	if err := apiserver.WaitLeadersOnSurvivors(ctx, kube, names, 90*time.Second, r.detail()); err != nil {
		problems = append(problems, err.Error())
	}
	<-done
	problems = append(problems, nc.proxyProblems...)
	if len(problems) > 0 {
		return outcome{}, fmt.Errorf("the cluster is not as planned: %s", strings.Join(problems, "; "))
	}
	return outcome{warnings: nc.left, note: fmt.Sprintf("%d etcd member(s) healthy, /readyz through %d proxies, endpoints %s", len(f.Members), nc.proxies, strings.Join(addrs, ","))}, nil
}

// nodeChecks are the final check's findings on the nodes.
type nodeChecks struct {
	proxyProblems []string // proxies through which the apiserver does not answer
	proxies       int      // proxies through which it does
	left          []string // leftovers and secrets still on the hosts: warnings
}

// checkNodes probes the apiservers through every staying proxy, with the proxy phase's
// bound (one at a time, a thousand nodes would be minutes), and lists what the hosts still
// hold of the removed masters.
func (r *run) checkNodes(ctx context.Context) nodeChecks {
	var nc nodeChecks
	proxyNames := r.proxyHosts()
	errs := host.ForEach(ctx, proxyNames, r.lbConcurrency(), func(ctx context.Context, name string) error {
		h, ih, err := r.host(ctx, name)
		if err != nil {
			return err
		}
		listen := r.proxyListen(name, ih)
		return pollFor(ctx, 30*time.Second, func(ctx context.Context) error { return lb.Probe(ctx, h, listen, nil) })
	})
	for _, name := range proxyNames {
		if err := errs[name]; err != nil {
			nc.proxyProblems = append(nc.proxyProblems, err.Error())
		} else {
			nc.proxies++
		}
	}
	nc.left = append(r.scanLeftovers(ctx), r.leftSecrets(ctx)...)
	return nc
}

// leftSecrets names, for every leaving host that can be reached, the private keys and the
// etcd data directory (every Secret of the cluster) it still holds: the shrink retired its
// units but did not wipe it, and the operator decides when to.
func (r *run) leftSecrets(ctx context.Context) []string {
	var out []string
	for _, name := range r.p.Target.Remove {
		if r.offline(name) {
			continue
		}
		h, err := r.c.Host(ctx, name)
		if err != nil {
			continue
		}
		var dataDirs []string
		if _, dir := r.etcdUnitAndDataDir(name); dir != "DATA_DIR" {
			dataDirs = append(dataDirs, dir)
		}
		left, err := nodes.FindLeftSecrets(ctx, h, nil, dataDirs, 0)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: could not list the keys and data it still holds: %v", name, err))
			continue
		}
		if w := left.Warning(); w != "" {
			out = append(out, w)
		}
	}
	return out
}

func (r *run) rewrote(hostName, path string) bool {
	for _, s := range r.p.Steps {
		for _, f := range s.Files {
			if f.Host == hostName && f.Path == path {
				return true
			}
		}
	}
	return false
}

func pollFor(ctx context.Context, d time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// scanLeftovers lists files on staying hosts that still name a removed address (backups left
// out): the plan's warnings said which it would not rewrite.
func (r *run) scanLeftovers(ctx context.Context) []string {
	var ips []string
	for _, name := range r.p.Target.Remove {
		if ih, ok := r.planned(name); ok {
			ips = append(ips, ih.Address)
		}
	}
	if len(ips) == 0 {
		return nil
	}
	var names []string
	planned := map[string]*inventory.Host{}
	for _, ih := range r.plannedHosts() {
		if r.leaving(ih.Name) || r.offline(ih.Name) || slices.Contains(r.p.Target.Drain, ih.Name) {
			continue
		}
		names = append(names, ih.Name)
		planned[ih.Name] = ih
	}
	// Every staying host is scanned, with the proxy phase's bound: one at a time, the
	// scan was most of the final check's time past a hundred nodes.
	found, _ := host.Collect(ctx, names, r.lbConcurrency(), func(ctx context.Context, name string) ([]string, error) {
		ih := planned[name]
		h, err := r.c.Host(ctx, name)
		if err != nil {
			return nil, nil
		}
		cmd := "grep -rlsIE --exclude='*.bak-*'"
		for _, ip := range ips {
			cmd += ` -e '(^|[^0-9.])` + strings.ReplaceAll(ip, ".", `\.`) + `([^0-9]|$)'`
		}
		dirs := []string{"/etc/kubernetes", "/etc/systemd/system"}
		if ih.Paths.NginxConfig != "" {
			dirs = append(dirs, ih.Paths.NginxConfig)
		}
		if r.p.Facts.LB[name].Kind == lb.KindHAProxy {
			hapConfig, _, _ := ih.Paths.HAProxyPaths()
			dirs = append(dirs, hapConfig)
		}
		res, err := h.Run(ctx, cmd+" "+strings.Join(dirs, " ")+" 2>/dev/null || true")
		if err != nil {
			return nil, nil
		}
		var left []string
		for _, l := range strings.Fields(string(res.Stdout)) {
			// Files the plan rewrote name removed servers on purpose ("down" in the proxy).
			if r.rewrote(name, l) {
				continue
			}
			left = append(left, fmt.Sprintf("%s:%s still names a removed address", name, l))
		}
		return left, nil
	})
	var out []string
	for _, name := range names {
		out = append(out, found[name]...)
	}
	return out
}
