package plan

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	etcd "github.com/mastershrink/mastershrink/etcd/etcdfacts"
	"github.com/mastershrink/mastershrink/inventory"
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
	b.unitMismatches()
	b.mapMembers()
	b.add(Step{ID: "preflight", Kind: KindPreflight, Risk: Safe,
		Summary: "re-check hosts, etcd health, CA key, LB configs and survivors' /readyz; take the apply lock"})

	removals := b.etcdRemovals()
	if len(removals) > 0 {
		b.add(Step{ID: "etcd/snapshot", Kind: KindSnapshot, Risk: Safe,
			Summary: "snapshot etcd from the leader" + b.leaderNote() + ", verify hash, revision and key count",
			Relies:  []string{"etcd.members"}})
	}
	b.vips()
	b.apiservers()
	b.loadBalancers()
	b.notePutBack()
	b.retire()
	b.etcdMembership(removals)
	b.certificates()
	b.workers()
	b.leavingProxies()
	b.wipeLeaving()
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
	for _, name := range append(append([]string{}, b.t.Remove...), b.t.Drain...) {
		if h, _ := b.f.Host(name); h.Has(inventory.RoleLB) && !h.Has(inventory.RoleMaster) && !h.Has(inventory.RoleEtcd) && !h.Has(inventory.RoleWorker) {
			b.refuse("lb-host", fmt.Sprintf("%s is a load-balancer host (role lb): mastershrink retires masters and drains workers, and never stops the front end clients reach the apiservers through", name),
				"take "+name+" out of its keepalived pair and out of DNS by hand, then out of the inventory; or leave it out of --remove and --drain")
			ok = false
		}
	}
	for _, name := range b.t.Drain {
		if h, _ := b.f.Host(name); h.Has(inventory.RoleMaster) || h.Has(inventory.RoleEtcd) {
			b.refuse("drain-control-plane", fmt.Sprintf("--drain %s names a master or etcd host: draining plans its cleanup, which removes its PKI and containers", name),
				"use --remove "+name+" to retire it from the control plane (it is drained and cleaned after), or name a worker")
			ok = false
		}
	}
	if w := b.t.WipeLeaving; w != "" && w != "move" && w != "remove" {
		b.refuse("wipe-mode", fmt.Sprintf("--wipe-leaving %q is not a way to wipe", w), "use --wipe-leaving=move (keys removed, etcd data moved aside 0600) or remove, or leave it out")
		ok = false
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
		if cp, err := DecodeParams[CertResignParams](s); err == nil {
			for _, h := range cp.Hosts {
				planned[h+":"+cp.Path] = true
			}
		}
	}
	for _, h := range slices.Sorted(maps.Keys(b.f.Leftovers)) {
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
	// A certificate that could not be read cannot be checked for removed addresses, let
	// alone re-signed: say so rather than plan as if it did not exist. A leaving host's
	// certificates retire with it.
	for _, c := range b.f.UnreadableCerts {
		if b.leaving[c.Host] {
			continue
		}
		b.warn("%s:%s (used by %s) could not be read, so it is neither checked nor re-signed: %s; check by hand that it names no removed address",
			c.Host, c.Path, usedByText(c.UsedBy), c.Error)
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
