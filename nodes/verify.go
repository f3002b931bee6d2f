package nodes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/mastershrink/mastershrink/host"
)

// Leftover is one thing Verify found still on the host, with the command that removes it.
type Leftover struct {
	Check  string `json:"check"`
	Item   string `json:"item"`
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix"`
}

// VerifyReport is the outcome of Verify. Problems are checks that could not run.
type VerifyReport struct {
	Host      string     `json:"host"`
	Leftovers []Leftover `json:"leftovers,omitempty"`
	Problems  []string   `json:"problems,omitempty"`
}

// Clean reports whether nothing was left and every check ran.
func (r VerifyReport) Clean() bool { return len(r.Leftovers) == 0 && len(r.Problems) == 0 }

// Verify checks that a cleaned host no longer carries Kubernetes (seed 001's checks and more):
// no kubelet or kube-proxy process or active unit, no container shims or Kubernetes
// containers (docker by kubelet's pod label, the CRI's), no kubelet.conf or kubelet PKI, no
// kubelet mounts, no CNI links, no kube chains in iptables or nftables, no kube-proxy IPVS
// services, no listener on the Kubernetes ports. Every command has the options' deadline; one
// that times out is a problem naming it. opts is optional (at most one), the same as given to
// Cleanup.
func Verify(ctx context.Context, h host.Host, opts ...CleanupOptions) (VerifyReport, error) {
	var o CleanupOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	o = o.withDefaults()
	rep := VerifyReport{Host: h.Name()}
	c := &cleaner{h: h, o: o, rep: &CleanupReport{}}
	left := func(check, item, detail, fix string) {
		rep.Leftovers = append(rep.Leftovers, Leftover{Check: check, Item: item, Detail: detail, Fix: fix})
	}
	problem := func(check string, err error) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s: %v", check, err))
	}

	for _, n := range o.Processes {
		if out, running, err := c.ok(ctx, "pgrep -x "+shq(n)); err != nil {
			problem("process "+n, err)
		} else if running {
			left("process", n, "pids "+strings.Join(strings.Fields(out), ","), "pkill -x "+shq(n))
		}
	}
	for _, n := range o.Shims {
		if out, running, err := c.ok(ctx, "pgrep -x "+shq(n)); err != nil {
			problem("shim "+n, err)
		} else if running {
			left("shim", n, "pids "+strings.Join(strings.Fields(out), ","), "pkill -TERM -x "+shq(n))
		}
	}
	if sd, err := h.Systemd(ctx); err == nil {
		for _, u := range o.Units {
			st, err := host.WithTimeout(ctx, h, o.CommandTimeout, "systemctl status "+u, func(ctx context.Context) (host.UnitStatus, error) {
				return sd.Status(ctx, u)
			})
			if err != nil {
				problem("unit "+u, err)
				continue
			}
			if st.ActiveState == "active" || st.ActiveState == "activating" {
				left("unit", u, "active", "systemctl stop "+u)
			}
			if st.UnitFileState == "enabled" {
				left("unit", u, "enabled (starts at boot)", "systemctl disable "+u)
			}
		}
		sd.Close()
	}
	if c.have(ctx, "docker") {
		if out, ok, err := c.ok(ctx, dockerList); err != nil {
			problem("containers docker", err)
		} else if ok && strings.TrimSpace(out) != "" {
			left("containers", "docker", strings.Join(strings.Fields(out), ","), "docker rm -f $("+dockerList+")")
		}
	}
	if c.have(ctx, "crictl") {
		if out, ok, err := c.ok(ctx, "crictl ps -aq"); err != nil {
			problem("containers crictl", err)
		} else if ok && strings.TrimSpace(out) != "" {
			left("containers", "crictl", strings.Join(strings.Fields(out), ","), "crictl rm -f $(crictl ps -aq)")
		}
	}
	for _, p := range []string{"/etc/kubernetes/kubelet.conf", "/etc/kubernetes/bootstrap-kubelet.conf", "/var/lib/kubelet/pki", "/var/lib/kubelet/config.yaml", "/etc/cni/net.d"} {
		full := o.path(p)
		if _, err := c.stat(ctx, full); err == nil {
			left("file", full, "", "rm -rf "+shq(full))
		} else if !errors.Is(err, fs.ErrNotExist) {
			problem("file "+full, err)
		}
	}
	if mps, err := c.kubeMounts(ctx); err != nil {
		problem("mounts", err)
	} else {
		for _, mp := range mps {
			left("mount", mp, "", "umount "+shq(mp))
		}
	}
	if links, err := c.kubeLinks(ctx); err != nil {
		problem("links", err)
	} else {
		for _, l := range links {
			left("link", l, "", "ip link delete "+shq(l))
		}
	}
	for _, t := range c.iptablesTools(ctx) {
		save, err := c.run(ctx, t+"-save")
		if err != nil {
			problem(t, err)
			continue
		}
		chains, _ := chainsPlan(save)
		for _, table := range slices.Sorted(maps.Keys(chains)) {
			for _, ch := range chains[table] {
				left("iptables", fmt.Sprintf("%s -t %s %s", t, table, ch), "",
					fmt.Sprintf("%[1]s -t %[2]s -F %[3]s && %[1]s -t %[2]s -X %[3]s", t, table, ch))
			}
		}
	}
	if tables, err := c.kubeNftTables(ctx); err != nil {
		problem("nft", err)
	} else {
		for _, t := range tables {
			left("nftables", t, "", "nft delete table "+t)
		}
	}
	if kube, _, _, err := c.kubeIPVS(ctx); err != nil {
		problem("ipvs", err)
	} else {
		for _, s := range kube {
			left("ipvs", s.Proto+" "+s.Addr, "kube-proxy's", s.deleteCommand())
		}
	}
	if out, err := c.run(ctx, "ss -Htln"); err != nil {
		problem("listeners", err)
	} else {
		for _, port := range listeningPorts(out, o.Ports) {
			left("listener", ":"+strconv.Itoa(port), "", fmt.Sprintf("ss -tlnp 'sport = :%d' (then stop that process)", port))
		}
	}
	return rep, ctx.Err()
}

// listeningPorts returns which of ports appear as local ports in `ss -Htln` output.
func listeningPorts(ss string, ports []int) []int {
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	seen := map[int]bool{}
	var out []int
	for _, l := range strings.Split(ss, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		i := strings.LastIndex(f[3], ":")
		port, err := strconv.Atoi(f[3][i+1:])
		if err == nil && want[port] && !seen[port] {
			seen[port] = true
			out = append(out, port)
		}
	}
	return out
}
