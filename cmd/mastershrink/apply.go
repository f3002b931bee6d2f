package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/runner"
)

type applyOptions struct {
	*globalOptions
	PlanPath   string
	Only, Skip []string
	Yes        bool
	// SnapshotMaxAge bounds the age of the snapshot that gates the irreversible steps.
	SnapshotMaxAge time.Duration
	LBConcurrency  int
	// Planning on the spot, without a plan file.
	targetOptions
	PlanOut string
}

func newApplyCmd(g *globalOptions, runF func(*applyOptions) error) *cobra.Command {
	o := &applyOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "apply [PLAN] -i INVENTORY [--only STEP,...] [--skip STEP,...] [--yes]",
		Short: "Apply a reviewed plan (or plan, confirm and apply), resumable after a crash",
		Long: `apply runs the steps of a plan file written by 'mastershrink plan --out', in order. It takes a
cluster-wide lock in etcd, refuses a plan the cluster no longer matches, a plan made by
another version or edited since, skips every step whose result is already in place (so a
rerun after a crash continues where it stopped), and keeps a journal (PLAN.journal.jsonl) and
an audit log of every change (PLAN.audit.jsonl) next to the plan.

Without a plan file, apply observes the cluster, shows the plan for --remove/--drain and asks
for confirmation (--yes when not on a terminal); the plan is written to --out first so that a
rerun can resume it.`,
		Example: `  mastershrink apply plan.json -i inventory.yaml
  mastershrink apply plan.json -i inventory.yaml --only preflight,etcd/snapshot
  mastershrink apply plan.json -i inventory.yaml --skip nodes/cleanup
  mastershrink apply -i inventory.yaml --remove m2,m3 --yes`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.PlanPath = args[0]
			}
			return runOrHook(cmd.Context(), o, runF, runApply)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Only, "only", nil, "run only these steps (IDs or ID prefixes such as etcd/remove-member); preflight always runs")
	f.StringSliceVar(&o.Skip, "skip", nil, "leave out these steps (IDs or ID prefixes)")
	f.BoolVarP(&o.Yes, "yes", "y", false, "apply a plan made on the spot without asking")
	f.DurationVar(&o.SnapshotMaxAge, "snapshot-max-age", runner.DefaultSnapshotMaxAge, "a snapshot of this plan older than this is taken again before any irreversible step")
	f.IntVar(&o.LBConcurrency, "lb-concurrency", runner.DefaultLBConcurrency, "how many node proxies are updated (and probed) at once")
	addTargetFlags(f, &o.targetOptions, "without a plan file: ")
	f.StringVar(&o.PlanOut, "out", "", "without a plan file: where to write the plan (default CLUSTER-plan.json)")
	completeHostFlags(cmd, g, "remove", "drain", "offline")
	completeStepFlags(cmd)
	return cmd
}

func (o *applyOptions) validate() error {
	if o.Inventory == "" {
		return errNoInventory
	}
	if o.PlanPath != "" && (len(o.Remove) > 0 || len(o.Drain) > 0 || len(o.Offline) > 0 || o.WipeLeaving != "") {
		return usageError{fmt.Errorf("a plan file already says what to remove: drop --remove/--drain/--offline/--wipe-leaving, or the plan file")}
	}
	if o.PlanPath == "" && len(o.Remove) == 0 && len(o.Drain) == 0 {
		return usageError{fmt.Errorf("nothing to apply: give a plan file (mastershrink plan --out plan.json), or --remove/--drain")}
	}
	if err := o.validateModes(); err != nil {
		return err
	}
	if o.LBConcurrency < 1 {
		return usageError{fmt.Errorf("--lb-concurrency %d: want 1 or more", o.LBConcurrency)}
	}
	if o.SnapshotMaxAge <= 0 {
		return usageError{fmt.Errorf("--snapshot-max-age %s: want a positive duration such as %s", o.SnapshotMaxAge, runner.DefaultSnapshotMaxAge)}
	}
	return nil
}

// otherClusterError refuses a plan made for another cluster than the inventory's.
func otherClusterError(planCluster string, inv *inventory.Inventory) error {
	return refusedError{fmt.Errorf("the plan is for cluster %q, the inventory describes %q: give the inventory of cluster %q with -i, or a plan made with %s",
		planCluster, inv.Cluster, planCluster, inv.File)}
}

// loadPlanFile reads a plan file for apply and undo; a path that is no file, or a file that
// is no plan, is named with the way out.
func loadPlanFile(path string) (*plan.Plan, error) {
	const fix = "give the file 'mastershrink plan --out FILE' wrote, or make the plan again"
	if st, err := os.Stat(path); err != nil {
		return nil, usageError{fmt.Errorf("plan file %s: %w; %s", path, err, fix)}
	} else if st.IsDir() {
		return nil, usageError{fmt.Errorf("plan file %s is a folder; %s", path, fix)}
	}
	p, err := runner.LoadPlan(path, version.String())
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if err != nil && (errors.As(err, &syntax) || errors.As(err, &typ)) {
		return nil, refusedError{fmt.Errorf("%w; %s", err, fix)}
	}
	return p, err
}

func runApply(ctx context.Context, o *applyOptions) error {
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	var p *plan.Plan
	if o.PlanPath != "" {
		if p, err = loadPlanFile(o.PlanPath); err != nil {
			return err
		}
		if p.Cluster != inv.Cluster {
			return otherClusterError(p.Cluster, inv)
		}
	} else if p, err = o.planOnTheSpot(ctx, inv); err != nil {
		return err
	}
	// --only/--skip are checked before the cluster is touched.
	if _, err := runner.Select(p, o.Only, o.Skip); err != nil {
		return usageError{err}
	}
	c := observe.Open(inv, o.observeOptions())
	defer c.Close()
	if err := o.checkKube(c); err != nil {
		return err
	}
	fmt.Fprintf(o.ErrOut, "Applying %s to cluster %q: %d steps.\n", o.PlanPath, p.Cluster, len(p.Steps))
	sum, err := runner.Run(ctx, runner.Options{
		PlanPath: o.PlanPath, Plan: p, Cluster: c, Only: o.Only, Skip: o.Skip,
		Progress: o.ErrOut, Terminal: o.Color, Verbose: o.Verbose, ToolVersion: version.String(), SnapshotMaxAge: o.SnapshotMaxAge, LBConcurrency: o.LBConcurrency,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Applied: %d steps done, %d already done, %d skipped in %s.\n",
		sum.Count(runner.StatusDone), sum.Count(runner.StatusAlready), sum.Count(runner.StatusSkipped), sum.Duration.Round(time.Second))
	return nil
}

// planOnTheSpot observes, plans, shows the plan, writes it next to where the journal will be,
// and asks before going on.
func (o *applyOptions) planOnTheSpot(ctx context.Context, inv *inventory.Inventory) (*plan.Plan, error) {
	if !o.Yes && !o.InIsTerminal {
		return nil, usageError{fmt.Errorf("not on a terminal, so there is no one to confirm: review the plan with 'mastershrink plan --out plan.json' and run 'mastershrink apply plan.json', or add --yes")}
	}
	p, err := makePlan(ctx, o.globalOptions, inv, o.target())
	if err != nil {
		return nil, err
	}
	if err := plan.Render(o.Out, p); err != nil {
		return nil, err
	}
	if len(p.Refusals) > 0 {
		return nil, refusedError{fmt.Errorf("plan refused: %s", p.Refusals[0].Reason)}
	}
	data, err := plan.Encode(p)
	if err != nil {
		return nil, err
	}
	// Decode again so the plan applied is byte for byte the one on disk, checksum included.
	if p, err = plan.Decode(data, version.String()); err != nil {
		return nil, err
	}
	o.PlanPath = o.PlanOut
	if o.PlanPath == "" {
		o.PlanPath = filepath.Clean(inv.Cluster + "-plan.json")
	}
	if err := writePlanFile(ctx, o.PlanPath, data); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.ErrOut, "Plan written to %s (a rerun of 'mastershrink apply %s -i %s' resumes it).\n", o.PlanPath, o.PlanPath, o.Inventory)
	if o.Yes {
		return p, nil
	}
	fmt.Fprintf(o.ErrOut, "Apply this plan to cluster %q? Type yes to go on: ", p.Cluster)
	line, _ := bufio.NewReader(o.In).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return nil, refusedError{fmt.Errorf("not confirmed: nothing was changed")}
	}
	return p, nil
}
