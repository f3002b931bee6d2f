package plan

import (
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
)

// lagLimit is how many raft entries a surviving member may trail the leader by before the
// plan refuses: a lagging survivor could become leader with a stale log during the shrink.
const lagLimit = 1000

// builder carries the state of one Build.
type builder struct {
	f        Facts
	t        Target
	p        *Plan
	leaving  map[string]bool // hosts in --remove
	offline  map[string]bool
	drain    map[string]bool
	leaveIPs []string // addresses of leaving hosts
	// hostOf maps a member ID to its inventory host, memberOf a host to its member.
	hostOf   map[uint64]string
	memberOf map[string]etcd.Member
}

// Build turns facts and a target into a plan, with every secret redacted (see Redacted): the
// plan to show, review and write. It never fails: what cannot be done is in the plan's
// Refusals, and a plan with refusals must not be applied.
func Build(f Facts, t Target, toolVersion string, now time.Time) *Plan {
	return Redacted(BuildWithSecrets(f, t, toolVersion, now))
}

// BuildWithSecrets is Build with the files' secrets left in: for apply, which writes them,
// never for a plan file or a screen.
func BuildWithSecrets(f Facts, t Target, toolVersion string, now time.Time) *Plan {
	t = normalizeTarget(t)
	f = normalizeFacts(f)
	b := &builder{
		f: f, t: t,
		p: &Plan{
			FormatVersion: FormatVersion,
			ToolVersion:   toolVersion,
			CreatedAt:     now.UTC().Truncate(time.Second),
			Cluster:       f.Cluster,
			Target:        t,
			Facts:         f,
		},
		leaving: set(t.Remove), offline: set(t.Offline), drain: set(t.Drain),
	}
	if !b.checkTarget() {
		b.finish()
		return b.p
	}
	b.mapMembers()
	b.add(Step{ID: "preflight", Kind: KindPreflight, Risk: Safe,
		Summary: "re-check hosts, etcd health, CA key, LB configs and survivors' /readyz; take the apply lock"})

	removals := b.etcdRemovals()
	if len(removals) > 0 {
		b.add(Step{ID: "etcd/snapshot", Kind: KindSnapshot, Risk: Safe,
			Summary: "snapshot etcd from the leader" + b.leaderNote() + ", verify hash, revision and key count",
			Relies:  []string{"etcd.members"}})
	}
	b.apiservers()
	b.loadBalancers()
	b.retire()
	b.etcdMembership(removals)
	b.certificates()
	b.workers()
	b.leavingProxies()
	b.add(Step{ID: "verify/final", Kind: KindVerify, Risk: Safe,
		Summary: "check etcd members and health, /readyz through every LB, nodes, the kubernetes EndpointSlice, and scan hosts for the removed addresses"})
	b.warnings()
	b.finish()
	return b.p
}

func normalizeTarget(t Target) Target {
	clean := func(xs []string) []string {
		var out []string
		for _, x := range xs {
			if x = strings.TrimSpace(x); x != "" && !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
		sort.Strings(out)
		return out
	}
	t.Remove, t.Drain, t.Offline = clean(t.Remove), clean(t.Drain), clean(t.Offline)
	if t.LBMode == "" {
		t.LBMode = "down"
	}
	return t
}

// normalizeFacts sorts what is gathered concurrently (members, certificates), so the same
// cluster always gives the same plan and fingerprint, whatever order the hosts answered in.
func normalizeFacts(f Facts) Facts {
	f.Etcd.Members = slices.Clone(f.Etcd.Members)
	sort.SliceStable(f.Etcd.Members, func(i, j int) bool {
		a, b := f.Etcd.Members[i], f.Etcd.Members[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ID < b.ID
	})
	f.Certs = slices.Clone(f.Certs)
	sort.SliceStable(f.Certs, func(i, j int) bool {
		a, b := f.Certs[i], f.Certs[j]
		if a.Info.Serial != b.Info.Serial {
			return a.Info.Serial < b.Info.Serial
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Host < b.Host
	})
	return f
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func (b *builder) add(s Step) { b.p.Steps = append(b.p.Steps, s) }

func (b *builder) refuse(code, reason, wayOut string) {
	b.p.Refusals = append(b.p.Refusals, Refusal{Code: code, Reason: reason, WayOut: wayOut})
}

func (b *builder) warn(format string, args ...any) {
	b.p.Warnings = append(b.p.Warnings, fmt.Sprintf(format, args...))
}

// checkTarget refuses targets that name unknown hosts or would remove everything. It
// returns false when nothing sensible can be planned.
func (b *builder) checkTarget() bool {
	ok := true
	if len(b.t.Remove) == 0 && len(b.t.Drain) == 0 {
		b.refuse("empty-target", "nothing to do: no host given to remove or drain", "name the masters to retire with --remove, or workers with --drain")
		return false
	}
	for _, list := range [][]string{b.t.Remove, b.t.Drain, b.t.Offline} {
		for _, name := range list {
			if _, found := b.f.Host(name); !found {
				b.refuse("unknown-host", fmt.Sprintf("host %q is not in the inventory", name),
					"use a host name from the inventory ("+strings.Join(b.hostNames(), ", ")+")")
				ok = false
			}
		}
	}
	for _, name := range b.t.Drain {
		if h, _ := b.f.Host(name); h.Has(inventory.RoleMaster) || h.Has(inventory.RoleEtcd) {
			b.refuse("drain-control-plane", fmt.Sprintf("--drain %s names a master or etcd host: draining plans its cleanup, which removes its PKI and containers", name),
				"use --remove "+name+" to retire it from the control plane (it is drained and cleaned after), or name a worker")
			ok = false
		}
	}
	for _, name := range b.t.Offline {
		if !b.leaving[name] && !b.drain[name] {
			b.refuse("offline-not-leaving", fmt.Sprintf("--offline %s names a host that is neither removed nor drained", name),
				"add it to --remove or --drain, or drop it from --offline")
			ok = false
		}
	}
	if !ok {
		return false
	}
	var masters, etcds, masterLeft, etcdLeft int
	for _, h := range b.f.Hosts {
		if h.Has(inventory.RoleMaster) {
			masters++
			if !b.leaving[h.Name] {
				masterLeft++
			}
		}
		if h.Has(inventory.RoleEtcd) {
			etcds++
			if !b.leaving[h.Name] {
				etcdLeft++
			}
		}
	}
	for _, name := range b.t.Remove {
		h, _ := b.f.Host(name)
		if !h.Has(inventory.RoleMaster) && !h.Has(inventory.RoleEtcd) {
			b.refuse("not-control-plane", fmt.Sprintf("%s is neither a master nor an etcd host", name),
				"use --drain "+name+" to take a worker out")
			ok = false
		}
		b.leaveIPs = append(b.leaveIPs, h.Address)
	}
	b.checkOperator()
	if masters > 0 && masterLeft == 0 {
		b.refuse("remove-all-masters", "the target removes every master", "keep at least one master: remove fewer hosts")
		ok = false
	}
	if etcds > 0 && etcdLeft == 0 {
		b.refuse("remove-all-etcd", "the target removes every etcd member", "keep at least one etcd member: remove fewer hosts")
		ok = false
	}
	for _, name := range b.t.Offline {
		h, _ := b.f.Host(name)
		if h.Reachable {
			b.refuse("offline-reachable", fmt.Sprintf("--offline %s, but %s answers SSH", name, name),
				"drop --offline "+name+": while it is reachable, mastershrink stops its units and proves each step on it")
			ok = false
		}
	}
	for _, h := range b.f.Hosts {
		if h.Reachable {
			continue
		}
		switch {
		case b.offline[h.Name]:
			b.warn("%s is unreachable and planned --offline: its host-side steps are skipped, clean it by hand if it comes back", h.Name)
		case b.leaving[h.Name] || b.drain[h.Name]:
			b.refuse("leaving-unreachable", fmt.Sprintf("cannot connect to leaving host %s: %s", h.Name, h.Error),
				"if it is down for good, plan with --offline "+h.Name+"; otherwise fix SSH access and plan again")
			ok = false
		default:
			b.refuse("host-unreachable", fmt.Sprintf("cannot connect to %s: %s", h.Name, h.Error),
				"every staying host must be reachable: fix SSH access to "+h.Name+" and plan again")
			ok = false
		}
	}
	return ok
}

func (b *builder) hostNames() []string {
	var names []string
	for _, h := range b.f.Hosts {
		names = append(names, h.Name)
	}
	return names
}

func (b *builder) leaderNote() string {
	for _, m := range b.f.Etcd.Members {
		if m.ID == b.f.Etcd.LeaderID {
			return " (now " + m.Name + ")"
		}
	}
	return ""
}

// etcdRemovals orders the leaving members (down ones first, so quorum is counted on live
// members only) and refuses any removal that would leave the rest without a healthy quorum.
func (b *builder) etcdRemovals() []etcd.Member {
	var leaving, staying []etcd.Member
	for _, m := range b.f.Etcd.Members {
		if b.leaving[b.memberHost(m)] {
			leaving = append(leaving, m)
		} else {
			staying = append(staying, m)
		}
	}
	if len(leaving) == 0 {
		return nil
	}
	var leaderIndex uint64
	for _, m := range b.f.Etcd.Members {
		if m.ID == b.f.Etcd.LeaderID {
			leaderIndex = m.RaftIndex
		}
	}
	for _, m := range staying {
		switch {
		case !m.Healthy:
			b.refuse("survivor-unhealthy", fmt.Sprintf("surviving etcd member %s is unhealthy: %s", m.Name, m.Error),
				"bring "+m.Name+" back to health (systemctl status, journalctl) and plan again")
		case leaderIndex > m.RaftAppliedIndex+lagLimit:
			b.refuse("survivor-lagging", fmt.Sprintf("surviving etcd member %s lags the leader by %d raft entries", m.Name, leaderIndex-m.RaftAppliedIndex),
				"wait for "+m.Name+" to catch up and plan again")
		}
	}
	for _, m := range leaving {
		host := b.memberHost(m)
		if m.Healthy && b.offline[host] {
			b.refuse("offline-member-healthy", fmt.Sprintf("--offline %s, but its etcd member %s is healthy", host, memberLabel(m)),
				"drop --offline "+host+": a running member is removed and stopped properly, not while it still runs")
		}
		if !m.Healthy && !b.offline[host] {
			b.refuse("leaving-unhealthy", fmt.Sprintf("leaving etcd member %s is unhealthy: %s", m.Name, m.Error),
				"if "+host+" is down for good, plan with --offline "+host+"; otherwise bring it back first")
		}
	}
	sort.SliceStable(leaving, func(i, j int) bool {
		di, dj := b.offline[b.memberHost(leaving[i])], b.offline[b.memberHost(leaving[j])]
		if di != dj {
			return di
		}
		return leaving[i].Name < leaving[j].Name
	})
	healthy := func(m etcd.Member) bool { return m.Healthy && !b.offline[b.memberHost(m)] }
	members := slices.Clone(b.f.Etcd.Members)
	for _, m := range leaving {
		n := len(members)
		var liveNow int
		for _, x := range members {
			if healthy(x) {
				liveNow++
			}
		}
		members = slices.DeleteFunc(members, func(x etcd.Member) bool { return x.ID == m.ID })
		var liveAfter int
		for _, x := range members {
			if healthy(x) {
				liveAfter++
			}
		}
		if liveNow < quorumOf(n) {
			b.refuse("quorum-lost", fmt.Sprintf("removing %s needs a quorum of %d of %d members, only %d are healthy", m.Name, quorumOf(n), n, liveNow),
				"restore the unhealthy members before removing any")
		} else if liveAfter < quorumOf(n-1) {
			b.refuse("quorum-at-risk", fmt.Sprintf("after removing %s, %d healthy of %d members would be below quorum %d", m.Name, liveAfter, n-1, quorumOf(n-1)),
				"restore the unhealthy members first, or remove fewer hosts")
		}
	}
	return leaving
}

// survivorsOf lists the etcd members that stay.
func (b *builder) survivors() []etcd.Member {
	var out []etcd.Member
	for _, m := range b.f.Etcd.Members {
		if !b.leaving[b.memberHost(m)] {
			out = append(out, m)
		}
	}
	return out
}

func (b *builder) sortedUnitHosts() []string {
	var names []string
	for name := range b.f.Units {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// apiservers plans the rewrite and rolling restart of every surviving master's
// control-plane units: --etcd-servers to the surviving members, --apiserver-count, and any
// controller-manager or scheduler setting that names a leaving master.
func (b *builder) apiservers() {
	survivingMasters := 0
	for _, h := range b.f.Hosts {
		if h.Has(inventory.RoleMaster) && !b.leaving[h.Name] {
			survivingMasters++
		}
	}
	var etcdURLs []string
	for _, m := range b.survivors() {
		etcdURLs = append(etcdURLs, m.ClientURLs...)
	}
	removed := slices.Clone(b.leaveIPs)
	removed = append(removed, b.t.Remove...)
	for _, name := range b.sortedUnitHosts() {
		c := b.f.Units[name].Components
		if c == nil || !c.APIServer.Present || b.leaving[name] {
			continue
		}
		r, err := apiserver.PlanRewrite(*c, name, etcdURLs, survivingMasters, removed)
		if err != nil {
			b.refuse("apiserver-rewrite", fmt.Sprintf("control-plane units on %s: %v", name, err),
				"fix the unit by hand (it must keep at least one surviving etcd member) and plan again")
			continue
		}
		for _, f := range r.Findings {
			if !f.Rewritten {
				b.warn("%s: %s %s in %s:%d names %s: %s", name, f.Component, f.Flag, f.File, f.Line, f.Address, f.Note)
			}
		}
		if len(r.Changes) == 0 {
			continue
		}
		var details []string
		for _, f := range r.Findings {
			if f.Rewritten {
				details = append(details, fmt.Sprintf("%s %s: %s", f.Component, f.Flag, f.Note))
			}
		}
		b.add(Step{ID: "apiserver/update/" + name, Kind: KindAPIServerRewrite, Host: name, Risk: Disruptive,
			Summary: "rewrite " + strings.Join(r.Restart, ", ") + " for the surviving etcd members and masters; restart one at a time, each gated on readiness",
			Details: details, Files: r.Changes, Params: map[string]string{"restart": strings.Join(r.Restart, ",")},
			Relies: []string{"units." + name}})
	}
}

// loadBalancers plans the nginx rewrite on every staying node.
func (b *builder) loadBalancers() {
	var leaving []string
	for _, name := range b.t.Remove {
		h, _ := b.f.Host(name)
		if !h.Has(inventory.RoleMaster) {
			continue
		}
		port := h.Paths.APIServerPort
		if port == 0 {
			port = 6443
		}
		leaving = append(leaving, net.JoinHostPort(h.Address, strconv.Itoa(port)))
	}
	if len(leaving) == 0 {
		return
	}
	mode := lb.MarkDown
	if b.t.LBMode == "remove" {
		mode = lb.Remove
	}
	var names []string
	for name := range b.f.LB {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if b.leaving[name] || b.offline[name] {
			continue
		}
		cfg := b.f.LB[name]
		// A proxy fronting no apiserver would get no step at all, and keep sending the node's
		// clients wherever it sends them: the inventory points at the wrong file, or the
		// upstream is wrong.
		var none *lb.NoAPIServerError
		if errors.As(lb.RequireAPIServer(cfg), &none) {
			b.refuse("lb-no-apiserver", fmt.Sprintf("the proxy on %s fronts no apiserver: %s: %s", name, none.File, none.Found),
				"point the inventory's nginx_config at the proxy that fronts the apiservers, or fix the upstream")
			continue
		}
		files, err := lb.Rewrite(cfg, leaving, mode)
		if errors.Is(err, lb.ErrNoUpstreamLeft) {
			b.refuse("lb-empty", fmt.Sprintf("the proxy on %s would be left with no apiserver: %v", name, err),
				"add a surviving apiserver to its upstream first, or keep a master")
			continue
		}
		if err != nil {
			b.refuse("lb-config", fmt.Sprintf("the proxy config on %s: %v", name, err), "fix the nginx config by hand and plan again")
			continue
		}
		if len(files) == 0 {
			continue
		}
		summary := "mark " + strings.Join(leaving, ", ") + " down in the node's nginx, nginx -t, reload, probe"
		if mode == lb.Remove {
			summary = "remove " + strings.Join(leaving, ", ") + " from the node's nginx, nginx -t, reload, probe"
		}
		b.add(Step{ID: "lb/update/" + name, Kind: KindLBUpdate, Host: name, Risk: Disruptive, Summary: summary,
			Files: files, Params: map[string]string{"leaving": strings.Join(leaving, ","), "mode": b.t.LBMode},
			Relies: []string{"lb." + name}})
	}
}

// retire plans stopping the leaving masters' apiserver, controller-manager and scheduler.
func (b *builder) retire() {
	for _, name := range b.t.Remove {
		hu, ok := b.f.Units[name]
		if !ok {
			continue
		}
		var units []string
		if hu.Components != nil {
			for _, c := range hu.Components.Each() {
				if c.Present {
					units = append(units, c.UnitName)
				}
			}
		}
		if len(units) == 0 {
			continue
		}
		s := Step{ID: "components/retire/" + name, Kind: KindRetire, Host: name, Risk: Disruptive,
			Summary: "stop and disable " + strings.Join(units, ", "),
			Params:  map[string]string{"units": strings.Join(units, ",")}}
		if b.offline[name] {
			s.Params["offline"] = "true"
			s.Summary = "host offline: confirm the leases moved; stop " + strings.Join(units, ", ") + " by hand if it returns"
		}
		b.add(s)
	}
}

// etcdMembership plans leadership, removals, stops and the survivors' --initial-cluster.
func (b *builder) etcdMembership(removals []etcd.Member) {
	orphans := b.orphanStops()
	// The survivors' --initial-cluster follows every shrink of etcd, also when an earlier run
	// already removed the members: a resumed plan must derive the same rewrite.
	if len(removals) == 0 && len(orphans) == 0 && !b.removesEtcdHost() {
		return
	}
	if len(removals) > 0 {
		b.removals(removals)
	}
	for _, s := range orphans {
		b.add(s)
	}
	var survivorNames []string
	for _, m := range b.survivors() {
		survivorNames = append(survivorNames, m.Name)
	}
	initial := etcd.InitialClusterFor(b.f.Etcd, survivorNames)
	for _, name := range b.sortedUnitHosts() {
		u := b.f.Units[name].Etcd
		if u == nil || b.leaving[name] {
			continue
		}
		files, err := etcd.PlanSurvivorUnit(u, name, initial)
		if err != nil {
			b.refuse("unit-rewrite", fmt.Sprintf("etcd unit on %s: %v", name, err), "fix the unit file by hand and plan again")
			continue
		}
		if len(files) == 0 {
			continue
		}
		b.add(Step{ID: KindInitialCluster + "/" + name, Kind: KindInitialCluster, Host: name, Risk: Safe,
			Summary: "rewrite --initial-cluster to the survivors and daemon-reload, no restart",
			Details: []string{"--initial-cluster=" + initial, "--initial-cluster-state=existing",
				"etcd ignores both once its data dir exists: this only keeps a later rebuild of the member correct"},
			Files: files, Params: map[string]string{"unit": u.Name}})
	}
}

func (b *builder) removesEtcdHost() bool {
	for _, name := range b.t.Remove {
		if h, ok := b.f.Host(name); ok && h.Has(inventory.RoleEtcd) {
			return true
		}
	}
	return false
}

// removals plans the leadership move and, per leaving member, its removal and its stop.
func (b *builder) removals(removals []etcd.Member) {
	var leavingIDs []uint64
	for _, m := range removals {
		leavingIDs = append(leavingIDs, m.ID)
	}
	moveSummary := "make sure the etcd leader is a survivor"
	if slices.Contains(leavingIDs, b.f.Etcd.LeaderID) {
		if to, err := etcd.PickNewLeader(b.f.Etcd, leavingIDs); err == nil {
			moveSummary += fmt.Sprintf(": move leadership from %s to %s", b.memberName(b.f.Etcd.LeaderID), b.memberName(to))
		}
	} else if b.f.Etcd.LeaderID != 0 {
		moveSummary += " (now " + b.memberName(b.f.Etcd.LeaderID) + ": nothing to move)"
	}
	b.add(Step{ID: KindMoveLeader, Kind: KindMoveLeader, Risk: Disruptive, Summary: moveSummary,
		Params: map[string]string{"leaving": hexIDs(leavingIDs)}})

	n := len(b.f.Etcd.Members)
	healthyAfter := 0
	for _, m := range b.survivors() {
		if m.Healthy {
			healthyAfter++
		}
	}
	for _, m := range removals {
		host := b.memberHost(m)
		q := &Quorum{MembersBefore: n, MembersAfter: n - 1, QuorumBefore: quorumOf(n), QuorumAfter: quorumOf(n - 1), HealthyAfter: healthyAfter + countStaying(removals, m, b)}
		n--
		// The executor re-reads the member list and acts only on the member with this ID at
		// these peer URLs: a member replaced since (new ID, same address) is refused.
		params := map[string]string{"member_id": etcd.FormatID(m.ID), "member": m.Name, "peer_urls": strings.Join(m.PeerURLs, ",")}
		if b.offline[host] {
			params["offline"] = "true"
		}
		b.add(Step{ID: KindRemoveMember + "/" + orName(host, m.Name), Kind: KindRemoveMember, Host: host, Risk: Irreversible,
			Summary: fmt.Sprintf("remove etcd member %s (%x) at %s, wait until it is gone and a leader exists", m.Name, m.ID, strings.Join(m.PeerURLs, ",")),
			Quorum:  q, Params: params, Relies: []string{"etcd.members"}})
		if b.offline[host] {
			continue
		}
		if s, ok := b.stopStep(host, "stop and disable UNIT on the removed member's host once the host's own etcd proves it is no member (it would crash-loop or exit)"); ok {
			b.add(s)
		}
	}
}

// stopStep is the stop of host's etcd unit; false when the host has no etcd unit to stop.
// Its params are the same whether the removal is in this plan or was done by an earlier run,
// so a resumed run finds the step it was approved with.
func (b *builder) stopStep(host, summary string) (Step, bool) {
	unit := ""
	if hu, ok := b.f.Units[host]; ok && hu.Etcd != nil {
		unit = hu.Etcd.Name
	} else if h, ok := b.f.Host(host); ok {
		unit = h.Paths.EtcdUnit
	}
	if unit == "" {
		return Step{}, false
	}
	h, _ := b.f.Host(host)
	return Step{ID: KindStopEtcd + "/" + host, Kind: KindStopEtcd, Host: host, Risk: Disruptive,
		Summary: strings.ReplaceAll(summary, "UNIT", unit),
		Params:  map[string]string{"unit": unit, "endpoint": b.etcdEndpoint(host), "address": h.Address}}, true
}

// etcdEndpoint is where the host's own etcd answers, as observe asked it.
func (b *builder) etcdEndpoint(host string) string {
	if self, ok := b.f.EtcdSelf[host]; ok && self.Endpoint != "" {
		return self.Endpoint
	}
	h, _ := b.f.Host(host)
	port := h.Paths.EtcdClientPort
	if port == 0 {
		port = 2379
	}
	return "https://" + net.JoinHostPort(h.Address, strconv.Itoa(port))
}

// orphanStops plans the stop of etcd on leaving hosts that no member maps to while their unit
// still runs or is enabled: a run that crashed between a removal and its stop leaves exactly
// that, and a new plan must not forget it.
func (b *builder) orphanStops() []Step {
	var out []Step
	for _, host := range b.leavingWithoutMember() {
		hu, ok := b.f.Units[host]
		if b.offline[host] || !ok || hu.Etcd == nil {
			continue
		}
		st := hu.EtcdStatus
		running := st.ActiveState == "active" || st.ActiveState == "activating" || st.ActiveState == "reloading"
		if !running && st.UnitFileState != "enabled" {
			continue
		}
		if s, ok := b.stopStep(host, "stop and disable UNIT: no etcd member has this host's address any more (an earlier run removed it?); the host's own etcd must prove it is no member first"); ok {
			out = append(out, s)
		}
	}
	return out
}

// orName prefers the inventory host name in step IDs: member names are often IPs.
func orName(host, member string) string {
	if host != "" {
		return host
	}
	return member
}

// countStaying counts the healthy leaving members still present after m is removed, so the
// quorum line shows the health of the membership right after each step.
func countStaying(removals []etcd.Member, m etcd.Member, b *builder) int {
	after := false
	count := 0
	for _, x := range removals {
		if after && x.Healthy && !b.offline[b.memberHost(x)] {
			count++
		}
		if x.ID == m.ID {
			after = true
		}
	}
	return count
}

func (b *builder) memberName(id uint64) string {
	for _, m := range b.f.Etcd.Members {
		if m.ID == id {
			return m.Name
		}
	}
	return fmt.Sprintf("%x", id)
}

func hexIDs(ids []uint64) string {
	var s []string
	for _, id := range ids {
		s = append(s, fmt.Sprintf("%x", id))
	}
	return strings.Join(s, ",")
}

// certificates plans re-signing every certificate that names a leaving address, once per
// certificate (the same etcd certificate is often copied to every master) and installed on
// every staying host that holds it.
func (b *builder) certificates() {
	type group struct {
		cert  Cert
		hosts []string
		paths []string
	}
	groups := map[string]*group{}
	var order []string
	for _, c := range b.f.Certs {
		if b.leaving[c.Host] {
			continue
		}
		var drop []string
		for _, ip := range c.Info.IPAddresses {
			if slices.Contains(b.leaveIPs, ip) {
				drop = append(drop, ip)
			}
		}
		if len(drop) == 0 {
			continue
		}
		// One group per certificate and path: the same certificate kept under another name
		// has other users and another key path.
		key := c.Info.Serial + "\x00" + c.Path
		g, ok := groups[key]
		if !ok {
			g = &group{cert: c}
			groups[key] = g
			order = append(order, key)
		}
		g.hosts = append(g.hosts, c.Host)
		g.paths = append(g.paths, c.Host+":"+c.Path)
	}
	if len(order) == 0 {
		return
	}
	for _, key := range order {
		if c := groups[key].cert; c.ResignProblem != "" {
			b.refuse("cert-not-resignable", fmt.Sprintf("%s:%s names a leaving address but cannot be re-signed by the cluster CA: %s", c.Host, c.Path, c.ResignProblem),
				"fix the CA files or ca-config profile the inventory names (paths.ca_cert, ca_key, ca_config), or re-issue this certificate by hand before the shrink")
		}
	}
	if !b.f.CA.KeyPresent && len(b.f.CA.KeyOnLeaving) > 0 {
		return // refused in checkCAKey
	}
	if !b.f.CA.KeyPresent {
		b.refuse("ca-key-missing", fmt.Sprintf("certificates name removed addresses but the CA key %s is not on %s", b.f.CA.KeyPath, b.f.CA.Host),
			"put the CA key where the inventory says (paths.ca_key, on the CA host) or point the inventory at it")
		return
	}
	names := map[string]int{}
	for _, key := range order {
		names[certName(groups[key].cert.Path)]++
	}
	for _, key := range order {
		g := groups[key]
		info := g.cert.Info
		serial := info.Serial
		before := append(slices.Clone(info.DNSNames), info.IPAddresses...)
		var after []string
		for _, h := range before {
			if !slices.Contains(b.leaveIPs, h) {
				after = append(after, h)
			}
		}
		id := "certs/resign/" + certName(g.cert.Path)
		if names[certName(g.cert.Path)] > 1 {
			id = "certs/resign/" + g.hosts[0] + "/" + certName(g.cert.Path)
		}
		b.add(Step{ID: id, Kind: KindCertResign, Host: g.hosts[0], Risk: Disruptive,
			Summary: fmt.Sprintf("re-sign %s (CN %s) without %s, install on %s, confirm it is served",
				path.Base(g.cert.Path), info.Subject.CommonName, strings.Join(intersect(before, b.leaveIPs), ", "), strings.Join(g.hosts, ", ")),
			Details: []string{"SANs before: " + strings.Join(before, ", "), "SANs after:  " + strings.Join(after, ", "),
				"used by: " + strings.Join(g.cert.UsedBy, ", "), "files: " + strings.Join(g.paths, ", ")},
			Params: map[string]string{"path": g.cert.Path, "key_path": g.cert.KeyPath, "hosts": strings.Join(g.hosts, ","),
				"serial": serial, "remove": strings.Join(intersect(before, b.leaveIPs), ","), "used_by": strings.Join(g.cert.UsedBy, ",")},
			Relies: []string{"certs." + serial}})
	}
}

func certName(p string) string { return strings.TrimSuffix(path.Base(p), ".pem") }

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// workers plans drain, Node deletion and host cleanup for drained workers and for removed
// masters that are also Nodes.
func (b *builder) workers() {
	targets := slices.Clone(b.t.Drain)
	for _, name := range b.t.Remove {
		if b.nodeFor(name) != "" && !slices.Contains(targets, name) {
			targets = append(targets, name)
		}
	}
	sort.Strings(targets)
	for _, name := range targets {
		node := b.nodeFor(name)
		if node == "" {
			b.warn("%s is not a Kubernetes Node: nothing to drain; its host is still cleaned", name)
		} else {
			var details []string
			ready := true
			for _, n := range b.f.Nodes {
				if n.Name != node {
					continue
				}
				ready = n.Ready
				for _, p := range n.Pods {
					line := fmt.Sprintf("%s %s/%s", p.Verdict, p.Namespace, p.Name)
					if p.Reason != "" {
						line += ": " + p.Reason
					}
					details = append(details, line)
					if p.Verdict == "refuse" {
						b.refuse("drain-refused", fmt.Sprintf("pod %s/%s on %s cannot be evicted safely: %s", p.Namespace, p.Name, node, p.Reason), p.Hint)
					}
				}
			}
			params := map[string]string{"node": node}
			summary := "cordon, guard PDBs, evict pods, wait for them to go"
			if !ready || b.offline[name] {
				params["node_down"] = "true"
				summary = "node is NotReady: cordon, delete its pods so controllers reschedule them (consent recorded here)"
			}
			b.add(Step{ID: "nodes/drain/" + node, Kind: KindDrain, Host: name, Risk: Disruptive, Summary: summary,
				Details: details, Params: params, Relies: []string{"nodes." + node}})
			b.add(Step{ID: "nodes/delete/" + node, Kind: KindDeleteNode, Host: name, Risk: Disruptive,
				Summary: "delete the Node object", Params: map[string]string{"node": node}})
		}
		if b.offline[name] {
			continue
		}
		b.add(Step{ID: "nodes/cleanup/" + name, Kind: KindCleanup, Host: name, Risk: Disruptive,
			Summary: "back up /etc/kubernetes, stop kubelet and kube-proxy, remove containers, mounts, CNI links, kube iptables chains; verify clean"})
	}
}

// leavingProxies stops the node proxy of every leaving master that runs one: nothing updates
// it any more, and it would keep routing to every old apiserver (kubeasz's kube-lb on a
// master). It runs after the host's drain and cleanup, which still use it.
func (b *builder) leavingProxies() {
	for _, name := range b.t.Remove {
		if _, ok := b.f.LB[name]; !ok || b.offline[name] {
			continue
		}
		h, _ := b.f.Host(name)
		unit := h.Paths.NginxUnit
		if unit == "" {
			continue
		}
		b.add(Step{ID: KindLBStop + "/" + name, Kind: KindLBStop, Host: name, Risk: Disruptive,
			Summary: "stop and disable " + unit + " on the leaving host: it would keep routing to the old apiservers",
			Params:  map[string]string{"unit": unit}})
	}
}

// nodeFor finds the Kubernetes Node of an inventory host, by name or address.
func (b *builder) nodeFor(name string) string {
	h, _ := b.f.Host(name)
	for _, n := range b.f.Nodes {
		if n.Name == name || slices.Contains(n.Addresses, h.Address) {
			return n.Name
		}
	}
	return ""
}

func (b *builder) warnings() {
	left := len(b.survivors())
	if len(b.f.Etcd.Members) > 0 && left%2 == 0 {
		b.warn("the result has %d etcd members: an even count tolerates no more failures than %d", left, left-1)
	}
	// Files the plan rewrites or re-signs are not leftovers, even where the rewrite keeps the
	// address (a server marked down still names it).
	planned := map[string]bool{}
	for _, s := range b.p.Steps {
		for _, f := range s.Files {
			planned[f.Host+":"+f.Path] = true
		}
		if s.Kind == KindCertResign {
			for _, h := range strings.Split(s.Params["hosts"], ",") {
				planned[h+":"+s.Params["path"]] = true
			}
		}
	}
	var hosts []string
	for h := range b.f.Leftovers {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		var files []string
		for _, f := range b.f.Leftovers[h] {
			if !planned[h+":"+f] {
				files = append(files, f)
			}
		}
		if len(files) > 0 {
			b.warn("%s still names a removed address in files this plan does not rewrite: %s", h, strings.Join(files, ", "))
		}
	}
}

// finish marks the point of no return, fingerprints and summarises.
func (b *builder) finish() {
	p := b.p
	if len(p.Refusals) > 0 {
		p.Steps = nil
	}
	past := false
	for i := range p.Steps {
		if p.Steps[i].Risk == Irreversible && !past {
			past = true
			p.PointOfNoReturn = p.Steps[i].ID
		}
		p.Steps[i].PastNoReturn = past
	}
	p.Fingerprint = Fingerprint(p)
	p.Summary = summarize(p)
}
