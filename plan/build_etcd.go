package plan

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	etcd "github.com/mastershrink/mastershrink/etcd/etcdfacts"
	"github.com/mastershrink/mastershrink/inventory"
)

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
	for _, name := range slices.Sorted(maps.Keys(b.f.Units)) {
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
			Files: files, Params: EncodeParams(InitialClusterParams{Unit: u.Name})})
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
		Params: EncodeParams(MoveLeaderParams{Leaving: hexIDs(leavingIDs)})})

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
		params := EncodeParams(RemoveMemberParams{MemberID: etcd.FormatID(m.ID), Member: m.Name, PeerURLs: m.PeerURLs, Offline: b.offline[host]})
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
		Params:  EncodeParams(StopEtcdParams{Unit: unit, Endpoint: b.etcdEndpoint(host), Address: h.Address})}, true
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

func hexIDs(ids []uint64) []string {
	var s []string
	for _, id := range ids {
		s = append(s, fmt.Sprintf("%x", id))
	}
	return s
}

// MoveLeaderParams: etcd/move-leader.
type MoveLeaderParams struct {
	// Leaving are the hex IDs of the members the shrink removes.
	Leaving []string `param:"leaving"`
}

func (MoveLeaderParams) ParamsKind() string { return KindMoveLeader }

// RemoveMemberParams: etcd/remove-member. The executor acts only on the member with this ID
// at these peer URLs.
type RemoveMemberParams struct {
	MemberID string   `param:"member_id"`
	Member   string   `param:"member"`
	PeerURLs []string `param:"peer_urls"`
	Offline  bool     `param:"offline"`
}

func (RemoveMemberParams) ParamsKind() string { return KindRemoveMember }

// StopEtcdParams: etcd/stop.
type StopEtcdParams struct {
	Unit string `param:"unit"`
	// Endpoint is where the host's own etcd answers; Address the host's inventory address.
	Endpoint string `param:"endpoint"`
	Address  string `param:"address"`
}

func (StopEtcdParams) ParamsKind() string { return KindStopEtcd }

// InitialClusterParams: etcd/initial-cluster.
type InitialClusterParams struct {
	Unit string `param:"unit"`
}

func (InitialClusterParams) ParamsKind() string { return KindInitialCluster }
