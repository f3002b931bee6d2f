package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/plan"
)

type planOptions struct {
	*globalOptions
	Remove, Drain, Offline []string
	LBMode                 string
	WipeLeaving            string
	Out                    string
	Output                 string
	DetailedExitCode       bool
}

func newPlanCmd(g *globalOptions) *cobra.Command {
	o := &planOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "plan -i INVENTORY --remove HOST[,HOST...] [--drain HOST,...] [--offline HOST,...]",
		Short: "Observe the cluster and write a reviewable shrink plan (changes nothing)",
		Example: `  mastershrink plan -i inventory.yaml --remove m2,m3 --out plan.json
  mastershrink plan -i inventory.yaml --remove m3 --offline m3 -o json
  mastershrink plan -i inventory.yaml --drain w2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runPlan(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Remove, "remove", nil, "masters (and their etcd members) to retire")
	f.StringSliceVar(&o.Drain, "drain", nil, "workers to drain, delete and clean")
	f.StringSliceVar(&o.Offline, "offline", nil, "leaving hosts that are already down (their host-side steps are skipped)")
	f.StringVar(&o.LBMode, "lb-mode", "down", "how leaving apiservers leave the node proxies: down (mark) or remove")
	f.StringVar(&o.WipeLeaving, "wipe-leaving", "", "after the shrink, remove the private keys leaving hosts keep and move etcd's data aside into a 0700 folder (move) or remove it (remove)")
	f.StringVar(&o.Out, "out", "", "write the plan file here (for mastershrink apply)")
	f.StringVarP(&o.Output, "output", "o", "table", "how to print the plan: table, json or yaml (the plan file's content)")
	f.BoolVar(&o.DetailedExitCode, "detailed-exitcode", false, "exit 2 when the plan has changes, 0 when there is nothing to do")
	completeOutput(cmd, "table", "json", "yaml")
	completeHostFlags(cmd, g, "remove", "drain", "offline")
	return cmd
}

func (o *planOptions) validate() error {
	if o.Inventory == "" {
		return usageError{fmt.Errorf("no inventory: give the cluster file with -i inventory.yaml")}
	}
	if len(o.Remove) == 0 && len(o.Drain) == 0 {
		return usageError{fmt.Errorf("nothing to plan: name masters with --remove or workers with --drain")}
	}
	if err := validOutput(o.Output, "table", "json", "yaml"); err != nil {
		return err
	}
	if o.WipeLeaving != "" && o.WipeLeaving != "move" && o.WipeLeaving != "remove" {
		return usageError{fmt.Errorf("--wipe-leaving %q: want move or remove", o.WipeLeaving)}
	}
	if o.LBMode != "down" && o.LBMode != "remove" {
		return usageError{fmt.Errorf("--lb-mode %q: want down or remove", o.LBMode)}
	}
	return nil
}

func runPlan(ctx context.Context, o *planOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	target := plan.Target{Remove: o.Remove, Drain: o.Drain, Offline: o.Offline, LBMode: o.LBMode, WipeLeaving: o.WipeLeaving}
	p, err := makePlan(ctx, o.globalOptions, inv, target)
	if err != nil {
		return err
	}
	if err := printPlan(o.globalOptions, p, o.Output); err != nil {
		return err
	}
	if len(p.Refusals) > 0 {
		return refusedError{fmt.Errorf("plan refused: %s", p.Refusals[0].Reason)}
	}
	if o.Out != "" {
		data, err := plan.Encode(p)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(o.Out, data, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(o.ErrOut, "Plan written to %s. Review it, then run: mastershrink apply %s -i %s\n", o.Out, o.Out, o.Inventory)
	}
	if o.DetailedExitCode && len(p.Steps) > 0 {
		return errChanges
	}
	return nil
}

// makePlan observes the cluster and builds the plan, printing progress on stderr. A target
// the inventory alone shows to be wrong is refused first, with every problem, before any
// host is contacted: an unreachable cluster must not hide the operator's mistake behind an
// SSH error.
func makePlan(ctx context.Context, g *globalOptions, inv *inventory.Inventory, target plan.Target) (*plan.Plan, error) {
	g.Logger.Info("inventory loaded", "file", inv.File, "cluster", inv.Cluster, "layout", inv.Layout, "hosts", len(inv.Hosts))
	if probs := inventory.CheckTarget(inv, target.Remove, target.Drain, target.Offline); len(probs) > 0 {
		return nil, refusedError{&inventory.TargetError{Problems: probs}}
	}
	g.Logger.Info("target checked against the inventory", "remove", target.Remove, "drain", target.Drain, "offline", target.Offline)
	start := time.Now()
	fmt.Fprintf(g.ErrOut, "Observing cluster %q: %d hosts...\n", inv.Cluster, len(inv.Hosts))
	c := observe.Open(inv, g.observeOptions())
	defer c.Close()
	if err := g.checkKube(c); err != nil {
		return nil, err
	}
	facts, err := observe.Gather(ctx, c, target)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(g.ErrOut, "Observed in %s.\n", time.Since(start).Round(100*time.Millisecond))
	return plan.Build(facts, target, version.String(), time.Now()), nil
}

func printPlan(g *globalOptions, p *plan.Plan, output string) error {
	if output == "json" || output == "yaml" {
		// With its checksum, as the plan file has it: `plan -o json > plan.json` is a plan
		// apply reads.
		q := *p
		sum, err := plan.Checksum(&q)
		if err != nil {
			return err
		}
		q.Checksum = sum
		return writeData(g.Out, &q, output)
	}
	return plan.Render(g.Out, p)
}

// writeFileAtomic writes a local file through a temp file and a rename, so a crash never
// leaves half a plan or journal.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(dirOf(path), ".mastershrink-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return "."
}
