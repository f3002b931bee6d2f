package plan

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"

	etcd "github.com/mastershrink/mastershrink/etcd/etcdfacts"
	"github.com/mastershrink/mastershrink/inventory"
)

// Identity of etcd members is by address: a member is the etcd of the host its peer URLs point
// at (names resolved as the hosts resolve them), and the host's own etcd must agree when asked.
// Names only have to not contradict it: after a member replacement, or with etcd hosts listed
// in another order, names lie, and removing "the member called m2" would remove the wrong one.

// addrsOf is what a host name or address stands for: itself, and what it resolved to on the
// hosts when it is a name.
func (b *builder) addrsOf(nameOrIP string) []string {
	out := []string{nameOrIP}
	if net.ParseIP(nameOrIP) == nil {
		out = append(out, b.f.Resolved[nameOrIP]...)
	}
	return out
}

// PeerHost returns the host part of a peer or client URL ("https://10.0.0.1:2380": 10.0.0.1).
func PeerHost(u string) string {
	if pu, err := url.Parse(u); err == nil && pu.Host != "" {
		return pu.Hostname()
	}
	return u
}

func overlap(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// memberAddrs are every address a member's peer URLs stand for.
func (b *builder) memberAddrs(m etcd.Member) []string {
	var out []string
	for _, u := range m.PeerURLs {
		out = append(out, b.addrsOf(PeerHost(u))...)
	}
	return out
}

// namesOther says which other inventory host a member's name designates, if any.
func (b *builder) namesOther(m etcd.Member, hostName string) string {
	if m.Name == "" {
		return ""
	}
	for _, h := range b.f.Hosts {
		if h.Name != hostName && (m.Name == h.Name || m.Name == h.Address) {
			return h.Name
		}
	}
	return ""
}

// mapMembers maps every etcd member to exactly one inventory host and back, or refuses with
// the exact conflict. It fills b.hostOf and b.memberOf.
func (b *builder) mapMembers() {
	b.hostOf = map[uint64]string{}
	b.memberOf = map[string]etcd.Member{}
	for _, m := range b.f.Etcd.Members {
		who := memberLabel(m)
		addrs := b.memberAddrs(m)
		var cands []string
		for _, h := range b.f.Hosts {
			if overlap(b.addrsOf(h.Address), addrs) {
				cands = append(cands, h.Name)
			}
		}
		switch {
		case len(cands) == 0:
			why := ""
			for _, u := range m.PeerURLs {
				if ph := PeerHost(u); net.ParseIP(ph) == nil && len(b.f.Resolved[ph]) == 0 {
					why = fmt.Sprintf(" (%s does not resolve on the hosts)", ph)
				}
			}
			b.refuse("etcd-member-unmapped", fmt.Sprintf("etcd member %s with peer URLs %s is on no inventory host%s", who, strings.Join(m.PeerURLs, ","), why),
				"add the host it runs on to the inventory with role etcd and the address its peer URL names, or make that name resolve on the hosts")
			continue
		case len(cands) > 1:
			b.refuse("etcd-member-ambiguous", fmt.Sprintf("etcd member %s with peer URLs %s matches several inventory hosts: %s", who, strings.Join(m.PeerURLs, ","), strings.Join(cands, ", ")),
				"give each host its own address in the inventory")
			continue
		}
		h := cands[0]
		if other := b.namesOther(m, h); other != "" {
			b.refuse("etcd-identity-conflict", fmt.Sprintf("etcd member %s has the peer address of %s, but its name is that of %s", who, h, other),
				"check which etcd runs where (etcdctl member list -w table; systemctl cat on each host): if the names were swapped, restart each member with its own --name, or fix the inventory, then plan again")
			continue
		}
		if self, ok := b.f.EtcdSelf[h]; ok && self.MemberID != "" && self.MemberID != etcd.FormatID(m.ID) {
			b.refuse("etcd-identity-conflict", fmt.Sprintf("member %s has the peer address of %s, but the etcd on %s (%s) says it is member %s", who, h, h, self.Endpoint, self.MemberID),
				"check the etcd unit on "+h+" (its --initial-advertise-peer-urls and --name) and the member list, then plan again")
			continue
		}
		if prev, dup := b.memberOf[h]; dup {
			b.refuse("etcd-host-two-members", fmt.Sprintf("etcd members %s and %s both have the peer address of %s", memberLabel(prev), who, h),
				"remove the stale member by hand (etcdctl member remove) after checking which one runs, then plan again")
			continue
		}
		b.memberOf[h] = m
		b.hostOf[m.ID] = h
	}
	// An etcd host whose own etcd names a member mapped elsewhere is a conflict too.
	for _, h := range b.f.Hosts {
		self, ok := b.f.EtcdSelf[h.Name]
		if !ok || self.MemberID == "" {
			continue
		}
		if _, mapped := b.memberOf[h.Name]; mapped {
			continue
		}
		for _, m := range b.f.Etcd.Members {
			if etcd.FormatID(m.ID) == self.MemberID {
				b.refuse("etcd-identity-conflict", fmt.Sprintf("the etcd on %s (%s) says it is member %s, whose peer URLs %s name another host", h.Name, self.Endpoint, memberLabel(m), strings.Join(m.PeerURLs, ",")),
					"check the member's peer URLs (etcdctl member list) and the inventory addresses, then plan again")
			}
		}
	}
}

func memberLabel(m etcd.Member) string {
	if m.Name == "" {
		return "(unnamed) (" + etcd.FormatID(m.ID) + ")"
	}
	return m.Name + " (" + etcd.FormatID(m.ID) + ")"
}

// memberHost is the inventory host of a member; empty when it has none (the plan refuses).
func (b *builder) memberHost(m etcd.Member) string { return b.hostOf[m.ID] }

// leavingWithoutMember lists the leaving etcd hosts that no member maps to, sorted: an
// earlier run removed them (a crash before their stop), or they never joined.
func (b *builder) leavingWithoutMember() []string {
	var out []string
	for _, name := range b.t.Remove {
		h, ok := b.f.Host(name)
		if !ok || !h.Has(inventory.RoleEtcd) {
			continue
		}
		if _, mapped := b.memberOf[name]; !mapped {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// checkOperator refuses a shrink that would cut mastershrink off mid-way: the kubeconfig's
// server on a leaving host (the drain, delete and final check would fail past the point of no
// return), mastershrink running on a leaving host, or the only CA key on leaving hosts.
func (b *builder) checkOperator() {
	leavingAddrs := map[string]string{}
	for _, name := range b.t.Remove {
		h, _ := b.f.Host(name)
		for _, a := range b.addrsOf(h.Address) {
			leavingAddrs[a] = name
		}
		leavingAddrs[name] = name
	}
	if b.f.KubeServer != "" {
		sh := PeerHost(b.f.KubeServer)
		for _, a := range b.addrsOf(sh) {
			if name, ok := leavingAddrs[a]; ok {
				b.refuse("kubeconfig-leaving", fmt.Sprintf("the kubeconfig's server %s is %s, which leaves", b.f.KubeServer, name),
					"point the inventory's kubeconfig at a surviving master or at the load balancer (kubectl config set-cluster ... --server=https://SURVIVOR:6443)")
				break
			}
		}
	}
	if len(b.f.APIEndpoints) > 0 {
		known := false
		for _, h := range b.f.Hosts {
			if h.Has(inventory.RoleMaster) && overlap(b.addrsOf(h.Address), b.f.APIEndpoints) {
				known = true
			}
		}
		if !known {
			b.refuse("kubeconfig-other-cluster", fmt.Sprintf("the Kubernetes API the kubeconfig reaches (%s) lists apiservers %s, none of them a master of this inventory",
				b.f.KubeServer, strings.Join(b.f.APIEndpoints, ", ")),
				"check --kubeconfig, --context and KUBECONFIG (mastershrink status names the kubeconfig it used), or the inventory's masters")
		}
	}
	for _, a := range b.f.LocalAddrs {
		if name, ok := leavingAddrs[a]; ok {
			b.refuse("operator-on-leaving", fmt.Sprintf("mastershrink runs on %s (%s), which leaves", name, a),
				"run it from a surviving master or a jump host")
			break
		}
	}
	if !b.f.CA.KeyPresent && len(b.f.CA.KeyOnLeaving) > 0 {
		b.refuse("ca-key-only-on-leaving", fmt.Sprintf("the CA key is only on leaving hosts (%s): retiring them would lose the last copy", strings.Join(b.f.CA.KeyOnLeaving, ", ")),
			fmt.Sprintf("copy it to a surviving master at %s first (mode 0600), then plan again", b.f.CA.KeyPath))
	}
}
