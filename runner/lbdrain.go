package runner

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
)

// A TCP proxy without health checks keeps sending requests to an apiserver that is shutting
// down (its /readyz answers 500 until it closes), and old nginx workers keep their clients'
// connections to servers a reload marked down. So before a survivor's apiserver restarts it
// is taken out of every node's proxy, and put back once ready; and after a reload on a worker
// the old nginx workers are told to close, so its clients reconnect through the new
// configuration.

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

// asideChanges are the rewrites that mark addr down in a node's proxy, computed from the
// config as planned (the plan's own LB steps start from that content, so putting it back
// exactly keeps them valid).
func (r *run) asideChanges(node, addr string) ([]host.FileChange, error) {
	return lb.Rewrite(r.p.Facts.LB[node], []string{addr}, lb.MarkDown)
}

func reversed(cs []host.FileChange) []host.FileChange {
	out := make([]host.FileChange, len(cs))
	for i, c := range cs {
		out[i] = host.FileChange{Host: c.Host, Path: c.Path, Before: c.After, After: c.Before}
	}
	return out
}

// setAside marks the apiserver at addr down on every node's proxy (aside true) or puts the
// planned config back (aside false). Nodes already in the wanted state are left alone, so it
// also repairs what a crash in the middle of a restart left. Aside, the old workers of the
// workers' proxies are then ended one node at a time (see cutsOldWorkers).
func (r *run) setAside(ctx context.Context, addr string, aside bool) error {
	var cut []string
	for _, node := range r.proxyHosts() {
		changes, err := r.asideChanges(node, addr)
		if err != nil {
			return fmt.Errorf("proxy on %s: %w", node, err)
		}
		if !aside {
			changes = reversed(changes)
		}
		h, ih, err := r.host(ctx, node)
		if err != nil {
			return err
		}
		state, err := fileState(ctx, h, changes)
		if err != nil {
			return err
		}
		if state == "after" || (state == "drift" && !aside) {
			// Already so, or (putting back) not ours to touch: the planned LB step checks it.
			continue
		}
		var ex lb.Executor
		if _, err := ex.Apply(ctx, lb.NodeTarget{Host: h, Paths: ih.Paths, Changes: changes}); err != nil {
			return err
		}
		if aside && r.cutsOldWorkers(node) {
			cut = append(cut, node)
		}
	}
	for i, node := range cut {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(apiserver.DefaultAsideStagger):
			}
		}
		h, ih, err := r.host(ctx, node)
		if err != nil {
			return err
		}
		if err := cutOldWorkers(ctx, h, ih.Paths.NginxUnit); err != nil {
			return err
		}
	}
	return nil
}

// cutsOldWorkers says whether a node's proxy has its old workers ended after a reload: on
// workers, whose clients (kubelets, health checks) reconnect cheaply; not on masters, where
// an abrupt close makes the controller-manager relist everything and stall the next
// apiserver, while the apiserver's own graceful shutdown lets its watches resume
// (apiserver.Proxy.Cut, measured in the lab).
func (r *run) cutsOldWorkers(node string) bool {
	ih, ok := r.c.Inv.Host(node)
	return ok && !ih.Has(inventory.RoleMaster)
}

// cutOldWorkers tells the nginx workers still finishing connections from before a reload to
// stop now (SIGTERM: a fast shutdown of that worker only).
func cutOldWorkers(ctx context.Context, h host.Host, unit string) error {
	sd, err := h.Systemd(ctx)
	if err != nil {
		return err
	}
	defer sd.Close()
	st, err := sd.Status(ctx, unit)
	if err != nil || st.MainPID <= 0 {
		return err
	}
	cmd := fmt.Sprintf("ps -o pid=,args= --ppid %d | awk '/shutting down/ {print $1}' | xargs -r kill -TERM", st.MainPID)
	if _, err := h.Run(ctx, cmd); err != nil {
		return fmt.Errorf("close old nginx workers on %s: %w", h.Name(), err)
	}
	return nil
}

// apiserverAddr is the address the proxies know a master's apiserver by.
func (r *run) apiserverAddr(name string) string {
	ih, ok := r.c.Inv.Host(name)
	if !ok {
		return ""
	}
	port := ih.Paths.APIServerPort
	if port == 0 {
		port = 6443
	}
	return net.JoinHostPort(ih.Address, strconv.Itoa(port))
}
