package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/observe"
)

type nodesDrainOptions struct {
	*globalOptions
	Nodes                  []string
	Timeout, GlobalTimeout time.Duration
	// GracePeriod is kubectl's --grace-period: -1 each pod's own, 0 "as fast as possible".
	GracePeriod          int64
	DeleteEmptyDirData   bool
	Force                bool
	IgnoreDaemonSets     bool
	AllowSingleReplica   bool
	PDBMaxUnavailable    string
	DeletePodsOfDownNode bool
	DeleteNode           bool
	Output               string
}

func newNodesDrainCmd(g *globalOptions, runF func(*nodesDrainOptions) error) *cobra.Command {
	o := &nodesDrainOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "drain NODE... -i INVENTORY",
		Short: "Cordon Nodes and evict their pods through the Eviction API, honouring PDBs",
		Long: `drain cordons the Nodes, then evicts their pods through the Eviction API, never around a
PodDisruptionBudget. Multi-replica ReplicaSets and StatefulSets without a PDB get a temporary
one (maxUnavailable --pdb-max-unavailable) for the time of the drain, removed afterwards even
on failure. Nothing is evicted, and the cordon is undone, when a pod needs a consent that was
not given (exit 3): a controller's only replica (--allow-single-replica), a pod without a
controller (--force), emptyDir data (--delete-emptydir-data), the pods of a Node that is down
(--delete-pods-of-down-node), or when the remaining Nodes lack room.

NODE is a Node name, or an inventory host whose name or address a Node carries.

--grace-period works as in kubectl drain: -1 (default) gives each pod its own
terminationGracePeriodSeconds, N > 0 gives N seconds. 0 gives 1 second, the shortest graceful
stop: an eviction never kills a pod on a live Node without one (only the pods of a Node
confirmed down are deleted with grace 0, with --delete-pods-of-down-node).

Progress goes to stderr, a line per pod; the summary to stdout. Evictions still held back by a
PDB when --timeout (per Node) or --global-timeout runs out exit 1, naming the PDB.`,
		Example: `  mastershrink nodes drain w2 -i inventory.yaml --force --delete-emptydir-data
  mastershrink nodes drain w2 w3 -i inventory.yaml --timeout 10m --pdb-max-unavailable 1 -o json
  mastershrink nodes drain w4 -i inventory.yaml --delete-pods-of-down-node --delete-node`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Nodes = args
			return runOrHook(cmd.Context(), o, runF, runNodesDrain)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up on a Node whose pods are not all gone after this long (0: no limit)")
	f.DurationVar(&o.GlobalTimeout, "global-timeout", 30*time.Minute, "give up on the whole drain after this long (0: no limit)")
	f.Int64Var(&o.GracePeriod, "grace-period", -1, "seconds each pod gets to stop; -1: the pod's own, 0: 1 second")
	f.BoolVar(&o.DeleteEmptyDirData, "delete-emptydir-data", false, "evict pods using emptyDir volumes (their local data is lost)")
	f.BoolVar(&o.Force, "force", false, "evict pods without a controller (they are gone for good)")
	f.BoolVar(&o.IgnoreDaemonSets, "ignore-daemonsets", true, "leave DaemonSet pods in place (false: refuse to drain a Node running them)")
	f.BoolVar(&o.AllowSingleReplica, "allow-single-replica", false, "evict the only pod of a controller (downtime until it is rescheduled)")
	f.StringVar(&o.PDBMaxUnavailable, "pdb-max-unavailable", "25%", "maxUnavailable of the temporary PDBs (a number or a percentage)")
	f.BoolVar(&o.DeletePodsOfDownNode, "delete-pods-of-down-node", false, "on a Node confirmed down (NotReady, lease expired) delete its pods with grace 0 so controllers recreate them")
	f.BoolVar(&o.DeleteNode, "delete-node", false, "delete the Node objects once drained")
	f.StringVarP(&o.Output, "output", "o", "table", "how to print the summary: table or json")
	cmd.ValidArgsFunction = completeHostArgs(g)
	return cmd
}

// drainGracePeriod maps kubectl's --grace-period to nodes.DrainOptions.GracePeriodSeconds,
// where 0 must not be the harsh choice: kubectl's 0 ("as fast as possible") becomes 1 second.
func drainGracePeriod(kubectl int64) (int64, error) {
	switch {
	case kubectl < -1:
		return 0, fmt.Errorf("--grace-period %d: want -1 (each pod's own), 0 or a number of seconds", kubectl)
	case kubectl == 0:
		return 1, nil
	}
	return kubectl, nil
}

// checkMaxUnavailable accepts what a PDB's maxUnavailable accepts, minus 0: a temporary PDB
// allowing no disruption would block the very drain it guards.
func checkMaxUnavailable(s string) error {
	bad := fmt.Errorf("--pdb-max-unavailable %q: want a number of pods (1) or a percentage (25%%) above 0", s)
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || (pct && n > 100) {
		return bad
	}
	return nil
}

func (o *nodesDrainOptions) validate() error {
	if o.Inventory == "" {
		return errNoInventory
	}
	if o.Output != "table" && o.Output != "json" {
		return usageError{fmt.Errorf("-o %q: want table or json", o.Output)}
	}
	if o.Timeout < 0 || o.GlobalTimeout < 0 {
		return usageError{fmt.Errorf("--timeout and --global-timeout: want a duration of 0 (no limit) or more")}
	}
	if _, err := drainGracePeriod(o.GracePeriod); err != nil {
		return usageError{err}
	}
	if err := checkMaxUnavailable(o.PDBMaxUnavailable); err != nil {
		return usageError{err}
	}
	return nil
}

func (o *nodesDrainOptions) drainOptions() nodes.DrainOptions {
	grace, _ := drainGracePeriod(o.GracePeriod)
	return nodes.DrainOptions{
		GracePeriodSeconds: grace,
		Timeout:            o.Timeout, GlobalTimeout: o.GlobalTimeout,
		DeleteEmptyDirData: o.DeleteEmptyDirData, Force: o.Force, IgnoreDaemonSets: o.IgnoreDaemonSets,
		AllowSingleReplica: o.AllowSingleReplica, PDBMaxUnavailable: o.PDBMaxUnavailable,
		DeletePodsOfDownNode: o.DeletePodsOfDownNode, Progress: o.ErrOut,
	}
}

// drainJSON is the -o json document.
type drainJSON struct {
	FormatVersion int `json:"format_version"`
	nodes.Summary
	DeletedNodes []string `json:"deleted_nodes"`
	Error        string   `json:"error,omitempty"`
}

func runNodesDrain(ctx context.Context, o *nodesDrainOptions) error {
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	c := observe.Open(inv, o.observeOptions())
	defer c.Close()
	if err := o.checkKube(c); err != nil {
		return err
	}
	kube, err := drainClient(c)
	if err != nil {
		return err
	}
	names, err := resolveNodes(ctx, kube, inv, o.Nodes)
	if err != nil {
		return err
	}
	opts := o.drainOptions()
	fmt.Fprintf(o.ErrOut, "Draining %s...\n", strings.Join(names, ", "))
	start := time.Now()
	sum, err := nodes.Drain(ctx, kube, names, opts)
	var deleted []string
	if err == nil && o.DeleteNode {
		for _, n := range names {
			if derr := nodes.DeleteNode(ctx, kube, n); derr != nil {
				err = derr
				break
			}
			deleted = append(deleted, n)
			fmt.Fprintf(o.ErrOut, "node %s: deleted\n", n)
		}
	}
	fmt.Fprintf(o.ErrOut, "Done in %s.\n", time.Since(start).Round(100*time.Millisecond))
	if o.Output == "json" {
		doc := drainJSON{FormatVersion: 1, Summary: sum, DeletedNodes: deleted}
		if doc.DeletedNodes == nil {
			doc.DeletedNodes = []string{}
		}
		if err != nil {
			doc.Error = err.Error()
		}
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(doc); jerr != nil && err == nil {
			err = jerr
		}
	} else if terr := writeDrainSummary(o.Out, sum, deleted); terr != nil && err == nil {
		err = terr
	}
	if sum.RemoveErr != "" {
		fmt.Fprintf(o.ErrOut, "warning: temporary PDBs of operation %s are left: %s\n  remove them with: kubectl delete pdb -A -l %s=mastershrink (those annotated %s=%s)\n",
			sum.OperationID, sum.RemoveErr, nodes.LabelManagedBy, nodes.AnnotationOperationID, sum.OperationID)
	}
	return err
}

// drainClient is the inventory's admin client with room for a drain's bursts: client-go's
// default of 5 requests a second would take minutes for a few hundred pods.
func drainClient(c *observe.Cluster) (kubernetes.Interface, error) {
	_, cfg, err := c.Kube()
	if err != nil {
		return nil, usageError{explainKubeconfig(err)}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 100, 200
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client from %s: %w", c.Inv.Kubeconfig, err)
	}
	return kube, nil
}

// resolveNodes maps each argument to a Node name (nodes.ResolveNodes), through the
// inventory's addresses. An argument naming nothing is a usage error listing the Nodes there
// are, before anything is cordoned.
func resolveNodes(ctx context.Context, kube kubernetes.Interface, inv *inventory.Inventory, args []string) ([]string, error) {
	names, err := nodes.ResolveNodes(ctx, kube, args, func(name string) (string, bool) {
		ih, ok := inv.Host(name)
		if !ok {
			return "", false
		}
		return ih.Address, true
	})
	var unknown *nodes.UnknownNodeError
	if errors.As(err, &unknown) {
		return nil, usageError{err}
	}
	return names, err
}

func writeDrainSummary(w io.Writer, sum nodes.Summary, deleted []string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tEVICTED\tDELETED\tSKIPPED\tBLOCKED\tREFUSED")
	for _, n := range sum.Nodes {
		state := "ready"
		if n.Down {
			state = "down"
		}
		if slices.Contains(deleted, n.Node) {
			state += ", Node deleted"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n", n.Node, state, len(n.Evicted), len(n.Deleted), len(n.Skipped), len(n.Blocked), len(n.Refused))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, l := range lines {
			fmt.Fprintln(w, "  "+l)
		}
	}
	var refused, blocked, skipped []string
	for _, n := range sum.Nodes {
		for _, p := range n.Refused {
			l := fmt.Sprintf("%s/%s on %s: %s", p.Namespace, p.Name, n.Node, p.Reason)
			if p.Hint != "" {
				l += "\n    hint: " + p.Hint
			}
			refused = append(refused, l)
		}
		for _, b := range n.Blocked {
			blocked = append(blocked, fmt.Sprintf("%s on %s: %s", b.Pod, n.Node, b.Reason))
		}
		for _, p := range n.Skipped {
			skipped = append(skipped, fmt.Sprintf("%s/%s on %s: %s", p.Namespace, p.Name, n.Node, p.Reason))
		}
	}
	section("Refused (nothing was evicted; the cordon is undone)", refused)
	section("Blocked", blocked)
	section("Skipped", skipped)
	section("Preflight", sum.Preflight)
	if len(sum.TempPDBs) > 0 {
		state := "removed"
		if sum.RemoveErr != "" {
			state = "NOT all removed: " + sum.RemoveErr
		}
		section(fmt.Sprintf("Temporary PDBs of operation %s (%s)", sum.OperationID, state), sum.TempPDBs)
	}
	return nil
}
