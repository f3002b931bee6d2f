package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

var (
	_ = register(plan.KindAPIServerRewrite, typed((*run).apiserverStep))
	_ = register(plan.KindRetire, typed((*run).retireStep))
)

// ---- apiserver

// componentRestarts are the restarts of an apiserver step, in the plan's order, each with
// the planned files its component reads.
func (r *run) componentRestarts(ctx context.Context, st plan.Step, restart []string) (host.Host, []apiserver.RestartStep, error) {
	h, ih, err := r.host(ctx, st.Host)
	if err != nil {
		return nil, nil, err
	}
	comps, err := apiserver.Observe(ctx, h, ih.Paths)
	if err != nil {
		return nil, nil, err
	}
	var steps []apiserver.RestartStep
	for _, name := range restart {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		var c *apiserver.Component
		for _, x := range comps.Each() {
			if x.Name == name {
				c = x
			}
		}
		if c == nil || !c.Present {
			return nil, nil, fmt.Errorf("%s on %s: the plan restarts it but systemd does not know it", name, st.Host)
		}
		rs := apiserver.RestartStep{Host: h, Component: name, Unit: c.UnitName}
		for _, f := range st.Files {
			if c.Uses(f.Path) {
				rs.Changes = append(rs.Changes, f)
			}
		}
		if name == apiserver.KubeAPIServer {
			_, probe, deadline, err := r.readyProbe(ctx, st.Host)
			if err != nil {
				return nil, nil, err
			}
			rs.Probe, rs.Deadline = &probe, deadline
		}
		steps = append(steps, rs)
	}
	if len(steps) == 0 {
		// A plan of before the components were listed: the apiserver alone.
		_, probe, deadline, err := r.readyProbe(ctx, st.Host)
		if err != nil {
			return nil, nil, err
		}
		steps = append(steps, apiserver.RestartStep{Host: h, Component: apiserver.KubeAPIServer, Unit: comps.APIServer.UnitName,
			Changes: st.Files, Probe: &probe, Deadline: deadline})
	}
	return h, steps, nil
}

func paths(cs []host.FileChange) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Path)
	}
	return out
}

func (r *run) apiserverStep(st plan.Step, p plan.APIServerUpdateParams) executor {
	restartsAPIServer := len(p.Restart) == 0 || slices.Contains(p.Restart, apiserver.KubeAPIServer)
	return executor{
		phase: "restarting the control plane on " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, steps, err := r.componentRestarts(ctx, st, p.Restart)
			if err != nil {
				return false, "", err
			}
			if s, err := fileState(ctx, h, st.Files); err != nil || s != "after" {
				return false, "", err
			}
			for _, rs := range steps {
				ps := paths(rs.Changes)
				if len(ps) == 0 {
					ps = paths(st.Files)
				}
				if ok, err := restartedSince(ctx, h, rs.Unit, ps); err != nil || !ok {
					return false, "", err
				}
				if rs.Probe != nil && rs.Probe.Check(ctx, h) != nil {
					return false, "", nil
				}
			}
			// A run stopped in the middle of the restart may have left it out of the proxies.
			if restartsAPIServer {
				if err := r.setAside(ctx, st, false); err != nil {
					return false, "", err
				}
			}
			return true, "runs the new files and is ready", nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			_, steps, err := r.componentRestarts(ctx, st, p.Restart)
			if err != nil {
				return outcome{}, err
			}
			addr := r.apiserverAddr(st.Host)
			aside := restartsAPIServer && r.othersReady(ctx, st.Host)
			if aside {
				if err := r.setAside(ctx, st, true); err != nil {
					return outcome{}, fmt.Errorf("take %s out of the proxies before its restart: %w", addr, err)
				}
			}
			results, err := apiserver.RollingRestart(ctx, steps, r.detail())
			staged := 0
			if aside {
				// Back in either way: a failed restart was rolled back to the old files.
				var perr error
				if err == nil {
					staged, perr = r.putBack(context.WithoutCancel(ctx), st)
				} else {
					perr = r.setAside(context.WithoutCancel(ctx), st, false)
				}
				if perr != nil {
					if err == nil {
						err = fmt.Errorf("put %s back into the proxies: %w", addr, perr)
					} else {
						// Say so: the apiserver may be serving again, yet out of some proxies.
						err = fmt.Errorf("%w; and %s could not be put back into every proxy (a rerun does): %v", err, addr, perr)
					}
				}
			}
			if err != nil {
				return outcome{}, err
			}
			var changes []Change
			backups := map[string]string{}
			var took []string
			for _, res := range results {
				for p, b := range res.Backups {
					backups[p] = b
				}
				written := func(p string) bool { return slices.Contains(res.Written, p) }
				changes = append(changes, fileChanges(st.Host, st.Files, res.Backups, written)...)
				changes = append(changes, Change{Host: st.Host, Unit: res.Unit, Action: "restart"})
				took = append(took, fmt.Sprintf("%s %s", strings.TrimSuffix(res.Unit, ".service"), formatDuration(res.Restarted)))
			}
			note := "restarted and ready: " + strings.Join(took, ", ")
			switch {
			case staged > 0:
				note += fmt.Sprintf(" (out of the proxies meanwhile; back in %d of them with their lb/update step's reload, which follows)", staged)
			case aside:
				note += " (out of the proxies meanwhile)"
			}
			return outcome{backups: hostBackups(st.Host, backups), changes: changes, note: note}, nil
		},
	}
}

// othersReady says whether another master's apiserver is ready to serve while name's restarts.
func (r *run) othersReady(ctx context.Context, name string) bool {
	for _, ih := range r.plannedHosts() {
		if ih.Has(inventory.RoleMaster) && ih.Name != name && !r.offline(ih.Name) && probeReady(ctx, r, ih.Name) {
			return true
		}
	}
	return false
}

func probeReady(ctx context.Context, r *run, name string) bool {
	h, probe, _, err := r.readyProbe(ctx, name)
	return err == nil && probe.Check(ctx, h) == nil
}

// ---- retire

func (r *run) retireStep(st plan.Step, p plan.RetireParams) executor {
	units := p.Units
	if p.Offline {
		return executor{phase: "noting the offline master " + st.Host, apply: func(ctx context.Context) (outcome, error) {
			return outcome{warnings: []string{fmt.Sprintf("%s is offline: stop and disable %s there by hand if it comes back", st.Host, strings.Join(units, ", "))}}, nil
		}}
	}
	return executor{
		phase: "stopping the control plane on " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, ih, err := r.host(ctx, st.Host)
			if err != nil {
				return false, "", err
			}
			ok, err := apiserver.Retired(ctx, h, ih.Paths)
			return ok, "units inactive and disabled", err
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, ih, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			if err := r.proxiesRouteAround(ctx, st.Host); err != nil {
				return outcome{}, err
			}
			if !r.survivorReady(ctx) {
				return outcome{}, fmt.Errorf("%w: stopping the apiserver on %s now would leave the cluster without one; bring a survivor's kube-apiserver back (systemctl status, journalctl -u) and rerun, nothing on %s was stopped",
					ErrNoSurvivorReady, st.Host, st.Host)
			}
			if err := apiserver.RetireComponents(ctx, h, ih.Paths); err != nil {
				return outcome{}, err
			}
			var changes []Change
			for _, u := range units {
				changes = append(changes, Change{Host: st.Host, Unit: u, Action: "stop+disable"})
			}
			return outcome{changes: changes, note: "stopped and disabled " + strings.Join(units, ", ")}, nil
		},
	}
}

// ErrNoSurvivorReady means no surviving master's apiserver answers /readyz.
var ErrNoSurvivorReady = errors.New("no surviving apiserver is ready")

// survivorReady says whether a surviving master's apiserver answers /readyz now.
func (r *run) survivorReady(ctx context.Context) bool {
	for _, ih := range r.survivingMasters() {
		if !r.offline(ih.Name) && probeReady(ctx, r, ih.Name) {
			return true
		}
	}
	return false
}

// ErrStillRouted means a node proxy would still send requests to an apiserver a step stops.
var ErrStillRouted = errors.New("a node proxy still routes to the apiserver")

// proxiesRouteAround proves, on the hosts, that no staying node proxy still sends requests to
// the leaving master's apiserver: every lb/update step of the plan has its rewrite in place
// now, whatever the journal says. A proxy that is not would send a share of its node's
// requests to a stopped apiserver.
func (r *run) proxiesRouteAround(ctx context.Context, leaving string) error {
	steps := map[string]plan.Step{}
	var nodes []string
	for _, s := range r.p.Steps {
		if s.Kind == plan.KindLBUpdate && len(s.Files) > 0 && !r.offline(s.Host) {
			steps[s.Host] = s
			nodes = append(nodes, s.Host)
		}
	}
	errs := host.ForEach(ctx, nodes, r.lbConcurrency(), func(ctx context.Context, node string) error {
		h, _, err := r.host(ctx, node)
		if err != nil {
			return err
		}
		state, err := fileState(ctx, h, steps[node].Files)
		if err != nil {
			return err
		}
		if state != "after" {
			return fmt.Errorf("%w: its config is not as %s writes it (%s); run that step first, nothing on %s was stopped",
				ErrStillRouted, steps[node].ID, state, leaving)
		}
		return nil
	})
	if len(errs) > 0 {
		return fmt.Errorf("before stopping the apiserver on %s: %w", leaving, nodeErrors(errs))
	}
	return nil
}
