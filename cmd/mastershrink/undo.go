package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/runner"
)

type undoOptions struct {
	*globalOptions
	PlanPath string
	Yes      bool
	DryRun   bool
}

func newUndoCmd(g *globalOptions, runF func(*undoOptions) error) *cobra.Command {
	o := &undoOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "undo PLAN -i INVENTORY [--dry-run] [--yes]",
		Short: "Put back what the reversible steps of an applied plan changed, from their backups",
		Long: `undo reads the journal and audit log that apply kept next to PLAN and undoes the steps that
ran, in reverse order: retired masters' components are enabled and started again, each
proxy config is restored from its backup (nginx -t, reload), each apiserver unit is restored
(daemon-reload, restart, wait for /readyz). A file is restored only while it still holds what
apply wrote, and only from a backup that holds what apply replaced.

It refuses (exit 3), changing nothing, once any step past the plan's point of no return has
started: etcd members removed come back only from the snapshot, which it names.`,
		Example: `  mastershrink undo plan.json -i inventory.yaml --dry-run
  mastershrink undo plan.json -i inventory.yaml`,
		Args: cobra.ExactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"json"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.PlanPath = args[0]
			return runOrHook(cmd.Context(), o, runF, runUndo)
		},
	}
	cmd.Flags().BoolVarP(&o.Yes, "yes", "y", false, "undo without asking")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print what undo would do and change nothing")
	return cmd
}

func (o *undoOptions) validate() error {
	if o.Inventory == "" {
		return errNoInventory
	}
	if !o.Yes && !o.DryRun && !o.InIsTerminal {
		return usageError{fmt.Errorf("not on a terminal, so there is no one to confirm: look with --dry-run, then add --yes")}
	}
	return nil
}

func runUndo(ctx context.Context, o *undoOptions) error {
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	p, err := loadPlanFile(o.PlanPath)
	if err != nil {
		return err
	}
	if p.Cluster != inv.Cluster {
		return otherClusterError(p.Cluster, inv)
	}
	journal, audit, _ := runner.RecordPaths(o.PlanPath)
	rec, err := runner.ReadRecords(journal, audit, p.Checksum)
	if err != nil {
		return err
	}
	u, err := runner.PlanUndo(p, rec, o.PlanPath, o.Inventory)
	if err != nil {
		return err
	}
	printUndo(o.Out, u, journal)
	if len(u.Actions) == 0 || o.DryRun {
		return nil
	}
	if !o.Yes {
		fmt.Fprintf(o.ErrOut, "Undo these steps on cluster %q? Type yes to go on: ", p.Cluster)
		line, _ := bufio.NewReader(o.In).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return refusedError{fmt.Errorf("not confirmed: nothing was changed")}
		}
	}

	c := observe.Open(inv, o.observeOptions())
	defer c.Close()
	if err := o.checkKube(c); err != nil {
		return err
	}
	// The apply lock, so an apply of the same cluster cannot run while its work is undone.
	kv, err := c.EtcdKV(ctx)
	if err != nil {
		return fmt.Errorf("connect to etcd for the lock: %w", err)
	}
	defer kv.Close()
	lock, err := runner.AcquireLock(ctx, kv, p.Checksum, runner.DefaultLockTTL, o.ErrOut)
	if err != nil {
		return err
	}
	defer lock.Release(context.WithoutCancel(ctx))

	env := runner.UndoEnv{
		Inv:      inv,
		Host:     func(ctx context.Context, name string) (host.Host, error) { return c.Host(ctx, name) },
		Ready:    func(ctx context.Context, name string) error { return apiserverReady(ctx, c, inv, name) },
		Fence:    lock.Verify,
		Progress: o.ErrOut,
	}
	if err := u.Check(ctx, env); err != nil {
		return err
	}
	start := time.Now()
	if err := u.Run(ctx, env); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Undone: %d steps in %s. Plan again before the next shrink: this plan's journal records its apply.\n",
		len(u.Actions), time.Since(start).Round(time.Second))
	return nil
}

func printUndo(w io.Writer, u runner.UndoPlan, journal string) {
	if len(u.Actions) == 0 {
		fmt.Fprintf(w, "Nothing to undo: %s records no step that changed the cluster.\n", journal)
	} else {
		fmt.Fprintf(w, "Undo, from %s, in this order:\n", journal)
	}
	for i, a := range u.Actions {
		fmt.Fprintf(w, "%3d  %-26s %-4s %s\n", i+1, a.Step, a.Host, a.Describe())
		for _, f := range a.Files {
			fmt.Fprintf(w, "       %s <- %s\n", f.Path, f.Backup)
		}
	}
	for _, n := range u.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// apiserverReady asks one master's apiserver for /readyz with the admin credentials.
func apiserverReady(ctx context.Context, c *observe.Cluster, inv *inventory.Inventory, name string) error {
	ih, ok := inv.Host(name)
	if !ok {
		return fmt.Errorf("host %s is not in the inventory", name)
	}
	if err := c.APIServerReady(ctx, ih.Address, ih.Paths.APIServerPort); err != nil {
		return fmt.Errorf("%s /readyz: %w", net.JoinHostPort(ih.Address, strconv.Itoa(ih.Paths.APIServerPort)), err)
	}
	return nil
}
