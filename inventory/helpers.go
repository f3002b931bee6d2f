package inventory

import (
	"fmt"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// Host returns the host of that name.
func (inv *Inventory) Host(name string) (*Host, bool) {
	for i := range inv.Hosts {
		if inv.Hosts[i].Name == name {
			return &inv.Hosts[i], true
		}
	}
	return nil, false
}

// HostsWithRole returns the hosts that have the role, in file order.
func (inv *Inventory) HostsWithRole(r Role) []*Host {
	var out []*Host
	for i := range inv.Hosts {
		if inv.Hosts[i].Has(r) {
			out = append(out, &inv.Hosts[i])
		}
	}
	return out
}

// HostNames returns every host's name, in file order.
func (inv *Inventory) HostNames() []string {
	out := make([]string, len(inv.Hosts))
	for i, h := range inv.Hosts {
		out[i] = h.Name
	}
	return out
}

// Has says whether the host has the role.
func (h Host) Has(r Role) bool {
	return slices.Contains(h.Roles, r)
}

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as "10s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration written as "10s" or "1m30s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 10s: %w", n.Line, err)
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (want e.g. 10s or 1m30s)", n.Line, s)
	}
	*d = Duration(t)
	return nil
}
