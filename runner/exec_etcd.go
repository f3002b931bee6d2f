package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/plan"
)

var (
	_ = register(plan.KindSnapshot, untyped((*run).snapshotStep))
	_ = register(plan.KindMoveLeader, typedOrErr((*run).moveLeaderStep))
	_ = register(plan.KindRemoveMember, typedOrErr((*run).removeMemberStep))
	_ = register(plan.KindStopEtcd, typed((*run).stopEtcdStep))
	_ = register(plan.KindInitialCluster, typed((*run).initialClusterStep))
)

// ---- etcd snapshot

func (r *run) snapshotStep(st plan.Step) executor {
	return executor{
		phase: "taking the etcd snapshot",
		done: func(ctx context.Context) (bool, string, error) {
			s := r.history.Snapshot
			if s == nil || r.freshSnapshot(s) != nil {
				return false, "", nil
			}
			return true, fmt.Sprintf("%s still verifies, taken %s ago", s.Path, formatDuration(time.Since(s.TakenAt))), nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			cli, err := r.c.Etcd(ctx)
			if err != nil {
				return outcome{}, err
			}
			if err := os.MkdirAll(r.opts.SnapshotDir, 0o700); err != nil {
				return outcome{}, fmt.Errorf("snapshot folder: %w", err)
			}
			info, err := cli.Snapshot(ctx, r.opts.SnapshotDir, r.detail())
			if err != nil {
				return outcome{}, err
			}
			s := &Snapshot{Path: info.Path, SHA256: info.SHA256, Size: info.Size, Revision: info.Revision, Keys: info.Keys, TakenAt: time.Now().UTC()}
			return outcome{snapshot: s, note: fmt.Sprintf("from %s: revision %d, %d keys, %s (%s)", info.LeaderName, info.Revision, info.Keys, info.Path, etcd.SnapshotHolds)}, nil
		},
	}
}

// ---- etcd membership

func parseIDs(ids []string) ([]uint64, error) {
	var out []uint64
	for _, x := range ids {
		if x = strings.TrimSpace(x); x == "" {
			continue
		}
		id, err := etcd.ParseID(x)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

func (r *run) moveLeaderStep(st plan.Step, p plan.MoveLeaderParams) (executor, error) {
	leaving, err := parseIDs(p.Leaving)
	if err != nil {
		return executor{}, fmt.Errorf("plan param leaving: %w", err)
	}
	return executor{
		phase: "moving etcd leadership to a survivor",
		done: func(ctx context.Context) (bool, string, error) {
			cli, err := r.c.Etcd(ctx)
			if err != nil {
				return false, "", err
			}
			f, err := cli.Observe(ctx)
			if err != nil {
				return false, "", err
			}
			if l, ok := f.Leader(); ok && !slices.Contains(leaving, l.ID) {
				return true, "the leader is " + l.Name + ", a survivor", nil
			}
			return false, "", nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			from, to, err := r.moveLeader(ctx, leaving)
			if err != nil {
				return outcome{}, err
			}
			return outcome{changes: []Change{{Member: to, Action: "move-leader", Detail: "from " + from}}, note: "from " + from + " to " + to}, nil
		},
	}, nil
}

func (r *run) moveLeader(ctx context.Context, leaving []uint64) (string, string, error) {
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return "", "", err
	}
	f, err := cli.Observe(ctx)
	if err != nil {
		return "", "", err
	}
	to, err := etcd.PickNewLeader(f, leaving)
	if err != nil {
		return "", "", err
	}
	if err := cli.MoveLeader(ctx, to); err != nil {
		return "", "", err
	}
	from, _ := f.Leader()
	m, _ := f.Member(to)
	return from.Name, m.Name, nil
}

// memberAt finds, in a live member list, the planned member: by ID, with the planned peer
// URLs. It returns present=false when no member has that ID and none has those peer URLs (the
// removal is done), and an error naming the member when the ID moved to other peer URLs or
// another member now has the planned address (replaced since the plan was made).
func memberAt(members []etcd.Member, id uint64, peerURLs []string) (present bool, err error) {
	for _, m := range members {
		if m.ID == id {
			if len(peerURLs) > 0 && !slices.Equal(sortedCopy(m.PeerURLs), sortedCopy(peerURLs)) {
				return true, fmt.Errorf("%w: etcd member %s (%x) now has peer URLs %s, the plan says %s: make a new plan",
					plan.ErrStalePlan, m.Name, id, strings.Join(m.PeerURLs, ","), strings.Join(peerURLs, ","))
			}
			return true, nil
		}
	}
	for _, m := range members {
		for _, u := range m.PeerURLs {
			if slices.Contains(peerURLs, u) {
				return false, fmt.Errorf("%w: the etcd member at %s is now %s (%x), not the planned %x: it was replaced since the plan was made; make a new plan",
					plan.ErrStalePlan, u, m.Name, m.ID, id)
			}
		}
	}
	return false, nil
}

func sortedCopy(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

func (r *run) removeMemberStep(st plan.Step, p plan.RemoveMemberParams) (executor, error) {
	id, err := etcd.ParseID(p.MemberID)
	if err != nil {
		return executor{}, fmt.Errorf("plan param member_id: %w", err)
	}
	offline, name, peers := p.Offline, p.Member, p.PeerURLs
	// present re-reads the committed membership and proves the planned member is the one there.
	present := func(ctx context.Context) (bool, error) {
		cli, err := r.c.Etcd(ctx)
		if err != nil {
			return false, err
		}
		members, err := cli.MemberList(ctx)
		if err != nil {
			return false, err
		}
		return memberAt(members, id, peers)
	}
	return executor{
		phase: "removing etcd member " + orHost(st.Host, name),
		done: func(ctx context.Context) (bool, string, error) {
			p, err := present(ctx)
			if err != nil || p {
				return false, "", err
			}
			return true, fmt.Sprintf("member %s (%x) is not in the cluster, and no member has its peer URLs", name, id), nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			if _, err := present(ctx); err != nil {
				return outcome{}, err
			}
			cli, err := r.c.Etcd(ctx)
			if err != nil {
				return outcome{}, err
			}
			// Leadership can come back to a leaving member between steps (an election after
			// the previous removal, or after a crash), or between the check and the request:
			// RemoveMember checks again right before it asks, and refuses a leader; hand
			// leadership over and ask again, a few times at most.
			for attempt := 1; ; attempt++ {
				if f, err := cli.Observe(ctx); err == nil && f.LeaderID == id {
					if _, _, err := r.moveLeader(ctx, r.leavingIDs()); err != nil {
						return outcome{}, err
					}
				}
				err = cli.RemoveMember(ctx, id, offline)
				if err == nil || !errors.Is(err, etcd.ErrLeaderLeaving) || attempt == 3 {
					break
				}
				r.prog.printf("  leadership moved back to %s before its removal: moving it again\n", name)
			}
			if err != nil {
				var unconfirmed *etcd.UnconfirmedError
				if errors.As(err, &unconfirmed) {
					return outcome{}, fmt.Errorf("%w\n%s", err, r.recovery(name, id))
				}
				return outcome{}, err
			}
			f, err := cli.Observe(ctx)
			note := fmt.Sprintf("%s (%x) removed", name, id)
			if err == nil {
				note += fmt.Sprintf("; members left: %d, leader %s", len(f.Members), leaderName(f))
			}
			return outcome{changes: []Change{{Host: st.Host, Member: fmt.Sprintf("%s (%x)", name, id), Action: "member-remove"}}, note: note}, nil
		},
	}, nil
}

func leaderName(f etcd.Facts) string {
	if l, ok := f.Leader(); ok {
		return l.Name
	}
	return "none"
}

func orHost(h, name string) string {
	if h != "" {
		return h
	}
	return name
}

// leavingIDs are the members of the plan's removal steps.
func (r *run) leavingIDs() []uint64 {
	var ids []uint64
	for _, s := range r.p.Steps {
		if rp, err := plan.DecodeParams[plan.RemoveMemberParams](s); err == nil {
			if id, err := etcd.ParseID(rp.MemberID); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// stopEtcdStep stops and disables etcd on a removed member's host. Whatever the plan and the
// journal say, it first proves on the live cluster that the etcd there is no member: a stop
// of a voting member is how a shrink loses quorum.
func (r *run) stopEtcdStep(st plan.Step, p plan.StopEtcdParams) executor {
	unit := p.Unit
	status := func(ctx context.Context) (host.UnitStatus, error) {
		h, _, err := r.host(ctx, st.Host)
		if err != nil {
			return host.UnitStatus{}, err
		}
		sd, err := h.Systemd(ctx)
		if err != nil {
			return host.UnitStatus{}, err
		}
		defer sd.Close()
		return sd.Status(ctx, unit)
	}
	return executor{
		phase: "stopping etcd on " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			s, err := status(ctx)
			if err != nil {
				return false, "", err
			}
			stopped := s.ActiveState == "inactive" || s.ActiveState == "failed"
			disabled := s.UnitFileState == "disabled" || s.UnitFileState == "masked" || s.UnitFileState == "static"
			return stopped && disabled, unit + " inactive and disabled", nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			s, err := status(ctx)
			if err != nil {
				return outcome{}, err
			}
			proof, err := r.proveNotMember(ctx, st, p, h, s)
			if err != nil {
				return outcome{}, err
			}
			if err := etcd.StopAndDisable(ctx, h, unit); err != nil {
				return outcome{}, err
			}
			return outcome{changes: []Change{{Host: st.Host, Unit: unit, Action: "stop+disable", Detail: proof}}, note: "stopped and disabled " + unit + " (" + proof + ")"}, nil
		},
	}
}

// ErrStillMember means the etcd a step would stop is still a member of the cluster.
var ErrStillMember = errors.New("refusing to stop a voting etcd member")

// proveNotMember proves that the etcd on st.Host is not a member: the committed (linearizable)
// member list has neither the member the plan removed, nor any member at the host's address,
// nor the member the host's own etcd says it is (asked through the host).
func (r *run) proveNotMember(ctx context.Context, st plan.Step, p plan.StopEtcdParams, h host.Host, s host.UnitStatus) (string, error) {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s; run etcd/remove-member for it first (or make a new plan), nothing was stopped", ErrStillMember, fmt.Sprintf(format, args...))
	}
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return "", err
	}
	members, err := cli.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("cannot prove the etcd on %s is no member: %w", st.Host, err)
	}
	for _, rm := range r.p.Steps {
		rp, err := plan.DecodeParams[plan.RemoveMemberParams](rm)
		if err != nil || rm.Host != st.Host {
			continue
		}
		if id, err := etcd.ParseID(rp.MemberID); err == nil {
			for _, m := range members {
				if m.ID == id {
					return "", refuse("member %s (%x) of %s is still in the member list", m.Name, m.ID, st.Host)
				}
			}
		}
	}
	addrs := append([]string{p.Address}, r.p.Facts.Resolved[p.Address]...)
	for _, m := range members {
		for _, u := range m.PeerURLs {
			ph := plan.PeerHost(u)
			if slices.Contains(addrs, ph) || overlaps(r.p.Facts.Resolved[ph], addrs) {
				return "", refuse("member %s (%x) has peer URL %s, the address of %s", m.Name, m.ID, u, st.Host)
			}
		}
	}
	ep := p.Endpoint
	self, err := cli.AskSelf(ctx, ep, h.DialContext)
	// A member just removed shuts itself down: while its unit still says running and its
	// endpoint does not answer, wait a little for one or the other to settle.
	for end := time.Now().Add(20 * time.Second); err != nil && running(s) && time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
		if sd, serr := h.Systemd(ctx); serr == nil {
			if ns, serr := sd.Status(ctx, p.Unit); serr == nil {
				s = ns
			}
			sd.Close()
		}
		self, err = cli.AskSelf(ctx, ep, h.DialContext)
	}
	if err != nil {
		if running(s) {
			return "", fmt.Errorf("%w: %s runs on %s but its endpoint %s does not say which member it is (%v); check it by hand, nothing was stopped",
				ErrStillMember, p.Unit, st.Host, ep, err)
		}
		return fmt.Sprintf("no member at %s's address; its etcd does not answer (%s)", st.Host, s.ActiveState), nil
	}
	for _, m := range members {
		if m.ID == self.MemberID {
			return "", refuse("the etcd on %s (%s) says it is member %s (%x), which is in the member list", st.Host, ep, m.Name, m.ID)
		}
	}
	return fmt.Sprintf("the etcd on %s is %x, not a member", st.Host, self.MemberID), nil
}

func running(s host.UnitStatus) bool { return s.ActiveState == "active" && s.SubState == "running" }

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func (r *run) initialClusterStep(st plan.Step, _ plan.InitialClusterParams) executor {
	return executor{
		phase: "rewriting etcd's --initial-cluster on " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return false, "", err
			}
			s, err := fileState(ctx, h, st.Files)
			// The daemon-reload leaves no trace to check: only a journaled end proves it.
			return err == nil && s == "after" && r.history.Ended[st.ID], "unit rewritten and reloaded", err
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, _, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			pending := map[string]bool{}
			for _, f := range st.Files {
				if cur, err := h.ReadFile(ctx, f.Path); err == nil && string(cur) == f.Before {
					pending[f.Path] = true
				}
			}
			if err := etcd.ApplySurvivorUnit(ctx, h, st.Files); err != nil {
				return outcome{}, err
			}
			changes := fileChanges(st.Host, st.Files, nil, func(p string) bool { return pending[p] })
			return outcome{changes: changes, note: "rewritten, systemd reloaded, etcd not restarted"}, nil
		},
	}
}
