package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/inventory"
)

func newInventoryCmd(subcommands ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Check an inventory, or show what it resolves to (connects to nothing)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError{fmt.Errorf("name a subcommand: mastershrink inventory validate|show -i inventory.yaml, or inventory import kubeasz PATH")}
		},
	}
	cmd.AddCommand(subcommands...)
	return cmd
}

type inventoryValidateOptions struct {
	*globalOptions
	Remove, Drain, Offline []string
}

func newInventoryValidateCmd(g *globalOptions, runF func(*inventoryValidateOptions) error) *cobra.Command {
	o := &inventoryValidateOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "validate [-i] INVENTORY [--remove HOST,... --drain HOST,... --offline HOST,...]",
		Short: "Check an inventory file, and optionally a target, without connecting to any host",
		Long: `validate loads an inventory as every command does: it checks every field, and that the
kubeconfig, SSH identity files and known_hosts files it names exist. With --remove, --drain or
--offline it also checks the target as plan would before observing: unknown hosts, addresses
given for names, a worker to remove or a master to drain, every master or etcd host removed.
It exits 0 when all is well, 4 when the inventory is wrong, 3 when the target is.`,
		Example: `  mastershrink inventory validate -i inventory.yaml
  mastershrink inventory validate inventory.yaml --remove m2,m3 --drain w4`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := inventoryArg(g, args); err != nil {
				return err
			}
			return runOrHook(cmd.Context(), o, runF, runInventoryValidate)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Remove, "remove", nil, "check this target too: masters (and etcd hosts) to retire")
	f.StringSliceVar(&o.Drain, "drain", nil, "check this target too: workers to drain")
	f.StringSliceVar(&o.Offline, "offline", nil, "check this target too: leaving hosts that are down")
	return cmd
}

// inventoryArg takes the inventory as -i or as the one argument, as the operator types it.
func inventoryArg(g *globalOptions, args []string) error {
	switch {
	case len(args) == 1 && g.Inventory != "" && args[0] != g.Inventory:
		return usageError{fmt.Errorf("two inventories (-i %s and %s): give one", g.Inventory, args[0])}
	case len(args) == 1:
		g.Inventory = args[0]
	case g.Inventory == "":
		return usageError{fmt.Errorf("no inventory: give the cluster file with -i inventory.yaml")}
	}
	return nil
}

// validate has nothing to check before the inventory is read: the target is checked
// against it.
func (o *inventoryValidateOptions) validate() error { return nil }

func runInventoryValidate(_ context.Context, o *inventoryValidateOptions) error {
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	o.Logger.Info("inventory loaded", "file", inv.File, "cluster", inv.Cluster, "layout", inv.Layout, "hosts", len(inv.Hosts))
	msg := fmt.Sprintf("inventory OK: %s, cluster %s, layout %s", inv.Summary(), inv.Cluster, inv.Layout)
	if len(o.Remove)+len(o.Drain)+len(o.Offline) > 0 {
		if probs := inventory.CheckTarget(inv, o.Remove, o.Drain, o.Offline); len(probs) > 0 {
			return refusedError{&inventory.TargetError{Problems: probs}}
		}
		msg += "; target OK (" + describeTarget(o.Remove, o.Drain, o.Offline) + ")"
	}
	_, err = fmt.Fprintln(o.Out, msg)
	return err
}

func describeTarget(remove, drain, offline []string) string {
	var parts []string
	for _, p := range []struct {
		flag  string
		names []string
	}{{"--remove", remove}, {"--drain", drain}, {"--offline", offline}} {
		if len(p.names) > 0 {
			parts = append(parts, p.flag+" "+strings.Join(p.names, ","))
		}
	}
	return strings.Join(parts, " ")
}

type inventoryShowOptions struct {
	*globalOptions
	Output string
}

func newInventoryShowCmd(g *globalOptions, runF func(*inventoryShowOptions) error) *cobra.Command {
	o := &inventoryShowOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "show [-i] INVENTORY [-o table|json|yaml]",
		Short: "Show what an inventory resolves to: each host's SSH settings, units, paths and ports",
		Long: `show prints every host's effective settings after the layout preset, the cluster-wide values
and the host's own overrides, with local paths made absolute. The table lists each setting
once per value, with the hosts that have it ("all" when every host does), so overrides stand
out. -o yaml is itself an inventory with everything written out; -o json has the same keys.
It connects to nothing.`,
		Example: `  mastershrink inventory show -i inventory.yaml
  mastershrink inventory show inventory.yaml -o yaml > resolved.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := inventoryArg(g, args); err != nil {
				return err
			}
			return runOrHook(cmd.Context(), o, runF, runInventoryShow)
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "table, json or yaml")
	return cmd
}

func (o *inventoryShowOptions) validate() error {
	if o.Output != "table" && o.Output != "json" && o.Output != "yaml" {
		return usageError{fmt.Errorf("-o %q: want table, json or yaml", o.Output)}
	}
	return nil
}

func runInventoryShow(_ context.Context, o *inventoryShowOptions) error {
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	var data []byte
	switch o.Output {
	case "json":
		data, err = inv.ResolvedJSON()
	case "yaml":
		data, err = inv.ResolvedYAML()
	default:
		return renderInventory(o.Out, inv)
	}
	if err != nil {
		return err
	}
	_, err = o.Out.Write(data)
	return err
}

// renderInventory prints the hosts, then every setting with the hosts that have it.
func renderInventory(w io.Writer, inv *inventory.Inventory) error {
	fmt.Fprintf(w, "Cluster %s, layout %s: %s\n", inv.Cluster, inv.Layout, inv.Summary())
	fmt.Fprintf(w, "Inventory:  %s\nKubeconfig: %s\n\n", inv.File, inv.Kubeconfig)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tROLES\tLINE")
	for _, h := range inv.Hosts {
		roles := make([]string, len(h.Roles))
		for i, r := range h.Roles {
			roles[i] = string(r)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", h.Name, h.Address, strings.Join(roles, ","), h.Line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tVALUE\tHOSTS")
	for _, s := range inv.Settings() {
		hosts := "all"
		if s.Hosts != nil {
			hosts = strings.Join(s.Hosts, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Value, hosts)
	}
	return tw.Flush()
}
