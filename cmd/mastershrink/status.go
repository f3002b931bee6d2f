package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/plan"
)

type statusOptions struct {
	*globalOptions
	Output string
}

func newStatusCmd(g *globalOptions, runF func(*statusOptions) error) *cobra.Command {
	o := &statusOptions{globalOptions: g}
	cmd := &cobra.Command{
		Use:   "status -i INVENTORY [-o table|json|yaml]",
		Short: "Show the control plane as it is, and where it disagrees with the inventory (changes nothing)",
		Long: `status observes the cluster as plan does, without a target, and prints: the etcd members
with the leader, health, raft lag and versions; each master's apiserver unit and readiness;
each node's proxy upstreams (which apiservers, which marked down); the certificates the
components use, with SANs and expiry; leftovers of an earlier shrink; and every disagreement
with the inventory (a member on no inventory host, an etcd host without a member, names that
disagree, a master no proxy sends to).

For cron jobs and monitoring, the exit code says whether the cluster is healthy: 0 when it
is, 5 when status shows a problem (an etcd member unhealthy or unreachable, no etcd leader,
an apiserver not ready or its unit not active, a host unreachable, an expired certificate,
a leftover, a disagreement with the inventory), each listed at the end of the output and
in "problems" (-o json|yaml). 1 is an error that kept status from finishing its look
(printed instead of the tables), 4 bad flags or a bad inventory.`,
		Example: `  mastershrink status -i inventory.yaml
  mastershrink status -i inventory.yaml -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runOrHook(cmd.Context(), o, runF, runStatus) },
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "table, json or yaml")
	completeOutput(cmd, "table", "json", "yaml")
	return cmd
}

func (o *statusOptions) validate() error {
	if o.Inventory == "" {
		return errNoInventory
	}
	return validOutput(o.Output, "table", "json", "yaml")
}

func runStatus(ctx context.Context, o *statusOptions) error {
	inv, err := inventory.Load(o.Inventory)
	if err != nil {
		return err
	}
	start := time.Now()
	fmt.Fprintf(o.ErrOut, "Observing cluster %q: %d hosts...\n", inv.Cluster, len(inv.Hosts))
	c := observe.Open(inv, o.observeOptions())
	defer c.Close()
	if err := o.checkKube(c); err != nil {
		return err
	}
	// An empty target: nothing leaves, so the observation has no leaving host to check.
	facts, err := observe.Gather(ctx, c, plan.Target{})
	if err != nil {
		return err
	}
	o.Logger.Info("observed", "seconds", time.Since(start).Seconds())
	return writeStatus(o.Out, observe.BuildStatus(facts, c.KubeconfigSource()), o.Output, time.Now())
}

// writeStatus prints the status in the output format and returns the verdict: nil for a
// healthy cluster, a checkFailedError (exit 5) when it shows a problem.
func writeStatus(w io.Writer, s observe.Status, output string, now time.Time) error {
	problems := statusProblems(s, now)
	var err error
	if output != "table" {
		err = writeData(w, statusDoc{Status: s, Problems: problems}, output)
	} else {
		err = renderStatus(w, s, problems)
	}
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return checkFailedError{fmt.Errorf("status shows %d %s (listed above): the cluster is not healthy", len(problems), plural(len(problems), "problem", "problems"))}
	}
	return nil
}

// statusDoc is the -o json|yaml document: the status and the problems that make the exit
// code 5.
type statusDoc struct {
	observe.Status
	Problems []string `json:"problems"`
}

// statusProblems classifies a status: each thing it shows that is unhealthy, one line each,
// in the order of the sections. None means a healthy cluster (exit 0). A pure function of the
// status and the clock, so cron's verdict is tested without a cluster.
func statusProblems(s observe.Status, now time.Time) []string {
	out := []string{}
	if len(s.Members) == 0 {
		out = append(out, "etcd: no member answered")
	} else if s.Leader == "" {
		out = append(out, "etcd: no leader")
	}
	for _, m := range s.Members {
		if m.Healthy {
			continue
		}
		p := fmt.Sprintf("etcd member %s (%s", dash(m.Name), m.ID)
		if m.Host != "" {
			p += " on " + m.Host
		}
		p += ") is unhealthy"
		if m.Error != "" {
			p += ": " + firstLineOf(m.Error, 120)
		}
		out = append(out, p)
	}
	for _, a := range s.APIServers {
		switch {
		case a.Unit != "active":
			out = append(out, fmt.Sprintf("apiserver on %s (%s): unit %s", a.Host, a.Address, a.Unit))
		case !a.Ready:
			out = append(out, fmt.Sprintf("apiserver on %s (%s): not ready", a.Host, a.Address))
		}
	}
	for _, u := range s.Unreachable {
		out = append(out, fmt.Sprintf("host %s unreachable: %s", u.Host, firstLineOf(u.Error, 120)))
	}
	for _, c := range s.Certs {
		if !now.Before(c.NotAfter) {
			out = append(out, fmt.Sprintf("certificate %s:%s (%s) expired %s", c.Host, c.Path, c.CN, c.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	for _, l := range s.Leftovers {
		out = append(out, "leftover: "+l)
	}
	for _, d := range s.Disagreements {
		out = append(out, "disagreement with the inventory: "+d)
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// renderStatus prints the status as tables, one section each, rows from observe's builders.
func renderStatus(w io.Writer, s observe.Status, problems []string) error {
	// section starts a table under its title line, the columns aligned for awk.
	section := func(title, header string) *tabwriter.Writer {
		fmt.Fprintf(w, "\n%s\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		return tw
	}
	fmt.Fprintf(w, "Cluster %q, observed %s\n", s.Cluster, s.ObservedAt.Format(time.RFC3339))
	if s.KubeServer != "" {
		fmt.Fprintf(w, "Kubernetes API %s (kubeconfig %s)\n", s.KubeServer, s.Kubeconfig)
	}

	leader := s.Leader
	switch {
	case leader == "":
		leader = "none"
	case s.LeaderHost != "" && s.LeaderHost != leader:
		leader += " on " + s.LeaderHost
	}
	healthy := 0
	for _, m := range s.Members {
		if m.Healthy {
			healthy++
		}
	}
	tw := section(fmt.Sprintf("etcd: %d members, %d healthy, leader %s", len(s.Members), healthy, leader), "NAME\tID\tHOST\tPEER URLS\tHEALTH\tLEADER\tVERSION\tRAFT INDEX\tLAG\tDB SIZE")
	for _, m := range s.Members {
		health := "healthy"
		if !m.Healthy {
			health = "unhealthy"
			if m.Error != "" {
				health += ": " + firstLineOf(m.Error, 60)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", dash(m.Name), m.ID, dash(m.Host),
			strings.Join(m.PeerURLs, ","), health, yesNo(m.Leader), dash(m.Version), m.RaftIndex, m.Lag, byteSize(m.DBSize))
	}
	tw.Flush()

	ready := 0
	for _, a := range s.APIServers {
		if a.Ready {
			ready++
		}
	}
	tw = section(fmt.Sprintf("apiservers: %d of %d ready", ready, len(s.APIServers)), "HOST\tADDRESS\tUNIT\tREADYZ\tETCD SERVERS")
	for _, a := range s.APIServers {
		r := "ready"
		if !a.Ready {
			r = "not ready"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Host, a.Address, a.Unit, r, dash(strings.Join(a.EtcdServers, ",")))
	}
	tw.Flush()

	tw = section(fmt.Sprintf("node proxies: %d", len(s.Proxies)), "HOST\tLISTEN\tUPSTREAM\tSERVERS")
	for _, p := range s.Proxies {
		for _, u := range p.Upstreams {
			var servers []string
			for _, sv := range u.Servers {
				desc := sv.Address
				if sv.Master != "" {
					desc += " (" + sv.Master + ")"
				}
				if sv.Down {
					desc += " down"
				}
				servers = append(servers, desc)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Host, dash(p.Listen), u.Name, strings.Join(servers, ", "))
		}
	}
	tw.Flush()

	tw = section(fmt.Sprintf("found on the hosts: %d", len(s.Found)), "HOST\tWHAT\tSTATE\tFROM")
	for _, h := range s.Found {
		for _, u := range h.Units {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Host, u.Unit, u.State, strings.Join(u.Files, ", "))
		}
		if h.Proxy != "" {
			fmt.Fprintf(tw, "%s\t%s proxy\t-\t%s\n", h.Host, h.Proxy, h.ProxyConfig)
		}
		if k := h.Keepalived; k != nil {
			what := "keepalived, VIP " + strings.Join(k.VIPs, ", ")
			if len(k.Holds) > 0 {
				what += " (holds " + strings.Join(k.Holds, ", ") + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Host, what, k.State, k.Config)
		}
	}
	tw.Flush()

	tw = section(fmt.Sprintf("certificates: %d", len(s.Certs)), "HOST\tPATH\tCN\tEXPIRES\tDAYS\tSANS")
	for _, c := range s.Certs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", c.Host, c.Path, c.CN, c.NotAfter.Format("2006-01-02"), c.DaysLeft, strings.Join(c.SANs, ","))
	}
	tw.Flush()

	list := func(title string, items []string) {
		if len(items) == 0 {
			fmt.Fprintf(w, "\n%s: none\n", title)
			return
		}
		fmt.Fprintf(w, "\n%s: %d\n", title, len(items))
		for _, it := range items {
			fmt.Fprintf(w, "  - %s\n", it)
		}
	}
	var unreachable []string
	for _, u := range s.Unreachable {
		unreachable = append(unreachable, u.Host+": "+u.Error)
	}
	if len(unreachable) > 0 {
		list("unreachable hosts", unreachable)
	}
	list("leftovers", s.Leftovers)
	list("disagreements with the inventory", s.Disagreements)
	list("problems", problems)
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

func firstLineOf(s string, max int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// byteSize prints a size as etcdctl does, in powers of 1024.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

// dash stands in for an empty cell, so columns stay aligned for awk.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
