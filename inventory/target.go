package inventory

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mastershrink/mastershrink/internal/editdist"
)

// TargetProblem is one reason the operator's target cannot be planned, decided from the
// inventory alone. Code, Reason and WayOut read like plan.Refusal's, so the refusal looks
// the same whether it comes before or after observing.
type TargetProblem struct {
	Code string
	// Flag is the flag that named the host ("--remove"), empty when the target as a whole
	// is wrong.
	Flag   string
	Host   string
	Reason string
	WayOut string
}

func (p TargetProblem) String() string {
	s := p.Reason + " (" + p.WayOut + ")"
	if p.Flag != "" {
		return p.Flag + " " + p.Host + ": " + s
	}
	return s
}

// TargetError lists every problem of a target.
type TargetError struct {
	Problems []TargetProblem
}

// Error is the one problem on one line, or a count followed by one problem a line.
func (e *TargetError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].String()
	}
	lines := []string{fmt.Sprintf("the target has %d problems:", len(e.Problems))}
	for _, p := range e.Problems {
		lines = append(lines, "  "+p.String())
	}
	return strings.Join(lines, "\n")
}

// CheckTarget returns every problem of a target that the inventory alone can decide: names
// that are not hosts (an address instead of a name included), a worker to --remove or a
// master or etcd host to --drain, a target that removes every master or every etcd host,
// and --offline naming a host that is not leaving. It reaches no host, so that a wrong
// target is refused even when the cluster is unreachable, before any connection is tried.
func CheckTarget(inv *Inventory, remove, drain, offline []string) []TargetProblem {
	c := &targetCheck{inv: inv}
	removeOK := c.known("--remove", remove)
	drainOK := c.known("--drain", drain)
	c.known("--offline", offline)

	removing := map[string]bool{}
	for _, name := range removeOK {
		h, _ := inv.Host(name)
		if !h.Has(RoleMaster) && !h.Has(RoleEtcd) {
			c.add(TargetProblem{Code: "not-control-plane", Flag: "--remove", Host: name,
				Reason: name + " is a worker (neither a master nor an etcd host)",
				WayOut: "take a worker out with --drain " + name})
			continue
		}
		removing[name] = true
	}
	for _, name := range drainOK {
		h, _ := inv.Host(name)
		roles := controlPlaneRoles(h)
		switch {
		case roles != "" && removing[name]:
			c.add(TargetProblem{Code: "remove-and-drain", Flag: "--drain", Host: name,
				Reason: name + " is in --remove too",
				WayOut: "drop it from --drain: --remove drains a master that is also a node"})
		case roles != "":
			// A drain plans a worker's host cleanup, which would delete the PKI and units
			// a surviving master or etcd member runs on.
			c.add(TargetProblem{Code: "drain-control-plane", Flag: "--drain", Host: name,
				Reason: name + " is " + roles + " host, and --drain only takes workers out",
				WayOut: "retire it with --remove " + name + ", which drains it too when it is a node"})
		}
	}
	for _, name := range uniqueKnown(inv, offline) {
		if !slices.Contains(removeOK, name) && !slices.Contains(drainOK, name) {
			c.add(TargetProblem{Code: "offline-not-leaving", Flag: "--offline", Host: name,
				Reason: name + " is neither removed nor drained, and --offline only marks leaving hosts that are already down",
				WayOut: "add it to --remove or --drain, or drop it from --offline"})
		}
	}
	// Hosts that are both master and etcd make one mistake of it, said once.
	masters, etcds := allRemoved(inv, RoleMaster, removing), allRemoved(inv, RoleEtcd, removing)
	keep := TargetProblem{Flag: "--remove", WayOut: "keep one: remove fewer hosts"}
	switch {
	case masters != "" && masters == etcds:
		keep.Code, keep.Host, keep.Reason = "remove-all-control-plane", masters, "this removes every master and etcd host, and the cluster needs at least one of each"
		c.add(keep)
	default:
		if masters != "" {
			keep.Code, keep.Host, keep.Reason = "remove-all-masters", masters, "this removes every master, and the cluster needs at least one"
			c.add(keep)
		}
		if etcds != "" {
			keep.Code, keep.Host, keep.Reason = "remove-all-etcd", etcds, "this removes every etcd host, and the cluster needs at least one"
			c.add(keep)
		}
	}
	return c.probs
}

// allRemoved returns the names of the hosts with the role, comma-separated, when the target
// removes every one of them; empty when one stays or none has the role.
func allRemoved(inv *Inventory, r Role, removing map[string]bool) string {
	var names []string
	for _, h := range inv.HostsWithRole(r) {
		if !removing[h.Name] {
			return ""
		}
		names = append(names, h.Name)
	}
	return strings.Join(names, ",")
}

type targetCheck struct {
	inv   *Inventory
	probs []TargetProblem
	seen  map[string]bool
}

// add keeps one problem per code, flag and host: a name repeated in a list is one mistake.
func (c *targetCheck) add(p TargetProblem) {
	key := p.Code + "\x00" + p.Flag + "\x00" + p.Host
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	c.probs = append(c.probs, p)
}

// known reports the names in a list that are not hosts, and returns those that are, once
// each, in the order given.
func (c *targetCheck) known(flag string, names []string) []string {
	var ok []string
	for _, name := range names {
		if name == "" {
			c.add(TargetProblem{Code: "empty-host", Flag: flag, Host: `""`,
				Reason: "an empty host name (a stray comma?)",
				WayOut: "write the names separated by single commas, e.g. " + flag + " m2,m3"})
			continue
		}
		if _, found := c.inv.Host(name); found {
			if !slices.Contains(ok, name) {
				ok = append(ok, name)
			}
			continue
		}
		if h := c.inv.hostByAddress(name); h != nil {
			// Point at the flag the host belongs in, so the fix is not refused in turn.
			way := "use " + flag + " " + h.Name
			switch roles := controlPlaneRoles(h); {
			case flag == "--remove" && roles == "":
				way = h.Name + " is a worker: use --drain " + h.Name
			case flag == "--drain" && roles != "":
				way = h.Name + " is " + roles + " host: use --remove " + h.Name
			}
			c.add(TargetProblem{Code: "address-not-name", Flag: flag, Host: name,
				Reason: name + " is the address of " + h.Name + ", and hosts are named by their inventory name",
				WayOut: way})
			continue
		}
		way := "use a host name from the inventory: " + strings.Join(c.inv.HostNames(), ", ")
		if s := c.inv.closestName(name); s != "" {
			way = "did you mean " + s + "? The inventory's hosts are " + strings.Join(c.inv.HostNames(), ", ")
		}
		c.add(TargetProblem{Code: "unknown-host", Flag: flag, Host: name,
			Reason: fmt.Sprintf("no host %q in the inventory", name),
			WayOut: way})
	}
	return ok
}

// uniqueKnown returns the names that are hosts, once each, in the order given.
func uniqueKnown(inv *Inventory, names []string) []string {
	var out []string
	for _, n := range names {
		if _, ok := inv.Host(n); ok && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// controlPlaneRoles says "a master", "an etcd" or "a master and etcd", empty for a worker.
func controlPlaneRoles(h *Host) string {
	switch m, e := h.Has(RoleMaster), h.Has(RoleEtcd); {
	case m && e:
		return "a master and etcd"
	case m:
		return "a master"
	case e:
		return "an etcd"
	}
	return ""
}

// hostByAddress finds the host with that address, however it is written (2001:db8::1 and
// 2001:DB8:0::1 are one address).
func (inv *Inventory) hostByAddress(a string) *Host {
	if checkAddress(a) != nil {
		return nil
	}
	key := normalizeAddress(a)
	for i := range inv.Hosts {
		if normalizeAddress(inv.Hosts[i].Address) == key {
			return &inv.Hosts[i]
		}
	}
	return nil
}

// closestName suggests the host a typo most likely meant: the one host nearest to it, if
// near enough. When several are as near ("m9" for m1, m2 and m3) a guess would mislead.
func (inv *Inventory) closestName(name string) string {
	best, bestDist, ties := "", 3, 0
	for _, h := range inv.Hosts {
		switch d := editdist.Distance(name, h.Name); {
		case d < bestDist:
			best, bestDist, ties = h.Name, d, 0
		case d == bestDist:
			ties++
		}
	}
	if ties > 0 {
		return ""
	}
	return best
}
