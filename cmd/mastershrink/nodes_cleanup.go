package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/observe"
)

type nodesCleanupOptions struct {
	*globalOptions
	Hosts  []string
	Force  bool
	Output string
	// verifyOnly is `nodes verify`: check, change nothing.
	verifyOnly bool
}

func newNodesCleanupCmd(g *globalOptions, runF func(*nodesCleanupOptions) error) *cobra.Command {
	o := &nodesCleanupOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "cleanup HOST... -i INVENTORY",
		Short: "Remove what Kubernetes left on hosts taken out of the cluster, then verify them",
		Long: `cleanup connects to each host over SSH and, after a backup of /etc/kubernetes and the kubelet's
PKI (under /var/backups/mastershrink), stops and disables kubelet and kube-proxy, removes the
containers (docker, crictl) and stops their shims, unmounts the kubelet's mounts, removes the
kubelet, CNI and kube-proxy folders, deletes the CNI links (cni0, flannel.*, cali*, tunl0,
vxlan*, kube-ipvs0), removes the kube and CNI chains from iptables, kube-proxy's nftables
table and the IPVS services. Each action prints as done, absent (nothing to do) or failed.

Then it verifies the host as 'nodes verify' does and exits 1 if anything is left, printing the
command that would remove it. A second run changes nothing.

It refuses (exit 3) a host whose Node is still in the cluster (drain it with
'mastershrink nodes drain HOST --delete-node' first) or that the inventory lists as a master
or etcd member, unless --force.`,
		Example: `  mastershrink nodes cleanup w2 -i inventory.yaml
  mastershrink nodes cleanup w2 w3 -i inventory.yaml -o json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Hosts = args
			return runOrHook(cmd.Context(), o, runF, runNodesCleanup)
		},
	}
	cmd.Flags().BoolVar(&o.Force, "force", false, "clean even a host whose Node still exists (or whose Node cannot be checked), or a master/etcd host")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "how to print the report: table or json")
	cmd.ValidArgsFunction = completeHostArgs(g)
	return cmd
}

func newNodesVerifyCmd(g *globalOptions, runF func(*nodesCleanupOptions) error) *cobra.Command {
	o := &nodesCleanupOptions{globalOptions: g, verifyOnly: true}
	cmd := &cobra.Command{
		Use:   "verify HOST... -i INVENTORY",
		Short: "Check that hosts carry nothing of Kubernetes any more (changes nothing)",
		Long: `verify checks each host over SSH: no kubelet or kube-proxy process or active unit, no
container shims or containers, no kubelet.conf or kubelet PKI, no kubelet mounts, no CNI
links, no kube chains in iptables or nftables, no IPVS services, no listener on the Kubernetes
ports. It exits 1 if anything is left, printing the command that would remove it.`,
		Example: `  mastershrink nodes verify w2 -i inventory.yaml`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Hosts = args
			return runOrHook(cmd.Context(), o, runF, runNodesCleanup)
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "how to print the report: table or json")
	cmd.ValidArgsFunction = completeHostArgs(g)
	return cmd
}

// hostCleanupJSON is one host of the -o json document.
type hostCleanupJSON struct {
	Host    string               `json:"host"`
	Cleanup *nodes.CleanupReport `json:"cleanup,omitempty"`
	Verify  *nodes.VerifyReport  `json:"verify,omitempty"`
	Error   string               `json:"error,omitempty"`
}

// errNotClean is the summary error when a host keeps leftovers or could not be checked.
var errNotClean = errors.New("not clean")

func (o *nodesCleanupOptions) validate() error {
	if o.Inventory == "" {
		return errNoInventory
	}
	if o.Output != "table" && o.Output != "json" {
		return usageError{fmt.Errorf("-o %q: want table or json", o.Output)}
	}
	return nil
}

// checkHosts names a host the inventory does not have, with those it has.
func (o *nodesCleanupOptions) checkHosts(inv *inventory.Inventory) error {
	for _, h := range o.Hosts {
		if _, ok := inv.Host(h); !ok {
			return usageError{fmt.Errorf("host %q is not in %s (hosts: %s)", h, inv.File, strings.Join(inv.HostNames(), ", "))}
		}
	}
	return nil
}

func runNodesCleanup(ctx context.Context, o *nodesCleanupOptions) error {
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	if err := o.checkHosts(inv); err != nil {
		return err
	}
	c := observe.Open(inv, o.observeOptions())
	defer c.Close()
	if err := o.checkKube(c); err != nil {
		return err
	}
	if !o.verifyOnly && !o.Force {
		if err := cleanupGuard(ctx, c, inv, o.Hosts); err != nil {
			return err
		}
	}
	var docs []hostCleanupJSON
	var failed []string
	for _, name := range o.Hosts {
		doc := cleanupHost(ctx, o, c, inv, name)
		docs = append(docs, doc)
		if doc.Error != "" || doc.Verify == nil || !doc.Verify.Clean() {
			failed = append(failed, name)
		}
	}
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			FormatVersion int               `json:"format_version"`
			Hosts         []hostCleanupJSON `json:"hosts"`
		}{1, docs}); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: %w (see the report for what is left and how to remove it)", strings.Join(failed, ", "), errNotClean)
	}
	return nil
}

// cleanupGuard refuses hosts that still serve the cluster (nodes.GuardCleanup), as the
// inventory describes them.
func cleanupGuard(ctx context.Context, c *observe.Cluster, inv *inventory.Inventory, hosts []string) error {
	targets := make([]nodes.CleanupTarget, len(hosts))
	for i, name := range hosts {
		ih, _ := inv.Host(name)
		targets[i] = nodes.CleanupTarget{Name: name, Address: ih.Address, ControlPlane: ih.Has(inventory.RoleMaster) || ih.Has(inventory.RoleEtcd)}
	}
	return nodes.GuardCleanup(ctx, func() (kubernetes.Interface, error) {
		kube, _, err := c.Kube()
		return kube, err
	}, targets, inv.File)
}

func cleanupHost(ctx context.Context, o *nodesCleanupOptions, c *observe.Cluster, inv *inventory.Inventory, name string) hostCleanupJSON {
	doc := hostCleanupJSON{Host: name}
	table := o.Output == "table"
	// failed ends the host's work at an error, which the report and stderr both name.
	failed := func(err error) hostCleanupJSON {
		doc.Error = err.Error()
		fmt.Fprintf(o.ErrOut, "error: %s: %v\n", name, err)
		return doc
	}
	h, err := c.Host(ctx, name)
	if err != nil {
		return failed(err)
	}
	ih, _ := inv.Host(name)
	opts := nodes.CleanupOptionsFor(ih.Paths.KubeletUnit, ih.Paths.KubeProxyUnit)
	if !o.verifyOnly {
		fmt.Fprintf(o.ErrOut, "Cleaning %s...\n", name)
		rep, err := nodes.Cleanup(ctx, h, opts)
		doc.Cleanup = &rep
		if table {
			writeCleanupReport(o.Out, name, rep)
		}
		if err != nil {
			return failed(err)
		}
	}
	v, err := nodes.Verify(ctx, h, opts)
	doc.Verify = &v
	if table {
		writeVerifyReport(o.Out, name, v)
	}
	if err != nil {
		doc.Error = err.Error()
	}
	return doc
}

func writeCleanupReport(w io.Writer, name string, rep nodes.CleanupReport) {
	fmt.Fprintf(w, "Cleanup of %s", name)
	if rep.Backup != "" {
		fmt.Fprintf(w, " (backup %s:%s)", name, rep.Backup)
	}
	fmt.Fprintln(w, ":")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tTARGET\tRESULT")
	for _, a := range rep.Actions {
		res := a.Result
		if a.Error != "" {
			res += ": " + firstLine(a.Error)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", a.Step, a.Target, res)
	}
	tw.Flush()
	done := 0
	for _, a := range rep.Actions {
		if a.Result == nodes.ResultDone {
			done++
		}
	}
	fmt.Fprintf(w, "  %d changes, %d failed.\n", done, len(rep.Failed()))
}

func writeVerifyReport(w io.Writer, name string, v nodes.VerifyReport) {
	if v.Clean() {
		fmt.Fprintf(w, "Verification of %s: clean.\n", name)
		return
	}
	fmt.Fprintf(w, "Verification of %s: %d left, %d checks could not run:\n", name, len(v.Leftovers), len(v.Problems))
	for _, l := range v.Leftovers {
		item := l.Check + " " + l.Item
		if l.Detail != "" {
			item += ": " + l.Detail
		}
		fmt.Fprintf(w, "  %s\n    remove with: %s\n", item, l.Fix)
	}
	for _, p := range v.Problems {
		fmt.Fprintf(w, "  could not check: %s\n", firstLine(p))
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
