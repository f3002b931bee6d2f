package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/vip"
)

var (
	_ = register(plan.KindVIPRelease, typed((*run).vipReleaseStep))
	_ = register(plan.KindVIPUpdate, typed((*run).vipUpdateStep))
)

// vipMoveTimeout bounds the wait for a backup to take a VIP over. A stopping keepalived hands
// it over at once; a backup that missed that advertisement takes it after the master-down
// interval (three advertisement intervals plus skew, a few seconds at the usual advert_int).
var vipMoveTimeout = 20 * time.Second

// vipReleaseStep stops keepalived on a leaving host and proves every one of its VIPs held by
// exactly one other host, a staying one unless another leaving host's release comes later,
// and answering there.
func (r *run) vipReleaseStep(st plan.Step, p plan.VIPReleaseParams) executor {
	return executor{
		phase: "moving " + strings.Join(p.VIPs, ", ") + " off the leaving " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return false, "", err
			}
			stopped, err := vip.Stopped(ctx, h, p.Unit)
			if err != nil || !stopped {
				return false, "", err
			}
			held, err := vip.HeldOn(ctx, h)
			if err != nil {
				return false, "", err
			}
			for _, v := range p.VIPs {
				if slices.Contains(held, v) {
					return false, "", nil
				}
			}
			holders, err := r.vipHolders(ctx, st.Host, p.VIPs)
			if err != nil {
				return false, "", nil
			}
			return true, "keepalived stopped and disabled; " + holders, nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			// The plan named the backups; what counts is that one of them runs keepalived for
			// each VIP now, or stopping this one takes the VIP away from every client.
			for _, v := range p.VIPs {
				if err := r.liveBackup(ctx, p.Backups, v, p.Unit); err != nil {
					return outcome{}, err
				}
			}
			if err := vip.Release(ctx, h, p.Unit); err != nil {
				return outcome{}, err
			}
			changes := []Change{{Host: st.Host, Unit: p.Unit, Action: "stop+disable"}}
			holders, err := r.vipHolders(ctx, st.Host, p.VIPs)
			if err != nil {
				return outcome{changes: changes}, err
			}
			return outcome{changes: changes, note: "keepalived stopped and disabled; " + holders}, nil
		},
	}
}

// liveBackup checks that a staying host runs keepalived with addr in its config now.
func (r *run) liveBackup(ctx context.Context, backups []string, addr, unit string) error {
	var seen []string
	for _, name := range backups {
		h, _, err := r.host(ctx, name)
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		o, _, err := vip.Observe(ctx, h, vip.DefaultConfig, unit)
		switch {
		case err != nil:
			seen = append(seen, fmt.Sprintf("%s: %v", name, err))
		case !o.Active:
			seen = append(seen, name+": keepalived not running")
		case !slices.Contains(o.Config.VIPs(), addr):
			seen = append(seen, name+": "+addr+" not in its config")
		default:
			return nil
		}
	}
	return fmt.Errorf("%w: no staying host runs keepalived for VIP %s now (%s): stopping keepalived on the leaving host would take the VIP away; start keepalived for it on a staying master, then apply again",
		ErrPreflight, addr, strings.Join(seen, "; "))
}

// vipHolders waits until each VIP is held by exactly one host other than from, among the
// hosts the plan saw running keepalived, and, where mastershrink's own kubeconfig points at
// the VIP, until the API answers through it.
func (r *run) vipHolders(ctx context.Context, from string, vips []string) (string, error) {
	var hosts []host.Host
	for _, name := range slices.Sorted(maps.Keys(r.p.Facts.VRRP)) {
		if r.offline(name) {
			continue
		}
		h, _, err := r.host(ctx, name)
		if err != nil {
			return "", err
		}
		hosts = append(hosts, h)
	}
	var said []string
	for _, v := range vips {
		holder, err := vip.WaitHolder(ctx, hosts, v, vipMoveTimeout)
		if err != nil {
			return "", err
		}
		if holder == from {
			return "", fmt.Errorf("VIP %s is still on %s after keepalived stopped there", v, from)
		}
		where := v + " on " + holder
		if r.leaving(holder) {
			where += " (leaving too: its own release moves it on)"
		} else if r.kubeServerIs(v) {
			if err := r.answersThrough(ctx, v); err != nil {
				return "", err
			}
			where += ", /readyz through it answers"
		} else {
			// Which port clients use on the VIP is known only from a kubeconfig that names it.
			where += " (mastershrink's kubeconfig does not use it, so /readyz through it is not asked)"
		}
		said = append(said, where)
	}
	return strings.Join(said, "; "), nil
}

// kubeServerIs says whether mastershrink's kubeconfig reaches the API at addr.
func (r *run) kubeServerIs(addr string) bool {
	u, err := url.Parse(r.p.Facts.KubeServer)
	return err == nil && u.Hostname() == addr
}

// answersThrough asks the API for /readyz until three answers in a row come back ready,
// through the kubeconfig's server (the VIP): a new holder that took the address but whose
// proxy does not answer is a VIP that clients cannot use.
func (r *run) answersThrough(ctx context.Context, addr string) error {
	kube, _, err := r.c.Kube()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(vipMoveTimeout)
	ok := 0
	var last error
	for ok < 3 {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil {
			ok++
		} else {
			ok, last = 0, err
		}
		if ok < 3 {
			if time.Now().After(deadline) {
				return fmt.Errorf("the API does not answer through the VIP %s: %v", addr, last)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// vipUpdateStep rewrites a staying keepalived's unicast peers, checks the config and reloads
// keepalived, then proves the VIP still held by exactly one host.
func (r *run) vipUpdateStep(st plan.Step, p plan.VIPUpdateParams) executor {
	return executor{
		phase: "updating keepalived's peers on " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return false, "", err
			}
			s, err := fileState(ctx, h, st.Files)
			// A reload leaves no trace to check: only a journaled end proves it.
			return err == nil && s == "after" && (!p.Reload || r.history.Ended[st.ID]), "peers rewritten, keepalived reloaded", err
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			s, err := fileState(ctx, h, st.Files)
			if err != nil {
				return outcome{}, err
			}
			if s == "drift" {
				return outcome{}, fmt.Errorf("%w: %s:%s changed since the plan was made: plan again", ErrPreflight, st.Host, st.Files[0].Path)
			}
			backups := map[string]string{}
			for _, f := range st.Files {
				res, err := h.WriteFile(ctx, f.Path, []byte(f.After), host.WriteOptions{Backup: true})
				if err != nil {
					return outcome{}, err
				}
				if res.Backup != "" {
					backups[f.Path] = res.Backup
				}
				if _, err := h.Run(ctx, "keepalived --config-test --use-file "+machine.Quote(f.Path)); err != nil {
					var restore error
					if b := backups[f.Path]; b != "" {
						_, restore = h.WriteFile(ctx, f.Path, []byte(f.Before), host.WriteOptions{})
					}
					return outcome{}, errors.Join(fmt.Errorf("keepalived refuses the new %s on %s, the old one is back: %w", f.Path, st.Host, err), restore)
				}
			}
			changes := fileChanges(st.Host, st.Files, backups, func(p string) bool { _, ok := backups[p]; return ok })
			// A reload re-elects: keepalived re-enters BACKUP and a holder drops its VIPs for
			// three advertisement intervals (4 s in the lab, every client failing). The
			// holder keeps running its old peer list, which only sends advertisements to
			// the stopped leaving hosts, and reads the new file at its next restart.
			reload := p.Reload
			holds, err := r.holdsVIP(ctx, h, st.Host)
			if err != nil {
				return outcome{}, err
			}
			if holds != "" {
				reload = false
			}
			if reload {
				sd, err := h.Systemd(ctx)
				if err != nil {
					return outcome{}, err
				}
				err = sd.Reload(ctx, p.Unit)
				sd.Close()
				if err != nil {
					return outcome{}, err
				}
				changes = append(changes, Change{Host: st.Host, Unit: p.Unit, Action: "reload"})
			}
			out := outcome{backups: hostBackups(st.Host, backups), changes: changes, note: "keepalived --config-test passed"}
			switch {
			case reload:
				out.note += ", reloaded"
			case p.Reload:
				out.note += ", not reloaded: it holds " + holds + " (the new file takes effect at keepalived's next restart)"
			}
			holders, err := r.vipHolders(ctx, "", r.p.Facts.VRRP[st.Host].Config.VIPs())
			if err != nil {
				return out, err
			}
			out.note += "; " + holders
			return out, nil
		},
	}
}

// undoVIPUpdate checks the keepalived config undo put back and reloads keepalived, unless it
// holds one of the config's VIPs (a reload re-elects: see vipUpdateStep).
func undoVIPUpdate(ctx context.Context, h host.Host, files []UndoFile) error {
	for _, f := range files {
		if _, err := h.Run(ctx, "keepalived --config-test --use-file "+machine.Quote(f.Path)); err != nil {
			return fmt.Errorf("keepalived refuses the restored %s: %w", f.Path, err)
		}
		data, err := h.ReadFile(ctx, f.Path)
		if err != nil {
			return err
		}
		c, err := vip.Parse(string(data))
		if err != nil {
			return err
		}
		held, err := vip.HeldOn(ctx, h)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(c.VIPs(), func(v string) bool { return slices.Contains(held, v) }) {
			continue
		}
		sd, err := h.Systemd(ctx)
		if err != nil {
			return err
		}
		err = sd.Reload(ctx, vip.DefaultUnit)
		sd.Close()
		if err != nil {
			return fmt.Errorf("reload %s: %w", vip.DefaultUnit, err)
		}
	}
	return nil
}

// mayHoldVIP says whether a staying host ran keepalived with a VIP when the plan was made.
func (r *run) mayHoldVIP(name string) bool {
	o, ok := r.p.Facts.VRRP[name]
	return ok && o.Active && !r.leaving(name) && len(o.Config.VIPs()) > 0
}

// holdsVIP names the VIPs of the plan's VRRP facts that h holds now ("" for none).
func (r *run) holdsVIP(ctx context.Context, h host.Host, name string) (string, error) {
	held, err := vip.HeldOn(ctx, h)
	if err != nil {
		return "", err
	}
	var out []string
	for _, v := range r.p.Facts.VRRP[name].Config.VIPs() {
		if slices.Contains(held, v) {
			out = append(out, v)
		}
	}
	return strings.Join(out, ", "), nil
}
