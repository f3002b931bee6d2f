package observe

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/unitfile"
)

// StatusFormatVersion is the version of the status document (-o json|yaml).
const StatusFormatVersion = 1

// Status is what `mastershrink status` shows: the cluster as observed, with what disagrees
// with the inventory. It is built from plan.Facts by pure functions, so the view and the
// planner read the same observation.
type Status struct {
	FormatVersion int       `json:"format_version"`
	Cluster       string    `json:"cluster"`
	ObservedAt    time.Time `json:"observed_at"`
	// Kubeconfig says where the admin kubeconfig came from; KubeServer is its server.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	KubeServer string `json:"kube_server,omitempty"`
	// Leader is the leading member's name, LeaderHost the inventory host it runs on.
	Leader     string            `json:"leader,omitempty"`
	LeaderHost string            `json:"leader_host,omitempty"`
	Members    []MemberStatus    `json:"members"`
	APIServers []APIServerStatus `json:"apiservers"`
	Proxies    []ProxyStatus     `json:"proxies"`
	Certs      []CertStatus      `json:"certificates"`
	// Found is what each host was found to run, and from which files: where a preset
	// guessed a path or a unit wrong, this is what to set in the inventory.
	Found         []HostFound   `json:"found"`
	Unreachable   []HostProblem `json:"unreachable,omitempty"`
	Leftovers     []string      `json:"leftovers,omitempty"`
	Disagreements []string      `json:"disagreements,omitempty"`
}

// MemberStatus is one etcd member.
type MemberStatus struct {
	ID string `json:"id"`
	// Name is the member's own name; Host the inventory host its peer address is on.
	Name     string   `json:"name"`
	Host     string   `json:"host,omitempty"`
	PeerURLs []string `json:"peer_urls"`
	Leader   bool     `json:"leader"`
	Learner  bool     `json:"learner,omitempty"`
	Healthy  bool     `json:"healthy"`
	Error    string   `json:"error,omitempty"`
	Version  string   `json:"version,omitempty"`
	// RaftIndex is the member's raft index; Lag how many entries its applied index is behind
	// the leader's raft index (what the planner checks survivors against).
	RaftIndex uint64 `json:"raft_index"`
	Lag       uint64 `json:"lag"`
	DBSize    int64  `json:"db_size"`
}

// APIServerStatus is one master's kube-apiserver.
type APIServerStatus struct {
	Host    string `json:"host"`
	Address string `json:"address"`
	// Unit is the unit's active state ("active", "inactive", "not-found").
	Unit  string `json:"unit"`
	Ready bool   `json:"ready"`
	// EtcdServers are its --etcd-servers.
	EtcdServers []string `json:"etcd_servers,omitempty"`
}

// ProxyStatus is one node's proxy: the apiservers each of its upstreams sends to.
type ProxyStatus struct {
	Host      string           `json:"host"`
	Listen    string           `json:"listen,omitempty"`
	Upstreams []UpstreamStatus `json:"upstreams"`
}

// UpstreamStatus is one stream upstream of a node's proxy.
type UpstreamStatus struct {
	Name    string           `json:"name"`
	File    string           `json:"file"`
	Servers []UpstreamServer `json:"servers"`
}

// UpstreamServer is one server line; Master is the inventory master at its address.
type UpstreamServer struct {
	Address string `json:"address"`
	Down    bool   `json:"down,omitempty"`
	Master  string `json:"master,omitempty"`
}

// CertStatus is one certificate a component uses.
type CertStatus struct {
	Host     string    `json:"host"`
	Path     string    `json:"path"`
	CN       string    `json:"cn"`
	SANs     []string  `json:"sans"`
	NotAfter time.Time `json:"not_after"`
	DaysLeft int       `json:"days_left"`
	UsedBy   []string  `json:"used_by"`
}

// HostFound is what one host runs that mastershrink reads or rewrites.
type HostFound struct {
	Host string `json:"host"`
	// Units are the control-plane units found, with the files systemd builds each from.
	Units []FoundUnit `json:"units,omitempty"`
	// Proxy is the apiserver proxy ("nginx" or "haproxy") and its main config file.
	Proxy       string `json:"proxy,omitempty"`
	ProxyConfig string `json:"proxy_config,omitempty"`
	// Keepalived is its config, VIPs and the ones this host holds, when it runs keepalived.
	Keepalived *FoundVRRP `json:"keepalived,omitempty"`
}

// FoundUnit is one unit as systemd has it on a host.
type FoundUnit struct {
	Unit  string `json:"unit"`
	State string `json:"state"`
	// Files are the fragment, its drop-ins, and the environment and config files it reads.
	Files []string `json:"files,omitempty"`
}

// FoundVRRP is keepalived on one host.
type FoundVRRP struct {
	Config string   `json:"config"`
	State  string   `json:"state"`
	VIPs   []string `json:"vips"`
	Holds  []string `json:"holds,omitempty"`
}

// FoundRows lists, per reachable host in inventory order, what it was found to run.
func FoundRows(f plan.Facts) []HostFound {
	var out []HostFound
	for _, h := range f.Hosts {
		if !h.Reachable {
			continue
		}
		row := HostFound{Host: h.Name}
		hu := f.Units[h.Name]
		if hu.Etcd != nil {
			row.Units = append(row.Units, foundUnit(hu.Etcd, hu.EtcdStatus.ActiveState))
		}
		if hu.Components != nil {
			for _, c := range hu.Components.Each() {
				if c.Present && c.Unit != nil {
					row.Units = append(row.Units, foundUnit(c.Unit, c.Status.ActiveState))
				}
			}
		}
		if cfg, ok := f.LB[h.Name]; ok {
			row.Proxy, row.ProxyConfig = "nginx", cfg.Main
			if cfg.Kind != "" {
				row.Proxy = cfg.Kind
			}
		}
		if o, ok := f.VRRP[h.Name]; ok {
			state := "inactive"
			if o.Active {
				state = "active"
			}
			if o.Error != "" {
				state = "unreadable: " + o.Error
			}
			row.Keepalived = &FoundVRRP{Config: o.Path, State: state, VIPs: o.Config.VIPs(), Holds: o.Holds}
		}
		if len(row.Units) > 0 || row.Proxy != "" || row.Keepalived != nil {
			out = append(out, row)
		}
	}
	return out
}

func foundUnit(u *unitfile.Unit, state string) FoundUnit {
	fu := FoundUnit{Unit: u.Name, State: state}
	if u.FragmentPath != "" {
		fu.Files = append(fu.Files, u.FragmentPath)
	}
	fu.Files = append(fu.Files, u.DropIns...)
	for _, e := range u.EnvironmentFiles {
		if !e.Missing {
			fu.Files = append(fu.Files, e.Path)
		}
	}
	if u.ConfigFile != "" {
		fu.Files = append(fu.Files, u.ConfigFile)
	}
	return fu
}

// HostProblem is a host that could not be reached.
type HostProblem struct {
	Host  string `json:"host"`
	Error string `json:"error"`
}

// BuildStatus turns facts observed with an empty target into the status view.
func BuildStatus(f plan.Facts, kubeconfig string) Status {
	s := Status{
		FormatVersion: StatusFormatVersion, Cluster: f.Cluster, ObservedAt: f.ObservedAt.UTC(),
		Kubeconfig: kubeconfig, KubeServer: f.KubeServer,
		Members:    MemberRows(f),
		APIServers: APIServerRows(f),
		Proxies:    ProxyRows(f),
		Certs:      CertRows(f),
		Found:      FoundRows(f),
	}
	for _, m := range s.Members {
		if m.Leader {
			s.Leader, s.LeaderHost = m.Name, m.Host
		}
	}
	for _, h := range f.Hosts {
		if !h.Reachable {
			s.Unreachable = append(s.Unreachable, HostProblem{Host: h.Name, Error: h.Error})
		}
	}
	s.Leftovers = Leftovers(f)
	s.Disagreements = Disagreements(f)
	return s
}

// addrsOf is what an address or host name stands for, as the hosts resolved it.
func addrsOf(f plan.Facts, nameOrIP string) []string {
	out := []string{nameOrIP}
	if net.ParseIP(nameOrIP) == nil {
		out = append(out, f.Resolved[nameOrIP]...)
	}
	return out
}

// MemberHosts maps each member (by ID) to the inventory hosts its peer URLs point at: by
// address, as the planner identifies members, never by name.
func MemberHosts(f plan.Facts) map[uint64][]string {
	out := map[uint64][]string{}
	for _, m := range f.Etcd.Members {
		var addrs []string
		for _, u := range m.PeerURLs {
			addrs = append(addrs, addrsOf(f, plan.PeerHost(u))...)
		}
		for _, h := range f.Hosts {
			for _, a := range addrsOf(f, h.Address) {
				if slices.Contains(addrs, a) && !slices.Contains(out[m.ID], h.Name) {
					out[m.ID] = append(out[m.ID], h.Name)
				}
			}
		}
	}
	return out
}

// MemberRows lists the etcd members in the facts' order (by name).
func MemberRows(f plan.Facts) []MemberStatus {
	hosts := MemberHosts(f)
	var leaderIndex uint64
	if l, ok := f.Etcd.Leader(); ok {
		leaderIndex = l.RaftIndex
	}
	var out []MemberStatus
	for _, m := range f.Etcd.Members {
		r := MemberStatus{
			ID: etcd.FormatID(m.ID), Name: m.Name, Host: strings.Join(hosts[m.ID], ","), PeerURLs: m.PeerURLs,
			Leader: m.ID == f.Etcd.LeaderID && m.ID != 0, Learner: m.IsLearner, Healthy: m.Healthy,
			Error: m.Error, Version: m.Version, RaftIndex: m.RaftIndex, DBSize: m.DBSize,
		}
		// An unhealthy member's indexes are zero: a lag computed from them would be noise.
		if m.Healthy && leaderIndex > m.RaftAppliedIndex {
			r.Lag = leaderIndex - m.RaftAppliedIndex
		}
		out = append(out, r)
	}
	return out
}

// APIServerRows lists every master of the inventory, in inventory order.
func APIServerRows(f plan.Facts) []APIServerStatus {
	var out []APIServerStatus
	for _, h := range f.Hosts {
		if !h.Has(inventory.RoleMaster) {
			continue
		}
		r := APIServerStatus{Host: h.Name, Address: net.JoinHostPort(h.Address, strconv.Itoa(h.Paths.APIServerPort)),
			Ready: f.APIServerReady[h.Name], Unit: "unknown"}
		if !h.Reachable {
			r.Unit = "unreachable"
		}
		if hu, ok := f.Units[h.Name]; ok && hu.Components != nil {
			c := hu.Components.APIServer
			switch {
			case !c.Present:
				r.Unit = "not-found"
			case c.Status.ActiveState != "":
				r.Unit = c.Status.ActiveState
			}
			r.EtcdServers = c.Flags.EtcdServers
		}
		out = append(out, r)
	}
	return out
}

// masterAt names the inventory master whose apiserver is at address (host:port).
func masterAt(f plan.Facts, address string) string {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return ""
	}
	for _, h := range f.Hosts {
		if h.Has(inventory.RoleMaster) && strconv.Itoa(h.Paths.APIServerPort) == port && slices.Contains(addrsOf(f, h.Address), host) {
			return h.Name
		}
	}
	return ""
}

// ProxyRows lists each node's proxy, by host name.
func ProxyRows(f plan.Facts) []ProxyStatus {
	var names []string
	for name := range f.LB {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []ProxyStatus
	for _, name := range names {
		cfg := f.LB[name]
		p := ProxyStatus{Host: name, Listen: cfg.Listen}
		for _, u := range cfg.Upstreams {
			us := UpstreamStatus{Name: u.Name, File: u.File}
			for _, s := range u.Servers {
				us.Servers = append(us.Servers, UpstreamServer{Address: s.Address, Down: s.Down, Master: masterAt(f, s.Address)})
			}
			p.Upstreams = append(p.Upstreams, us)
		}
		out = append(out, p)
	}
	return out
}

// CertRows lists the certificates the components use, soonest expiry first.
func CertRows(f plan.Facts) []CertStatus {
	var out []CertStatus
	for _, c := range f.Certs {
		sans := append(slices.Clone(c.Info.DNSNames), c.Info.IPAddresses...)
		out = append(out, CertStatus{Host: c.Host, Path: c.Path, CN: c.Info.Subject.CommonName, SANs: sans,
			NotAfter: c.Info.NotAfter.UTC(), DaysLeft: c.Info.DaysLeft, UsedBy: c.UsedBy})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].NotAfter.Equal(out[j].NotAfter) {
			return out[i].NotAfter.Before(out[j].NotAfter)
		}
		return out[i].Host+out[i].Path < out[j].Host+out[j].Path
	})
	return out
}

// Leftovers are references a shrink leaves behind when done by hand or cut short: proxy
// servers and --etcd-servers that point at no master or member any more, units of a
// control plane still running on a host the inventory no longer gives that role.
func Leftovers(f plan.Facts) []string {
	var out []string
	for _, p := range ProxyRows(f) {
		for _, u := range p.Upstreams {
			for _, s := range u.Servers {
				if s.Master == "" && !s.Down {
					out = append(out, fmt.Sprintf("%s: proxy upstream %s (%s) sends to %s, which is no master of the inventory", p.Host, u.Name, u.File, s.Address))
				}
			}
		}
	}
	var clientAddrs []string
	for _, m := range f.Etcd.Members {
		for _, u := range m.ClientURLs {
			clientAddrs = append(clientAddrs, addrsOf(f, plan.PeerHost(u))...)
		}
	}
	for _, a := range APIServerRows(f) {
		for _, e := range a.EtcdServers {
			if len(f.Etcd.Members) > 0 && !slices.Contains(clientAddrs, plan.PeerHost(e)) {
				out = append(out, fmt.Sprintf("%s: kube-apiserver --etcd-servers names %s, which is no etcd member's client URL", a.Host, e))
			}
		}
	}
	for _, h := range f.Hosts {
		hu, ok := f.Units[h.Name]
		if !ok {
			continue
		}
		if !h.Has(inventory.RoleEtcd) && hu.EtcdStatus.ActiveState == "active" {
			out = append(out, fmt.Sprintf("%s: %s is active, but the host has no etcd role in the inventory", h.Name, hu.EtcdStatus.Name))
		}
	}
	for host, files := range f.Leftovers {
		for _, file := range files {
			out = append(out, fmt.Sprintf("%s: %s names a removed address", host, file))
		}
	}
	sort.Strings(out)
	return out
}

// Disagreements are where the cluster and the inventory tell different stories: what the
// planner would refuse on, said before anyone plans.
func Disagreements(f plan.Facts) []string {
	var out []string
	hosts := MemberHosts(f)
	memberOn := map[string][]etcd.Member{}
	for _, m := range f.Etcd.Members {
		hs := hosts[m.ID]
		label := m.Name
		if label == "" {
			label = "(unnamed)"
		}
		label += " (" + etcd.FormatID(m.ID) + ")"
		switch len(hs) {
		case 0:
			out = append(out, fmt.Sprintf("etcd member %s with peer URLs %s is on no inventory host", label, strings.Join(m.PeerURLs, ",")))
			continue
		case 1:
		default:
			out = append(out, fmt.Sprintf("etcd member %s matches several inventory hosts: %s", label, strings.Join(hs, ", ")))
			continue
		}
		h, _ := f.Host(hs[0])
		memberOn[h.Name] = append(memberOn[h.Name], m)
		if !h.Has(inventory.RoleEtcd) {
			out = append(out, fmt.Sprintf("etcd member %s runs on %s, which has no etcd role in the inventory", label, h.Name))
		}
		if m.Name != "" && m.Name != h.Name && m.Name != h.Address {
			other := ""
			for _, o := range f.Hosts {
				if o.Name != h.Name && (o.Name == m.Name || o.Address == m.Name) {
					other = o.Name
				}
			}
			if other != "" {
				out = append(out, fmt.Sprintf("etcd member %s has the peer address of %s, but its name is that of %s", label, h.Name, other))
			} else {
				out = append(out, fmt.Sprintf("etcd member %s runs on %s under another name", label, h.Name))
			}
		}
		if self, ok := f.EtcdSelf[h.Name]; ok && self.MemberID != "" && self.MemberID != etcd.FormatID(m.ID) {
			out = append(out, fmt.Sprintf("etcd member %s has the peer address of %s, but the etcd on %s says it is member %s", label, h.Name, h.Name, self.MemberID))
		}
	}
	for _, h := range f.Hosts {
		if !h.Has(inventory.RoleEtcd) {
			continue
		}
		switch n := len(memberOn[h.Name]); {
		case n == 0:
			out = append(out, fmt.Sprintf("%s has the etcd role, but no etcd member has its address (%s)", h.Name, h.Address))
		case n > 1:
			out = append(out, fmt.Sprintf("%s has %d etcd members at its address", h.Name, n))
		}
	}
	// A unit the inventory names that does not run where its program runs under another.
	for _, name := range slices.Sorted(maps.Keys(f.Units)) {
		for _, m := range f.Units[name].Mismatches {
			out = append(out, fmt.Sprintf("%s: the inventory's %s is %s (%s there), but %s runs as %s: set %s: %s",
				name, m.Field, m.Inventory, m.State, m.Program, m.Found, m.Field, m.Found))
		}
	}
	// A master that no proxy sends to gets no traffic from the nodes; one that some proxies
	// send to and others not means the proxies disagree with each other.
	for _, a := range APIServerRows(f) {
		var missing []string
		for _, p := range ProxyRows(f) {
			found := false
			for _, u := range p.Upstreams {
				for _, s := range u.Servers {
					found = found || (s.Master == a.Host && !s.Down)
				}
			}
			if !found {
				missing = append(missing, p.Host)
			}
		}
		if len(missing) > 0 {
			out = append(out, fmt.Sprintf("master %s (%s) is in no upstream of the proxy on %s", a.Host, a.Address, strings.Join(missing, ", ")))
		}
	}
	sort.Strings(out)
	return out
}
