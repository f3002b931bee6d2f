package nodefacts

import "slices"

// OfHost reports whether this is the Node of an inventory host: it carries the host's name, or
// the host's address among its own. Every place that goes from a host to its Node asks this,
// so the planner, the observation and the commands agree on which Node a host has.
func (n Node) OfHost(name, address string) bool {
	return n.Name == name || (address != "" && slices.Contains(n.Addresses, address))
}
