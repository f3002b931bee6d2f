package main

import (
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

// Shell completion reads only local files: the inventory given with -i and the plan file
// argument. Nothing connects while a shell completes.

// inventoryHosts returns the host names of the inventory file, in file order. An
// inventory that does not load in full (a referenced file missing, a field still being
// written) still offers the names it lists.
func inventoryHosts(file string) []string {
	if file == "" {
		return nil
	}
	if inv, err := inventory.Load(file); err == nil {
		return inv.HostNames()
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var doc struct {
		Hosts []struct {
			Name string `json:"name"`
		} `json:"hosts"`
	}
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	var out []string
	for _, h := range doc.Hosts {
		if h.Name != "" {
			out = append(out, h.Name)
		}
	}
	return out
}

// completeList offers candidates for a comma-separated list flag (--remove m1,m2): the
// values already typed before the last comma are kept as a prefix and not offered again.
func completeList(candidates []string, toComplete string) []string {
	done, last := "", toComplete
	if i := strings.LastIndex(toComplete, ","); i >= 0 {
		done, last = toComplete[:i+1], toComplete[i+1:]
	}
	typed := strings.Split(strings.TrimSuffix(done, ","), ",")
	var out []string
	for _, c := range candidates {
		if strings.HasPrefix(c, last) && !slices.Contains(typed, c) {
			out = append(out, done+c)
		}
	}
	return out
}

// completeHostFlags makes the named list flags complete the inventory's hosts.
func completeHostFlags(cmd *cobra.Command, g *globalOptions, flags ...string) {
	for _, name := range flags {
		_ = cmd.RegisterFlagCompletionFunc(name, func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return completeList(inventoryHosts(g.Inventory), toComplete), cobra.ShellCompDirectiveNoFileComp
		})
	}
}

// completeHostArgs makes a command's arguments complete the inventory's hosts not yet
// named on the line.
func completeHostArgs(g *globalOptions) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, h := range inventoryHosts(g.Inventory) {
			if strings.HasPrefix(h, toComplete) && !slices.Contains(args, h) {
				out = append(out, h)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// planStepIDs returns the step IDs of a plan file and every ID prefix ("etcd",
// "etcd/remove-member") that --only and --skip accept, prefixes first in step order.
func planStepIDs(file string) []string {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	p, err := plan.Decode(data, "")
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range p.Steps {
		parts := strings.Split(s.ID, "/")
		for i := 1; i <= len(parts); i++ {
			id := strings.Join(parts[:i], "/")
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// completeStepFlags makes apply's --only and --skip complete the step IDs of the plan file
// given as the argument.
func completeStepFlags(cmd *cobra.Command) {
	for _, name := range []string{"only", "skip"} {
		_ = cmd.RegisterFlagCompletionFunc(name, func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeList(planStepIDs(args[0]), toComplete), cobra.ShellCompDirectiveNoFileComp
		})
	}
}
