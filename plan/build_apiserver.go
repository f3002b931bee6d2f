package plan

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	apiserver "github.com/mastershrink/mastershrink/apiserver/apiserverfacts"
	host "github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
)

// aside is what takes master's apiserver out of every staying node proxy for the time of its
// restart: a TCP proxy without health checks would keep sending requests to it while it
// shuts down. Computed from the configs as observed, which the plan's own lb/update steps
// start from, so putting them back exactly keeps those steps valid.
func (b *builder) aside(master string) []host.FileChange {
	addr := b.apiserverAddr(master)
	var out []host.FileChange
	for _, node := range slices.Sorted(maps.Keys(b.f.LB)) {
		if b.leaving[node] || b.offline[node] {
			continue
		}
		cs, err := lb.Rewrite(b.f.LB[node], []string{addr}, lb.MarkDown)
		if err != nil {
			b.refuse("proxy-aside", fmt.Sprintf("the proxy on %s cannot take %s out for its restart: %v", node, addr, err),
				"give that proxy another live apiserver in its upstream, or leave "+node+" out of the shrink, and plan again")
			continue
		}
		out = append(out, cs...)
	}
	return out
}

// apiserverAddr is the address the proxies know a master's apiserver by.
func (b *builder) apiserverAddr(master string) string {
	h, _ := b.f.Host(master)
	port := h.Paths.APIServerPort
	if port == 0 {
		port = 6443
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port))
}

func hostsOf(cs []host.FileChange) []string {
	var out []string
	for _, c := range cs {
		if !slices.Contains(out, c.Host) {
			out = append(out, c.Host)
		}
	}
	return out
}

// apiservers plans the rewrite and rolling restart of every surviving master's
// control-plane units: --etcd-servers to the surviving members, --apiserver-count, and any
// controller-manager or scheduler setting that names a leaving master.
func (b *builder) apiservers() {
	survivingMasters := 0
	for _, h := range b.f.Hosts {
		if h.Has(inventory.RoleMaster) && !b.leaving[h.Name] {
			survivingMasters++
		}
	}
	var etcdURLs []string
	for _, m := range b.survivors() {
		etcdURLs = append(etcdURLs, m.ClientURLs...)
	}
	removed := slices.Clone(b.leaveIPs)
	removed = append(removed, b.t.Remove...)
	for _, name := range slices.Sorted(maps.Keys(b.f.Units)) {
		c := b.f.Units[name].Components
		if c == nil || !c.APIServer.Present || b.leaving[name] {
			continue
		}
		r, err := apiserver.PlanRewrite(*c, name, etcdURLs, survivingMasters, removed)
		if err != nil {
			b.refuse("apiserver-rewrite", fmt.Sprintf("control-plane units on %s: %v", name, err),
				"fix the unit by hand (it must keep at least one surviving etcd member) and plan again")
			continue
		}
		for _, f := range r.Findings {
			if !f.Rewritten {
				b.warn("%s: %s %s in %s:%d names %s: %s", name, f.Component, f.Flag, f.File, f.Line, f.Address, f.Note)
			}
		}
		if len(r.Changes) == 0 {
			continue
		}
		var details []string
		for _, f := range r.Findings {
			if f.Rewritten {
				details = append(details, fmt.Sprintf("%s %s: %s", f.Component, f.Flag, f.Note))
			}
		}
		s := Step{ID: "apiserver/update/" + name, Kind: KindAPIServerRewrite, Host: name, Risk: Disruptive,
			Summary: "rewrite " + strings.Join(r.Restart, ", ") + " for the surviving etcd members and masters; restart one at a time, each gated on readiness",
			Details: details, Files: r.Changes, Params: EncodeParams(APIServerUpdateParams{Restart: r.Restart}),
			Relies: []string{"units." + name}}
		if len(r.Restart) == 0 || slices.Contains(r.Restart, apiserver.KubeAPIServer) {
			s.Aside = b.aside(name)
			if len(s.Aside) > 0 {
				s.Details = append(s.Details, fmt.Sprintf("for its restart, %s is marked down in %d node proxies and put back once ready (diffs below)",
					b.apiserverAddr(name), len(hostsOf(s.Aside))))
			}
		}
		b.add(s)
	}
}

// retire plans stopping the leaving masters' apiserver, controller-manager and scheduler.
func (b *builder) retire() {
	for _, name := range b.t.Remove {
		hu, ok := b.f.Units[name]
		if !ok {
			continue
		}
		var units []string
		if hu.Components != nil {
			for _, c := range hu.Components.Each() {
				if c.Present {
					units = append(units, c.UnitName)
				}
			}
		}
		if len(units) == 0 {
			continue
		}
		s := Step{ID: "components/retire/" + name, Kind: KindRetire, Host: name, Risk: Disruptive,
			Summary: "stop and disable " + strings.Join(units, ", "),
			Params:  EncodeParams(RetireParams{Units: units, Offline: b.offline[name]})}
		if b.offline[name] {
			s.Summary = "host offline: confirm the leases moved; stop " + strings.Join(units, ", ") + " by hand if it returns"
		}
		b.add(s)
	}
}

// APIServerUpdateParams: apiserver/update.
type APIServerUpdateParams struct {
	// Restart names the units the rewrite restarts; empty restarts kube-apiserver alone.
	Restart []string `param:"restart"`
}

func (APIServerUpdateParams) ParamsKind() string { return KindAPIServerRewrite }

// RetireParams: components/retire.
type RetireParams struct {
	Units []string `param:"units"`
	// Offline: the host is down; the step only confirms the leases moved.
	Offline bool `param:"offline"`
}

func (RetireParams) ParamsKind() string { return KindRetire }

// notePutBack says, on the last restart that sets an apiserver aside, which proxies get it
// back with their own lb/update step (the runner's putBack): one reload loads both.
func (b *builder) notePutBack() {
	last := -1
	for i, s := range b.p.Steps {
		if len(s.Aside) > 0 {
			last = i
		}
	}
	if last < 0 {
		return
	}
	aside := hostsOf(b.p.Steps[last].Aside)
	n := 0
	for _, s := range b.p.Steps[last+1:] {
		if s.Kind == KindLBUpdate && slices.Contains(aside, s.Host) {
			n++
		}
	}
	if n > 0 {
		b.p.Steps[last].Details = append(b.p.Steps[last].Details, fmt.Sprintf(
			"%d of those proxies are put back with their own lb/update below, one reload for both when that step runs in the same apply (until then they serve through the other apiservers)", n))
	}
}
