package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/inventory"
)

func (b *builder) sortedUnitHosts() []string {
	var names []string
	for name := range b.f.Units {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
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
	for _, name := range b.sortedUnitHosts() {
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
		b.add(Step{ID: "apiserver/update/" + name, Kind: KindAPIServerRewrite, Host: name, Risk: Disruptive,
			Summary: "rewrite " + strings.Join(r.Restart, ", ") + " for the surviving etcd members and masters; restart one at a time, each gated on readiness",
			Details: details, Files: r.Changes, Params: EncodeParams(APIServerUpdateParams{Restart: r.Restart}),
			Relies: []string{"units." + name}})
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
