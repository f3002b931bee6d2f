package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/plan"
)

type planOptions struct {
	*globalOptions
	targetOptions
	Out              string
	Output           string
	DetailedExitCode bool
}

// targetOptions are the operator's target, as plan takes it, and apply without a plan file.
type targetOptions struct {
	Remove, Drain, Offline []string
	LBMode                 string
	WipeLeaving            string
}

// addTargetFlags adds the target's flags; apply's help says they are for planning on the spot.
func addTargetFlags(f *pflag.FlagSet, t *targetOptions, helpPrefix string) {
	f.StringSliceVar(&t.Remove, "remove", nil, helpPrefix+"masters (and their etcd members) to retire")
	f.StringSliceVar(&t.Drain, "drain", nil, helpPrefix+"workers to drain, delete and clean")
	f.StringSliceVar(&t.Offline, "offline", nil, helpPrefix+"leaving hosts that are already down (their host-side steps are skipped)")
	f.StringVar(&t.LBMode, "lb-mode", "down", helpPrefix+"how leaving apiservers leave the node proxies: down (mark) or remove")
	f.StringVar(&t.WipeLeaving, "wipe-leaving", "", helpPrefix+"after the shrink, remove the private keys leaving hosts keep and move etcd's data aside into a 0700 folder (move) or remove it (remove)")
}

func (t *targetOptions) target() plan.Target {
	return plan.Target{Remove: t.Remove, Drain: t.Drain, Offline: t.Offline, LBMode: t.LBMode, WipeLeaving: t.WipeLeaving}
}

// validateModes checks the target's words: what a leaving apiserver becomes in the proxies,
// and what happens to a leaving host's secrets.
func (t *targetOptions) validateModes() error {
	if t.WipeLeaving != "" && t.WipeLeaving != "move" && t.WipeLeaving != "remove" {
		return usageError{fmt.Errorf("--wipe-leaving %q: want move or remove", t.WipeLeaving)}
	}
	if t.LBMode != "down" && t.LBMode != "remove" {
		return usageError{fmt.Errorf("--lb-mode %q: want down or remove", t.LBMode)}
	}
	return nil
}

// errNoInventory is every command's refusal to guess the cluster.
var errNoInventory = usageError{errors.New("no inventory: give the cluster file with -i inventory.yaml")}

func newPlanCmd(g *globalOptions, runF func(*planOptions) error) *cobra.Command {
	o := &planOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "plan -i INVENTORY --remove HOST[,HOST...] [--drain HOST,...] [--offline HOST,...]",
		Short: "Observe the cluster and write a reviewable shrink plan (changes nothing)",
		Example: `  mastershrink plan -i inventory.yaml --remove m2,m3 --out plan.json
  mastershrink plan -i inventory.yaml --remove m3 --offline m3 -o json
  mastershrink plan -i inventory.yaml --drain w2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runOrHook(cmd.Context(), o, runF, runPlan) },
	}
	f := cmd.Flags()
	addTargetFlags(f, &o.targetOptions, "")
	f.StringVar(&o.Out, "out", "", "write the plan file here (for mastershrink apply)")
	f.StringVarP(&o.Output, "output", "o", "table", "how to print the plan: table, json or yaml (the plan file's content)")
	f.BoolVar(&o.DetailedExitCode, "detailed-exitcode", false, "exit 2 when the plan has changes, 0 when there is nothing to do")
	completeOutput(cmd, "table", "json", "yaml")
	completeHostFlags(cmd, g, "remove", "drain", "offline")
	return cmd
}

func (o *planOptions) validate() error {
	if o.Inventory == "" {
		return errNoInventory
	}
	if len(o.Remove) == 0 && len(o.Drain) == 0 {
		return usageError{fmt.Errorf("nothing to plan: name masters with --remove or workers with --drain")}
	}
	if err := validOutput(o.Output, "table", "json", "yaml"); err != nil {
		return err
	}
	return o.validateModes()
}

func runPlan(ctx context.Context, o *planOptions) error {
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	p, err := makePlan(ctx, o.globalOptions, inv, o.target())
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
		if err := writePlanFile(ctx, o.Out, data); err != nil {
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

// writePlanFile writes the plan file 0600 through host's atomic writer (temp file, fsync,
// rename), so a crash never leaves half a plan.
func writePlanFile(ctx context.Context, path string, data []byte) error {
	_, err := host.NewLocal("localhost").WriteFile(ctx, path, data, host.WriteOptions{Mode: 0o600})
	return err
}
