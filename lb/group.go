package lb

import (
	"sort"
	"strings"

	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/internal/diff"
)

// DiffGroup is a set of nodes whose LB change is the same diff.
type DiffGroup struct {
	Hosts []string `json:"hosts"`
	Diff  string   `json:"diff"`
}

// GroupDiffs renders each node's changes (node to its file changes) as one unified diff and
// groups the nodes that share it: the largest group first, then by first host name. Nodes
// with no change form a group with an empty Diff.
func GroupDiffs(changes map[string][]machine.FileChange) []DiffGroup {
	byDiff := map[string][]string{}
	for node, cs := range changes {
		cs = append([]machine.FileChange(nil), cs...)
		sort.Slice(cs, func(i, j int) bool { return cs[i].Path < cs[j].Path })
		var b strings.Builder
		for _, c := range cs {
			b.WriteString(diff.Unified(c.Path, c.Path, c.Before, c.After))
		}
		byDiff[b.String()] = append(byDiff[b.String()], node)
	}
	out := make([]DiffGroup, 0, len(byDiff))
	for d, hosts := range byDiff {
		sort.Strings(hosts)
		out = append(out, DiffGroup{Hosts: hosts, Diff: d})
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].Hosts) != len(out[j].Hosts) {
			return len(out[i].Hosts) > len(out[j].Hosts)
		}
		return out[i].Hosts[0] < out[j].Hosts[0]
	})
	return out
}
