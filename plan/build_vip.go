package plan

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	host "github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/vip"
)

// VIPReleaseParams: vip/release.
type VIPReleaseParams struct {
	Unit string `param:"unit"`
	// VIPs are the leaving host's virtual addresses; each must end on a staying host.
	VIPs []string `param:"vips"`
	// Backups are the staying hosts whose keepalived serves one of VIPs: the new holder is
	// one of them.
	Backups []string `param:"backups"`
}

func (VIPReleaseParams) ParamsKind() string { return KindVIPRelease }

// VIPUpdateParams: vip/update.
type VIPUpdateParams struct {
	Unit string `param:"unit"`
	// Reload is set when keepalived runs there: the new config takes effect only then.
	Reload bool `param:"reload"`
}

func (VIPUpdateParams) ParamsKind() string { return KindVIPUpdate }

// vips moves every VIP off the leaving hosts first, before any apiserver restarts or stops,
// and takes the leaving hosts out of the staying peers' unicast lists.
//
// A VIP that kubeconfigs point at sits on one keepalived host and routes through that host's
// proxy. A leaving host's proxy is never taken off a survivor's restarting apiserver (only
// staying proxies are), nor kept once its host is retired, so every client of a VIP left
// there would see the restart and then lose the API. So keepalived is stopped on each leaving
// host first: its priority-0 advertisement hands the VIP to the best backup at once.
func (b *builder) vips() {
	var release []string
	for _, name := range b.t.Remove {
		if b.offline[name] {
			continue
		}
		o, ok := b.f.VRRP[name]
		if ok && o.Error != "" {
			b.refuse("keepalived-config", fmt.Sprintf("%s runs keepalived but mastershrink could not read it: %s", name, o.Error),
				"fix the keepalived config, or move the VIP off "+name+" by hand, stop and disable keepalived there, then plan again")
			continue
		}
		if !ok {
			// Signs of keepalived (a unit) but no config to read: nothing to decide from.
			if signs := b.f.Keepalived[name]; len(signs) > 0 {
				b.refuse("keepalived-on-leaving", fmt.Sprintf("%s runs keepalived (%s) but its config %s could not be read, so mastershrink cannot tell which VIPs it holds or backs up",
					name, strings.Join(signs, ", "), vip.DefaultConfig),
					"move the VIP off "+name+" by hand (check it answers on its new holder), stop and disable keepalived there, then plan again")
			}
			continue
		}
		if !o.Active && !o.Enabled {
			continue
		}
		if len(o.Config.Includes) > 0 {
			b.refuse("keepalived-include", fmt.Sprintf("%s: %s includes %s, which mastershrink does not read: VIPs defined there would be missed",
				name, o.Path, strings.Join(o.Config.Includes, ", ")),
				"move the VIP off "+name+" by hand, stop and disable keepalived there, then plan again")
			continue
		}
		release = append(release, name)
	}
	// Lowest priority first: VRRP elects the highest, so the holder goes last and the VIP moves
	// once. The priority is configuration, so a failover between plan and apply (which would
	// change who holds the VIP) does not make the plan stale; a holder that is not the
	// highest (nopreempt) only makes the VIP move twice.
	sort.SliceStable(release, func(i, j int) bool {
		pi, pj := maxPriority(b.f.VRRP[release[i]].Config), maxPriority(b.f.VRRP[release[j]].Config)
		if pi != pj {
			return pi < pj
		}
		return release[i] < release[j]
	})
	if len(release) > 0 {
		var all []string
		for _, name := range release {
			for _, v := range b.f.VRRP[name].Config.VIPs() {
				if !slices.Contains(all, v) {
					all = append(all, v)
				}
			}
		}
		if !slices.Contains(all, PeerHost(b.f.KubeServer)) {
			b.warn("mastershrink's kubeconfig (server %s) does not use the VIP %s: apply proves where the VIP moves, but can only ask /readyz through it with a kubeconfig that names it (--kubeconfig)",
				b.f.KubeServer, strings.Join(all, ", "))
		}
	}
	for _, name := range release {
		o := b.f.VRRP[name]
		vips := o.Config.VIPs()
		var backups, details []string
		for _, v := range vips {
			var on []string
			for _, s := range slices.Sorted(maps.Keys(b.f.VRRP)) {
				so := b.f.VRRP[s]
				if b.leaving[s] || b.offline[s] || !so.Active || !slices.Contains(so.Config.VIPs(), v) {
					continue
				}
				on = append(on, fmt.Sprintf("%s (priority %d)", s, priorityOf(so.Config, v)))
				if !slices.Contains(backups, s) {
					backups = append(backups, s)
				}
			}
			if len(on) == 0 {
				b.refuse("vip-no-survivor", fmt.Sprintf("VIP %s on the leaving %s has no staying host running keepalived for it: stopping keepalived on %s would take the VIP away from every client",
					v, name, name),
					"configure and start keepalived for "+v+" on a staying master (check it joins as BACKUP), then plan again")
				continue
			}
			state := "backs up"
			if slices.Contains(o.Holds, v) {
				state = "holds"
			}
			details = append(details, fmt.Sprintf("%s %s %s (priority %d); staying keepalived for it: %s", name, state, v, priorityOf(o.Config, v), strings.Join(on, ", ")))
		}
		sort.Strings(backups)
		b.add(Step{ID: KindVIPRelease + "/" + name, Kind: KindVIPRelease, Host: name, Risk: Disruptive,
			Summary: fmt.Sprintf("stop and disable keepalived on the leaving %s; prove %s held by exactly one staying host and answering there", name, strings.Join(vips, ", ")),
			Details: details, Params: EncodeParams(VIPReleaseParams{Unit: vip.DefaultUnit, VIPs: vips, Backups: backups}),
			Relies: []string{"vrrp." + name}})
	}

	for _, name := range slices.Sorted(maps.Keys(b.f.VRRP)) {
		o := b.f.VRRP[name]
		if b.leaving[name] || b.offline[name] {
			continue
		}
		if o.Error != "" {
			b.warn("%s: keepalived could not be read (%s): if its config names a leaving host as a unicast peer, remove it by hand", name, o.Error)
			continue
		}
		if o.Text == "" {
			continue
		}
		var named []string
		for _, in := range o.Config.Instances {
			named = append(named, intersect(in.Peers, b.leaveIPs)...)
		}
		if len(named) == 0 {
			continue
		}
		after, err := vip.DropPeers(o.Text, b.leaveIPs)
		if err != nil {
			b.refuse("keepalived-config", fmt.Sprintf("%s: %s: %v", name, o.Path, err), "fix the keepalived config by hand and plan again")
			continue
		}
		summary := "remove " + strings.Join(named, ", ") + " from keepalived's unicast peers, check the config"
		if o.Active {
			summary += ", reload keepalived unless it holds a VIP then (a reload re-elects and drops the VIP for seconds)"
		}
		b.add(Step{ID: KindVIPUpdate + "/" + name, Kind: KindVIPUpdate, Host: name, Risk: Disruptive, Summary: summary,
			Files:  []host.FileChange{{Host: name, Path: o.Path, Before: o.Text, After: after}},
			Params: EncodeParams(VIPUpdateParams{Unit: vip.DefaultUnit, Reload: o.Active}), Relies: []string{"vrrp." + name}})
	}
}

func maxPriority(c vip.Config) int {
	m := 0
	for _, in := range c.Instances {
		m = max(m, in.Priority)
	}
	return m
}

// priorityOf is the priority of the instance serving addr (0 when none does).
func priorityOf(c vip.Config, addr string) int {
	for _, in := range c.Instances {
		if slices.Contains(in.VIPs, addr) {
			return in.Priority
		}
	}
	return 0
}
