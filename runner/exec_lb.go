package runner

import (
	"context"
	"errors"
	"fmt"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
)

var (
	_ = register(plan.KindLBUpdate, typed((*run).lbStep))
	_ = register(plan.KindLBStop, typed((*run).lbStopStep))
)

func (r *run) lbStep(st plan.Step, _ plan.LBUpdateParams) executor {
	return executor{
		phase: "updating the apiserver proxy on " + st.Host,
		apply: func(ctx context.Context) (outcome, error) {
			h, ih, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			ex := r.lbExecutor(st.Host)
			proxy := "nginx"
			test := "nginx -t"
			if ex.Kind == lb.KindHAProxy {
				proxy, test = "haproxy", "haproxy -c"
			}
			t := lb.NodeTarget{Host: h, Paths: ih.Paths, Changes: st.Files, Listen: r.proxyListen(st.Host, ih), Current: guessBefore(st.Files)}
			res, err := ex.Apply(ctx, t)
			if t.Current != nil && errors.Is(err, host.ErrFileChanged) {
				t.Current = nil // a wrong guess, nothing written: read the file
				res, err = ex.Apply(ctx, t)
			}
			if err != nil {
				if addr, ok := r.staged.Load(st.Host); ok {
					err = fmt.Errorf("%w (%s's %s still runs without %s, as during its restart: the other apiservers serve its clients until this step succeeds)", err, st.Host, proxy, addr)
				}
				return outcome{}, err
			}
			if res.Skipped {
				return outcome{already: true, note: proxy + " runs the new config; probe through it answers"}, nil
			}
			if r.cutsOldWorkers(st.Host) {
				if err := r.cutOldWorkers(ctx, st.Host); err != nil {
					return outcome{}, err
				}
			}
			changes := fileChanges(st.Host, st.Files, res.Backups, func(p string) bool { _, ok := res.Backups[p]; return ok })
			changes = append(changes, Change{Host: st.Host, Unit: r.proxyUnit(st.Host, ih), Action: "reload"})
			return outcome{backups: hostBackups(st.Host, res.Backups), changes: changes, note: test + " passed, reloaded, probe through it answers"}, nil
		},
	}
}

// lbStopStep stops and disables the proxy of a host that left the cluster.
func (r *run) lbStopStep(st plan.Step, p plan.LBStopParams) executor {
	unit := p.Unit
	return executor{
		phase: "stopping the proxy on the leaving " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return false, "", err
			}
			sd, err := h.Systemd(ctx)
			if err != nil {
				return false, "", err
			}
			defer sd.Close()
			s, err := sd.Status(ctx, unit)
			if err != nil {
				return false, "", err
			}
			gone := s.LoadState == "not-found" || ((s.ActiveState == "inactive" || s.ActiveState == "failed") &&
				(s.UnitFileState == "disabled" || s.UnitFileState == "masked" || s.UnitFileState == "static"))
			return gone, unit + " inactive and disabled", nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			if err := etcd.StopAndDisable(ctx, h, unit); err != nil {
				return outcome{}, err
			}
			return outcome{changes: []Change{{Host: st.Host, Unit: unit, Action: "stop+disable"}}, note: "stopped and disabled " + unit}, nil
		},
	}
}
