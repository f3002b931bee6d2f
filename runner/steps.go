package runner

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/plan"
)

// outcome is what an executor did.
type outcome struct {
	note     string
	already  bool
	backups  map[string]string
	snapshot *Snapshot
	changes  []Change
	warnings []string
}

// executor is one step's postcondition and action. done may be nil: the action then finds out
// itself what is left (and says already when nothing was).
type executor struct {
	phase string
	done  func(ctx context.Context) (bool, string, error)
	apply func(ctx context.Context) (outcome, error)
}

func (r *run) executor(st plan.Step) (executor, error) {
	switch st.Kind {
	case plan.KindPreflight:
		return executor{phase: "checking the cluster", apply: r.preflight}, nil
	case plan.KindSnapshot:
		return r.snapshotStep(st), nil
	case plan.KindAPIServerRewrite:
		return r.apiserverStep(st), nil
	case plan.KindLBUpdate:
		return r.lbStep(st), nil
	case plan.KindRetire:
		return r.retireStep(st), nil
	case plan.KindMoveLeader:
		return r.moveLeaderStep(st)
	case plan.KindRemoveMember:
		return r.removeMemberStep(st)
	case plan.KindStopEtcd:
		return r.stopEtcdStep(st), nil
	case plan.KindInitialCluster:
		return r.initialClusterStep(st), nil
	case plan.KindCertResign:
		return r.certStep(st), nil
	case plan.KindDrain:
		return r.drainStep(st), nil
	case plan.KindDeleteNode:
		return r.deleteNodeStep(st), nil
	case plan.KindCleanup:
		return r.cleanupStep(st), nil
	case plan.KindLBStop:
		return r.lbStopStep(st), nil
	case plan.KindVerify:
		return executor{phase: "verifying the result", apply: r.verify}, nil
	}
	return executor{}, fmt.Errorf("unknown step kind %q: this mastershrink cannot apply it", st.Kind)
}

// detail is where executors write their own progress: the step lines only, unless verbose.
func (r *run) detail() io.Writer {
	if r.opts.Verbose {
		return indent{r.prog}
	}
	return nil
}

func (r *run) host(ctx context.Context, name string) (host.Host, *inventory.Host, error) {
	ih, ok := r.c.Inv.Host(name)
	if !ok {
		return nil, nil, fmt.Errorf("host %s is not in the inventory %s", name, r.c.Inv.File)
	}
	h, err := r.c.Host(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return h, ih, nil
}

func (r *run) leaving(name string) bool { return slices.Contains(r.p.Target.Remove, name) }
func (r *run) offline(name string) bool { return slices.Contains(r.p.Target.Offline, name) }

// survivingMasters are the masters that stay, in inventory order.
func (r *run) survivingMasters() []*inventory.Host {
	var out []*inventory.Host
	for _, ih := range r.c.Inv.HostsWithRole(inventory.RoleMaster) {
		if !r.leaving(ih.Name) {
			out = append(out, ih)
		}
	}
	return out
}

// fileState says whether every planned file holds its new content ("after"), every one holds
// its old or new content ("before"), or some hold neither ("drift").
func fileState(ctx context.Context, h host.Host, files []host.FileChange) (string, error) {
	state := "after"
	for _, f := range files {
		cur, err := h.ReadFile(ctx, f.Path)
		if err != nil {
			return "", fmt.Errorf("read %s:%s: %w", h.Name(), f.Path, err)
		}
		switch string(cur) {
		case f.After:
		case f.Before:
			state = "before"
		default:
			return "drift", nil
		}
	}
	return state, nil
}

func fileChanges(hostName string, files []host.FileChange, backups map[string]string, only func(path string) bool) []Change {
	var out []Change
	for _, f := range files {
		if only != nil && !only(f.Path) {
			continue
		}
		out = append(out, Change{Host: hostName, File: f.Path, Action: "rewrite",
			BeforeSHA256: sha([]byte(f.Before)), AfterSHA256: sha([]byte(f.After)), Backup: backups[f.Path]})
	}
	return out
}

func hostBackups(hostName string, backups map[string]string) map[string]string {
	if len(backups) == 0 {
		return nil
	}
	out := map[string]string{}
	for p, b := range backups {
		out[hostName+":"+p] = b
	}
	return out
}

// restartedSince says whether the unit's main process started after the last change of paths,
// that is whether it runs with what they now hold (one-second resolution).
func restartedSince(ctx context.Context, h host.Host, unit string, paths []string) (bool, error) {
	sd, err := h.Systemd(ctx)
	if err != nil {
		return false, err
	}
	defer sd.Close()
	st, err := sd.Status(ctx, unit)
	if err != nil {
		return false, err
	}
	if st.ActiveState != "active" || st.MainPID <= 0 {
		return false, nil
	}
	q := make([]string, len(paths))
	for i, p := range paths {
		q[i] = "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
	}
	res, err := h.Run(ctx, fmt.Sprintf("date +%%s; stat -c %%Y -- %s | sort -n | tail -n 1; ps -o etimes= -p %d", strings.Join(q, " "), st.MainPID))
	if err != nil {
		return false, err
	}
	f := strings.Fields(string(res.Stdout))
	if len(f) != 3 {
		return false, fmt.Errorf("restart check on %s: unexpected output %q", h.Name(), res.Stdout)
	}
	var v [3]int64
	for i := range f {
		if v[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
			return false, fmt.Errorf("restart check on %s: unexpected output %q", h.Name(), res.Stdout)
		}
	}
	return v[0]-v[2] >= v[1], nil
}

// ---- preflight

func (r *run) preflight(ctx context.Context) (outcome, error) {
	var problems []string
	for _, fh := range r.p.Facts.Hosts {
		if r.offline(fh.Name) {
			continue
		}
		if _, err := r.c.Host(ctx, fh.Name); err != nil {
			problems = append(problems, fmt.Sprintf("host %s unreachable: %v", fh.Name, err))
		}
	}
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return outcome{}, fmt.Errorf("%w: %v", ErrPreflight, err)
	}
	f, err := cli.Observe(ctx)
	if err != nil {
		return outcome{}, fmt.Errorf("%w: %v", ErrPreflight, err)
	}
	if f.LeaderID == 0 {
		problems = append(problems, "etcd has no leader")
	}
	for _, m := range f.Members {
		if !m.Healthy && !r.offline(r.memberHost(m)) {
			problems = append(problems, fmt.Sprintf("etcd member %s (%x) unhealthy: %s", m.Name, m.ID, m.Error))
		}
	}
	if slices.ContainsFunc(r.p.Steps, func(s plan.Step) bool { return s.Kind == plan.KindCertResign }) {
		problems = append(problems, r.canResign(ctx)...)
	}
	if err := etcd.CheckSnapshotDir(r.opts.SnapshotDir); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return outcome{}, fmt.Errorf("%w: %s", ErrPreflight, strings.Join(problems, "; "))
	}
	// A survivor's apiserver may be mid-restart after a crash: wait for it, within its budget.
	var ready []string
	for _, ih := range r.survivingMasters() {
		h, probe, deadline, err := r.readyProbe(ctx, ih.Name)
		if err != nil {
			return outcome{}, fmt.Errorf("%w: %v", ErrPreflight, err)
		}
		if err := apiserver.WaitReady(ctx, h, probe, deadline, r.detail(), "kube-apiserver on "+ih.Name); err != nil {
			return outcome{}, fmt.Errorf("%w: %v", ErrPreflight, err)
		}
		ready = append(ready, ih.Name)
	}
	health := etcdHealthNote(f.Members, func(m etcd.Member) (string, bool) {
		h := r.memberHost(m)
		return h, r.offline(h)
	})
	return outcome{note: fmt.Sprintf("hosts reachable: %d, %s, kube-apiserver ready on %s",
		len(r.p.Facts.Hosts)-len(r.p.Target.Offline), health, strings.Join(ready, ", "))}, nil
}

// canResign loads the CA as the certificate steps will, and checks each certificate they
// re-sign against it (issuer, CA key, profile, usages), before any irreversible step: a CA
// that cannot sign would otherwise stop the run past the point of no return.
func (r *run) canResign(ctx context.Context) []string {
	ca := r.p.Facts.CA
	h, _, err := r.host(ctx, ca.Host)
	if err != nil {
		return []string{fmt.Sprintf("CA host %s: %v", ca.Host, err)}
	}
	loaded, err := certs.LoadCAFrom(ctx, h, ca.CertPath, ca.KeyPath, ca.ConfigPath)
	if err != nil {
		return []string{fmt.Sprintf("CA on %s: %v", ca.Host, err)}
	}
	var problems []string
	for _, st := range r.p.Steps {
		if st.Kind != plan.KindCertResign {
			continue
		}
		first := strings.Split(st.Params["hosts"], ",")[0]
		ch, _, err := r.host(ctx, first)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		data, err := ch.ReadFile(ctx, st.Params["path"])
		if err != nil {
			problems = append(problems, fmt.Sprintf("read %s:%s: %v", first, st.Params["path"], err))
			continue
		}
		if ok, _ := lacksAll(data, st.Params["path"], strings.Split(st.Params["remove"], ",")); ok {
			continue // re-signed by an earlier run of this plan
		}
		if err := certs.CheckResignablePEM(data, st.Params["path"], loaded, ""); err != nil {
			problems = append(problems, fmt.Sprintf("step %s: %v", st.ID, err))
		}
	}
	return problems
}

// lacksAll says whether the first certificate of data names none of the addresses.
func lacksAll(data []byte, path string, addrs []string) (bool, error) {
	infos, _, err := certs.ParsePEM(data, path)
	if err != nil || len(infos) == 0 {
		return false, err
	}
	for _, ip := range infos[0].IPAddresses {
		if slices.Contains(addrs, ip) {
			return false, nil
		}
	}
	return true, nil
}

// etcdHealthNote counts the members that are healthy and names the others, with their host
// and whether the plan expects it offline (preflight refuses any other unhealthy member, so
// the note says why the run went on without them).
func etcdHealthNote(members []etcd.Member, hostOf func(etcd.Member) (host string, offline bool)) string {
	healthy := 0
	var bad []string
	for _, m := range members {
		if m.Healthy {
			healthy++
			continue
		}
		name := m.Name
		if name == "" {
			name = fmt.Sprintf("%x", m.ID)
		}
		var about []string
		host, offline := hostOf(m)
		if host != "" && host != name {
			about = append(about, "on "+host)
		}
		if offline {
			about = append(about, "planned offline")
		} else {
			about = append(about, "not planned offline")
		}
		bad = append(bad, name+" ("+strings.Join(about, ", ")+")")
	}
	note := fmt.Sprintf("etcd members healthy: %d of %d", healthy, len(members))
	if len(bad) > 0 {
		note += " (unhealthy: " + strings.Join(bad, ", ") + ")"
	}
	return note
}

// memberHost maps a member to its inventory host by peer address (as the plan does; names
// are not identity), using the plan's resolution of host names.
func (r *run) memberHost(m etcd.Member) string {
	for _, u := range m.PeerURLs {
		ph := plan.PeerHost(u)
		addrs := append([]string{ph}, r.p.Facts.Resolved[ph]...)
		for _, ih := range r.c.Inv.Hosts {
			if slices.Contains(addrs, ih.Address) || overlaps(r.p.Facts.Resolved[ih.Address], addrs) {
				return ih.Name
			}
		}
	}
	return ""
}

// readyProbe is the /readyz probe of a master's apiserver, verified with the cluster CA and
// authenticated with the admin kubeconfig's client certificate where it has one.
func (r *run) readyProbe(ctx context.Context, name string) (host.Host, apiserver.ReadyProbe, time.Duration, error) {
	h, ih, err := r.host(ctx, name)
	if err != nil {
		return nil, apiserver.ReadyProbe{}, 0, err
	}
	comps, err := apiserver.Observe(ctx, h, ih.Paths)
	if err != nil {
		return nil, apiserver.ReadyProbe{}, 0, err
	}
	ca, err := h.ReadFile(ctx, ih.Paths.CACert)
	if err != nil {
		return nil, apiserver.ReadyProbe{}, 0, fmt.Errorf("read CA %s:%s: %w", name, ih.Paths.CACert, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	probe := apiserver.ReadyProbe{Address: comps.APIServer.ProbeAddress(), RootCAs: pool}
	if _, cfg, err := r.c.Kube(); err == nil {
		cfg = rest.CopyConfig(cfg)
		if rest.LoadTLSFiles(cfg) == nil && len(cfg.CertData) > 0 {
			if pair, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData); err == nil {
				probe.ClientCert = &pair
			}
		}
	}
	return h, probe, apiserver.ReadyDeadline(comps.APIServer), nil
}

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

// ---- apiserver

// componentRestarts are the restarts of an apiserver step, in the plan's order, each with
// the planned files its component reads.
func (r *run) componentRestarts(ctx context.Context, st plan.Step) (host.Host, []apiserver.RestartStep, error) {
	h, ih, err := r.host(ctx, st.Host)
	if err != nil {
		return nil, nil, err
	}
	comps, err := apiserver.Observe(ctx, h, ih.Paths)
	if err != nil {
		return nil, nil, err
	}
	var steps []apiserver.RestartStep
	for _, name := range strings.Split(st.Params["restart"], ",") {
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

func (r *run) apiserverStep(st plan.Step) executor {
	restartsAPIServer := st.Params["restart"] == "" || slices.Contains(strings.Split(st.Params["restart"], ","), apiserver.KubeAPIServer)
	return executor{
		phase: "restarting the control plane on " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, steps, err := r.componentRestarts(ctx, st)
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
				if err := r.setAside(ctx, r.apiserverAddr(st.Host), false); err != nil {
					return false, "", err
				}
			}
			return true, "runs the new files and is ready", nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			_, steps, err := r.componentRestarts(ctx, st)
			if err != nil {
				return outcome{}, err
			}
			addr := r.apiserverAddr(st.Host)
			aside := restartsAPIServer && r.othersReady(ctx, st.Host)
			if aside {
				if err := r.setAside(ctx, addr, true); err != nil {
					return outcome{}, fmt.Errorf("take %s out of the proxies before its restart: %w", addr, err)
				}
			}
			results, err := apiserver.RollingRestart(ctx, steps, r.detail())
			if aside {
				// Back in either way: a failed restart was rolled back to the old files.
				if perr := r.setAside(context.WithoutCancel(ctx), addr, false); perr != nil {
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
			if aside {
				note += " (out of the proxies meanwhile)"
			}
			return outcome{backups: hostBackups(st.Host, backups), changes: changes, note: note}, nil
		},
	}
}

// othersReady says whether another master's apiserver is ready to serve while name's restarts.
func (r *run) othersReady(ctx context.Context, name string) bool {
	for _, ih := range r.c.Inv.HostsWithRole(inventory.RoleMaster) {
		if ih.Name != name && !r.offline(ih.Name) && probeReady(ctx, r, ih.Name) {
			return true
		}
	}
	return false
}

func probeReady(ctx context.Context, r *run, name string) bool {
	h, probe, _, err := r.readyProbe(ctx, name)
	return err == nil && probe.Check(ctx, h) == nil
}

// ---- load balancers

func (r *run) lbStep(st plan.Step) executor {
	return executor{
		phase: "updating the apiserver proxy on " + st.Host,
		apply: func(ctx context.Context) (outcome, error) {
			h, ih, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			ex := lbExecutor(ih)
			res, err := ex.Apply(ctx, lb.NodeTarget{Host: h, Paths: ih.Paths, Changes: st.Files})
			if err != nil {
				return outcome{}, err
			}
			if res.Skipped {
				return outcome{already: true, note: "nginx runs the new config; probe through it answers"}, nil
			}
			if r.cutsOldWorkers(st.Host) {
				if err := ex.CutOldWorkers(ctx, h, ih.Paths); err != nil {
					return outcome{}, err
				}
			}
			changes := fileChanges(st.Host, st.Files, res.Backups, func(p string) bool { _, ok := res.Backups[p]; return ok })
			changes = append(changes, Change{Host: st.Host, Unit: ih.Paths.NginxUnit, Action: "reload"})
			return outcome{backups: hostBackups(st.Host, res.Backups), changes: changes, note: "nginx -t passed, reloaded, probe through it answers"}, nil
		},
	}
}

// lbStopStep stops and disables the proxy of a host that left the cluster.
func (r *run) lbStopStep(st plan.Step) executor {
	unit := st.Params["unit"]
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

// ---- retire

func (r *run) retireStep(st plan.Step) executor {
	units := strings.Split(st.Params["units"], ",")
	if st.Params["offline"] == "true" {
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

// ---- etcd membership

func parseIDs(s string) ([]uint64, error) {
	var out []uint64
	for _, x := range strings.Split(s, ",") {
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

func (r *run) moveLeaderStep(st plan.Step) (executor, error) {
	leaving, err := parseIDs(st.Params["leaving"])
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

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func (r *run) removeMemberStep(st plan.Step) (executor, error) {
	id, err := etcd.ParseID(st.Params["member_id"])
	if err != nil {
		return executor{}, fmt.Errorf("plan param member_id: %w", err)
	}
	offline := st.Params["offline"] == "true"
	name := st.Params["member"]
	peers := splitList(st.Params["peer_urls"])
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
		if s.Kind == plan.KindRemoveMember {
			if id, err := etcd.ParseID(s.Params["member_id"]); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// stopEtcdStep stops and disables etcd on a removed member's host. Whatever the plan and the
// journal say, it first proves on the live cluster that the etcd there is no member: a stop
// of a voting member is how a shrink loses quorum.
func (r *run) stopEtcdStep(st plan.Step) executor {
	unit := st.Params["unit"]
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
			proof, err := r.proveNotMember(ctx, st, h, s)
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
func (r *run) proveNotMember(ctx context.Context, st plan.Step, h host.Host, s host.UnitStatus) (string, error) {
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
		if rm.Kind != plan.KindRemoveMember || rm.Host != st.Host {
			continue
		}
		if id, err := etcd.ParseID(rm.Params["member_id"]); err == nil {
			for _, m := range members {
				if m.ID == id {
					return "", refuse("member %s (%x) of %s is still in the member list", m.Name, m.ID, st.Host)
				}
			}
		}
	}
	addrs := append([]string{st.Params["address"]}, r.p.Facts.Resolved[st.Params["address"]]...)
	for _, m := range members {
		for _, u := range m.PeerURLs {
			ph := plan.PeerHost(u)
			if slices.Contains(addrs, ph) || overlaps(r.p.Facts.Resolved[ph], addrs) {
				return "", refuse("member %s (%x) has peer URL %s, the address of %s", m.Name, m.ID, u, st.Host)
			}
		}
	}
	ep := st.Params["endpoint"]
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
			if ns, serr := sd.Status(ctx, st.Params["unit"]); serr == nil {
				s = ns
			}
			sd.Close()
		}
		self, err = cli.AskSelf(ctx, ep, h.DialContext)
	}
	if err != nil {
		if running(s) {
			return "", fmt.Errorf("%w: %s runs on %s but its endpoint %s does not say which member it is (%v); check it by hand, nothing was stopped",
				ErrStillMember, st.Params["unit"], st.Host, ep, err)
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

func (r *run) initialClusterStep(st plan.Step) executor {
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

// ---- certificates

// certTarget is where a certificate is served, and which unit may be restarted to serve it.
type certTarget struct {
	probe string
	unit  string
	wait  time.Duration
}

// servedBy picks, from the plan's "unit --flag" uses, the endpoint that serves the
// certificate. kube-apiserver reloads its serving certificate by itself and is never
// restarted here: it may be the only one left.
func (r *run) servedBy(ih *inventory.Host, usedBy string) certTarget {
	var peer certTarget
	for _, u := range strings.Split(usedBy, ",") {
		unit, flag, _ := strings.Cut(strings.TrimSpace(u), " ")
		switch flag {
		case "--cert-file":
			return certTarget{probe: net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.EtcdClientPort)), unit: unit, wait: 15 * time.Second}
		case "--tls-cert-file":
			return certTarget{probe: net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.APIServerPort))}
		case "--peer-cert-file":
			peer = certTarget{probe: net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.EtcdPeerPort)), unit: unit, wait: 15 * time.Second}
		}
	}
	return peer
}

func (r *run) certStep(st plan.Step) executor {
	path, keyPath := st.Params["path"], st.Params["key_path"]
	hosts := strings.Split(st.Params["hosts"], ",")
	remove := strings.Split(st.Params["remove"], ",")
	lacksRemoved := func(data []byte) (bool, *certs.Info, error) {
		infos, _, err := certs.ParsePEM(data, path)
		if err != nil {
			return false, nil, err
		}
		info := infos[0]
		for _, ip := range info.IPAddresses {
			if slices.Contains(remove, ip) {
				return false, &info, nil
			}
		}
		return true, &info, nil
	}
	installed := func(ctx context.Context, name string) (bool, error) {
		h, ih, err := r.host(ctx, name)
		if err != nil {
			return false, err
		}
		data, err := h.ReadFile(ctx, path)
		if err != nil {
			return false, fmt.Errorf("read %s:%s: %w", name, path, err)
		}
		ok, _, err := lacksRemoved(data)
		if err != nil || !ok {
			return false, err
		}
		t := r.servedBy(ih, st.Params["used_by"])
		if t.probe == "" {
			return true, nil
		}
		served, err := certs.ServedCertificate(ctx, h, t.probe, "", nil, nil)
		if err != nil {
			return false, nil
		}
		_, certsOnDisk, _ := certs.ParsePEM(data, path)
		return len(certsOnDisk) > 0 && bytes.Equal(served.Raw, certsOnDisk[0].Raw), nil
	}
	return executor{
		phase: "re-signing and installing " + path,
		done: func(ctx context.Context) (bool, string, error) {
			for _, name := range hosts {
				ok, err := installed(ctx, name)
				if err != nil || !ok {
					return false, "", err
				}
			}
			return true, "installed without " + strings.Join(remove, ", ") + " and served on " + strings.Join(hosts, ", "), nil
		},
		apply: func(ctx context.Context) (outcome, error) {
			first, _, err := r.host(ctx, hosts[0])
			if err != nil {
				return outcome{}, err
			}
			oldPEM, err := first.ReadFile(ctx, path)
			if err != nil {
				return outcome{}, fmt.Errorf("read %s:%s: %w", hosts[0], path, err)
			}
			keyPEM, err := first.ReadFile(ctx, keyPath)
			if err != nil {
				return outcome{}, fmt.Errorf("read %s:%s: %w", hosts[0], keyPath, err)
			}
			newPEM := oldPEM
			var warnings []string
			done, info, err := lacksRemoved(oldPEM)
			if err != nil {
				return outcome{}, err
			}
			if !done {
				// An earlier run that stopped after installing on the first host left the new
				// certificate there: it is reused for the others, so every host gets the same one.
				caHost, _, err := r.host(ctx, r.p.Facts.CA.Host)
				if err != nil {
					return outcome{}, err
				}
				ca, err := certs.LoadCAFrom(ctx, caHost, r.p.Facts.CA.CertPath, r.p.Facts.CA.KeyPath, r.p.Facts.CA.ConfigPath)
				if err != nil {
					return outcome{}, err
				}
				_, parsed, err := certs.ParsePEM(oldPEM, path)
				if err != nil {
					return outcome{}, err
				}
				// The key pair is kept: the certificate is the only thing that changes, so a
				// stop between the two writes cannot leave a certificate without its key.
				res, err := certs.Resign(parsed[0], ca, certs.ResignOptions{RemoveHosts: remove, ReuseKey: true, ExistingKeyPEM: keyPEM})
				if err != nil {
					return outcome{}, err
				}
				newPEM, warnings = res.CertPEM, res.Warnings
				info = &res.Info
			}
			var changes []Change
			backups := map[string]string{}
			for _, name := range hosts {
				h, ih, err := r.host(ctx, name)
				if err != nil {
					return outcome{}, err
				}
				cur, _ := h.ReadFile(ctx, path)
				t := r.servedBy(ih, st.Params["used_by"])
				res, err := certs.Install(ctx, h, certs.InstallPlan{CertPath: path, KeyPath: keyPath, CertPEM: newPEM, KeyPEM: keyPEM,
					Probe: t.probe, Unit: t.unit, ReloadWait: t.wait, Timeout: 3 * time.Minute, BeforeRestart: r.quorumWithout})
				if err != nil {
					return outcome{}, err
				}
				for _, b := range res.Backups {
					backups[name+":"+strings.SplitN(b, ".bak-", 2)[0]] = b
				}
				if !bytes.Equal(cur, newPEM) {
					changes = append(changes, Change{Host: name, File: path, Action: "install-certificate",
						BeforeSHA256: sha(cur), AfterSHA256: sha(newPEM), Detail: "SANs " + strings.Join(certs.Hosts(*info), ",")})
				}
				if res.Restarted {
					changes = append(changes, Change{Host: name, Unit: t.unit, Action: "restart", Detail: "to serve the new certificate"})
				}
			}
			return outcome{backups: backups, changes: changes, warnings: warnings,
				note: fmt.Sprintf("serial %s, SANs %s", info.Serial, strings.Join(certs.Hosts(*info), ", "))}, nil
		},
	}
}

// quorumWithout is the check before etcd is restarted to serve a new certificate, the one a
// membership change gets: every member healthy and a leader, so the cluster keeps its quorum
// while one member is down.
func (r *run) quorumWithout(ctx context.Context) error {
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return err
	}
	f, err := cli.Observe(ctx)
	if err != nil {
		return err
	}
	if f.LeaderID == 0 {
		return fmt.Errorf("%w: etcd has no leader", etcd.ErrQuorumAtRisk)
	}
	healthy := 0
	for _, m := range f.Members {
		if m.Healthy {
			healthy++
		}
	}
	if len(f.Members) > 1 && healthy-1 < etcd.Quorum(len(f.Members)) {
		return fmt.Errorf("%w: %d of %d members healthy: restarting one would leave %d, below the quorum of %d",
			etcd.ErrQuorumAtRisk, healthy, len(f.Members), healthy-1, etcd.Quorum(len(f.Members)))
	}
	return nil
}

// ---- nodes

func (r *run) nodeGone(ctx context.Context, node string) (bool, string, error) {
	kube, _, err := r.c.Kube()
	if err != nil {
		return false, "", err
	}
	_, err = kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, "Node " + node + " is gone", nil
	}
	return false, "", err
}

func (r *run) drainStep(st plan.Step) executor {
	node := st.Params["node"]
	return executor{
		phase: "draining node " + node,
		done:  func(ctx context.Context) (bool, string, error) { return r.nodeGone(ctx, node) },
		apply: func(ctx context.Context) (outcome, error) {
			kube, _, err := r.c.Kube()
			if err != nil {
				return outcome{}, err
			}
			opts := nodes.DefaultDrainOptions()
			opts.Progress = r.detail()
			opts.DeletePodsOfDownNode = st.Params["node_down"] == "true"
			sum, err := nodes.Drain(ctx, kube, []string{node}, opts)
			if err != nil {
				return outcome{}, err
			}
			var evicted, deleted, skipped int
			for _, n := range sum.Nodes {
				evicted += len(n.Evicted)
				deleted += len(n.Deleted)
				skipped += len(n.Skipped)
			}
			var warnings []string
			if sum.RemoveErr != "" {
				warnings = append(warnings, "temporary PDBs left: "+sum.RemoveErr)
			}
			return outcome{warnings: warnings, changes: []Change{{Node: node, Action: "cordon+drain", Detail: fmt.Sprintf("%d evicted, %d deleted", evicted, deleted)}},
				note: fmt.Sprintf("cordoned; %d pods evicted, %d deleted, %d left (DaemonSets)", evicted, deleted, skipped)}, nil
		},
	}
}

func (r *run) deleteNodeStep(st plan.Step) executor {
	node := st.Params["node"]
	return executor{
		phase: "deleting node " + node,
		done:  func(ctx context.Context) (bool, string, error) { return r.nodeGone(ctx, node) },
		apply: func(ctx context.Context) (outcome, error) {
			kube, _, err := r.c.Kube()
			if err != nil {
				return outcome{}, err
			}
			if err := nodes.DeleteNode(ctx, kube, node); err != nil {
				return outcome{}, err
			}
			return outcome{changes: []Change{{Node: node, Action: "delete"}}, note: "Node deleted"}, nil
		},
	}
}

func cleanupOptions(ih *inventory.Host) nodes.CleanupOptions {
	var o nodes.CleanupOptions
	for _, u := range []string{ih.Paths.KubeletUnit, ih.Paths.KubeProxyUnit} {
		if u != "" {
			o.Units = append(o.Units, u)
		}
	}
	return o
}

func (r *run) cleanupStep(st plan.Step) executor {
	return executor{
		phase: "cleaning host " + st.Host,
		done: func(ctx context.Context) (bool, string, error) {
			h, ih, err := r.host(ctx, st.Host)
			if err != nil {
				return false, "", err
			}
			rep, err := nodes.Verify(ctx, h, cleanupOptions(ih))
			// Checks that cannot run (no iptables in a container) are reported by the apply;
			// what counts here is that nothing is found.
			return err == nil && len(rep.Leftovers) == 0, "no Kubernetes left on the host", err
		},
		apply: func(ctx context.Context) (outcome, error) {
			h, ih, err := r.host(ctx, st.Host)
			if err != nil {
				return outcome{}, err
			}
			if err := r.proveLeft(ctx, st.Host, h, ih); err != nil {
				return outcome{}, err
			}
			opts := cleanupOptions(ih)
			rep, err := nodes.Cleanup(ctx, h, opts)
			if err != nil {
				return outcome{}, err
			}
			var changes []Change
			var warnings []string
			for _, a := range rep.Actions {
				if a.Result == nodes.ResultDone {
					changes = append(changes, Change{Host: st.Host, Action: "cleanup:" + a.Step, Detail: a.Target})
				}
			}
			// Failed actions, and what the backup holds (the kubelet's keys, maybe the CA's).
			warnings = append(warnings, rep.Warnings()...)
			v, err := nodes.Verify(ctx, h, opts)
			if err != nil {
				return outcome{}, err
			}
			for _, l := range v.Leftovers {
				warnings = append(warnings, fmt.Sprintf("left on %s: %s %s (remove with: %s)", st.Host, l.Check, l.Item, l.Fix))
			}
			for _, p := range v.Problems {
				warnings = append(warnings, "could not check: "+p)
			}
			var backups map[string]string
			if rep.Backup != "" {
				backups = map[string]string{st.Host + ":/etc/kubernetes": rep.Backup}
			}
			return outcome{changes: changes, warnings: warnings, backups: backups,
				note: fmt.Sprintf("%d actions, backup %s", len(changes), rep.Backup)}, nil
		},
	}
}

// ErrStillControlPlane means a host to clean still serves the control plane.
var ErrStillControlPlane = errors.New("refusing to clean a host that still serves the control plane")

// proveLeft proves, on the live cluster, that a host about to be cleaned (its PKI and
// containers removed) is neither an etcd member nor running an apiserver, whatever the plan
// says it is: a typo in --drain, or a run resumed after the cluster changed, must not wipe a
// survivor.
func (r *run) proveLeft(ctx context.Context, name string, h host.Host, ih *inventory.Host) error {
	cli, err := r.c.Etcd(ctx)
	if err != nil {
		return err
	}
	members, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("cannot prove %s is no etcd member: %w", name, err)
	}
	addrs := append([]string{ih.Address}, r.p.Facts.Resolved[ih.Address]...)
	for _, m := range members {
		for _, u := range m.PeerURLs {
			if ph := plan.PeerHost(u); slices.Contains(addrs, ph) || overlaps(r.p.Facts.Resolved[ph], addrs) {
				return fmt.Errorf("%w: %s is etcd member %s (%x); nothing was cleaned", ErrStillControlPlane, name, m.Name, m.ID)
			}
		}
	}
	if ih.Paths.APIServerUnit == "" {
		return nil
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return err
	}
	defer sd.Close()
	st, err := sd.Status(ctx, ih.Paths.APIServerUnit)
	if err != nil {
		return err
	}
	if st.ActiveState == "active" || st.ActiveState == "activating" {
		return fmt.Errorf("%w: %s runs %s (%s); nothing was cleaned", ErrStillControlPlane, name, ih.Paths.APIServerUnit, st.ActiveState)
	}
	return nil
}

// ---- final verification

func (r *run) verify(ctx context.Context) (outcome, error) {
	var problems, warnings []string
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

	var proxies int
	for name := range r.p.Facts.LB {
		if r.leaving(name) || r.offline(name) {
			continue
		}
		h, ih, err := r.host(ctx, name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if err := pollFor(ctx, 30*time.Second, func(ctx context.Context) error { return lb.Probe(ctx, h, ih.Paths.NginxListen, nil) }); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		proxies++
	}

	kube, _, err := r.c.Kube()
	if err != nil {
		return outcome{}, err
	}
	for _, s := range r.p.Steps {
		if s.Kind == plan.KindDeleteNode {
			if gone, _, err := r.nodeGone(ctx, s.Params["node"]); err != nil || !gone {
				problems = append(problems, fmt.Sprintf("Node %s still exists (%v)", s.Params["node"], err))
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
	if len(problems) > 0 {
		return outcome{}, fmt.Errorf("the cluster is not as planned: %s", strings.Join(problems, "; "))
	}
	warnings = append(warnings, r.scanLeftovers(ctx)...)
	warnings = append(warnings, r.leftSecrets(ctx)...)
	return outcome{warnings: warnings, note: fmt.Sprintf("%d etcd member(s) healthy, /readyz through %d proxies, endpoints %s", len(f.Members), proxies, strings.Join(addrs, ","))}, nil
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
		if ih, ok := r.c.Inv.Host(name); ok {
			ips = append(ips, ih.Address)
		}
	}
	if len(ips) == 0 {
		return nil
	}
	var out []string
	for _, ih := range r.c.Inv.Hosts {
		if r.leaving(ih.Name) || r.offline(ih.Name) || slices.Contains(r.p.Target.Drain, ih.Name) {
			continue
		}
		h, err := r.c.Host(ctx, ih.Name)
		if err != nil {
			continue
		}
		cmd := "grep -rlsIE --exclude='*.bak-*'"
		for _, ip := range ips {
			cmd += ` -e '(^|[^0-9.])` + strings.ReplaceAll(ip, ".", `\.`) + `([^0-9]|$)'`
		}
		dirs := []string{"/etc/kubernetes", "/etc/systemd/system"}
		if ih.Paths.NginxConfig != "" {
			dirs = append(dirs, ih.Paths.NginxConfig)
		}
		res, err := h.Run(ctx, cmd+" "+strings.Join(dirs, " ")+" 2>/dev/null || true")
		if err != nil {
			continue
		}
		for _, l := range strings.Fields(string(res.Stdout)) {
			// Files the plan rewrote name removed servers on purpose ("down" in the proxy).
			if r.rewrote(ih.Name, l) {
				continue
			}
			out = append(out, fmt.Sprintf("%s:%s still names a removed address", ih.Name, l))
		}
	}
	return out
}
