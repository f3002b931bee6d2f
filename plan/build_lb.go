package plan

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
)

// loadBalancers plans the proxy rewrite (nginx or haproxy) on every staying node.
func (b *builder) loadBalancers() {
	var leaving []string
	for _, name := range b.t.Remove {
		h, _ := b.f.Host(name)
		if !h.Has(inventory.RoleMaster) {
			continue
		}
		port := h.Paths.APIServerPort
		if port == 0 {
			port = 6443
		}
		leaving = append(leaving, net.JoinHostPort(h.Address, strconv.Itoa(port)))
	}
	if len(leaving) == 0 {
		return
	}
	b.missingProxies()
	mode := lb.MarkDown
	if b.t.LBMode == "remove" {
		mode = lb.Remove
	}
	for _, name := range slices.Sorted(maps.Keys(b.f.LB)) {
		if b.leaving[name] || b.offline[name] {
			continue
		}
		cfg := b.f.LB[name]
		// A proxy fronting no apiserver would get no step at all, and keep sending the node's
		// clients wherever it sends them: the inventory points at the wrong file, or the
		// upstream is wrong.
		var none *lb.NoAPIServerError
		if errors.As(lb.RequireAPIServer(cfg), &none) {
			if cfg.Kind == lb.KindHAProxy {
				b.refuse("lb-no-apiserver", fmt.Sprintf("the haproxy on %s fronts no apiserver: %s: %s", name, none.File, none.Found),
					"point the inventory's haproxy_config at the haproxy config that fronts the apiservers, or fix its backend")
				continue
			}
			b.refuse("lb-no-apiserver", fmt.Sprintf("the proxy on %s fronts no apiserver: %s: %s", name, none.File, none.Found),
				"point the inventory's nginx_config at the proxy that fronts the apiservers, or fix the upstream")
			continue
		}
		files, err := lb.Rewrite(cfg, leaving, mode)
		if errors.Is(err, lb.ErrNoUpstreamLeft) {
			b.refuse("lb-empty", fmt.Sprintf("the proxy on %s would be left with no apiserver: %v", name, err),
				"add a surviving apiserver to its "+map[bool]string{false: "upstream", true: "backend"}[cfg.Kind == lb.KindHAProxy]+" first, or keep a master")
			continue
		}
		if err != nil {
			b.refuse("lb-config", fmt.Sprintf("the proxy config on %s: %v", name, err), "fix the "+proxyName(cfg)+" config by hand and plan again")
			continue
		}
		if len(files) == 0 {
			continue
		}
		summary := "mark " + strings.Join(leaving, ", ") + " down in the node's nginx, nginx -t, reload, probe"
		if mode == lb.Remove {
			summary = "remove " + strings.Join(leaving, ", ") + " from the node's nginx, nginx -t, reload, probe"
		}
		if cfg.Kind == lb.KindHAProxy {
			summary = "disable " + strings.Join(leaving, ", ") + " in the node's haproxy, haproxy -c, reload, probe"
			if mode == lb.Remove {
				summary = "remove " + strings.Join(leaving, ", ") + " from the node's haproxy, haproxy -c, reload, probe"
			}
		}
		var details []string
		for _, n := range slices.Sorted(maps.Keys(cfg.Resolved)) {
			if addrs := cfg.Resolved[n]; len(intersect(addrs, b.leaveIPs)) > 0 {
				details = append(details, fmt.Sprintf("upstream server %s is %s on %s", n, strings.Join(addrs, ", "), name))
			}
		}
		b.add(Step{ID: "lb/update/" + name, Kind: KindLBUpdate, Host: name, Risk: Disruptive, Summary: summary,
			Details: details, Files: files, Params: EncodeParams(LBUpdateParams{Leaving: leaving, Mode: b.t.LBMode}),
			Relies: []string{"lb." + name}})
	}
}

// leavingProxies stops the node proxy of every leaving master that runs one: nothing updates
// it any more, and it would keep routing to every old apiserver (kubeasz's kube-lb on a
// master). It runs after the host's drain and cleanup, which still use it.
func (b *builder) leavingProxies() {
	for _, name := range b.t.Remove {
		if _, ok := b.f.LB[name]; !ok || b.offline[name] {
			continue
		}
		h, _ := b.f.Host(name)
		unit := h.Paths.NginxUnit
		if b.f.LB[name].Kind == lb.KindHAProxy {
			_, unit, _ = h.Paths.HAProxyPaths()
		}
		if unit == "" {
			continue
		}
		b.add(Step{ID: KindLBStop + "/" + name, Kind: KindLBStop, Host: name, Risk: Disruptive,
			Summary: "stop and disable " + unit + " on the leaving host: it would keep routing to the old apiservers",
			Params:  EncodeParams(LBStopParams{Unit: unit})})
	}
}

// proxyName is the program of a node's proxy, for messages.
func proxyName(cfg lb.NodeConfig) string {
	if cfg.Kind == lb.KindHAProxy {
		return "haproxy"
	}
	return "nginx"
}

// LBUpdateParams: lb/update.
type LBUpdateParams struct {
	// Leaving are the apiserver addresses taken out of the proxy.
	Leaving []string `param:"leaving"`
	Mode    string   `param:"mode"`
}

func (LBUpdateParams) ParamsKind() string { return KindLBUpdate }

// LBStopParams: lb/stop.
type LBStopParams struct {
	Unit string `param:"unit"`
}

func (LBStopParams) ParamsKind() string { return KindLBStop }

// missingProxies: a staying host without the nginx config the inventory names either runs
// another proxy mastershrink cannot rewrite (refused: it would keep sending requests to the
// leaving masters) or has none (a warning, since a wrong path looks the same).
func (b *builder) missingProxies() {
	for _, name := range slices.Sorted(maps.Keys(b.f.ProxyMissing)) {
		m := b.f.ProxyMissing[name]
		if b.leaving[name] || b.offline[name] {
			continue
		}
		if m.Kind == lb.KindHAProxy {
			what := "nothing else"
			if len(m.Other) > 0 {
				what = strings.Join(m.Other, ", ")
			}
			b.refuse("proxy-missing", fmt.Sprintf("the inventory says %s's proxy is haproxy, but there is no haproxy config at %s (found: %s): it would keep sending requests to the leaving masters", name, m.Path, what),
				"set haproxy_config for "+name+" to the config its haproxy runs, or take proxy: haproxy off it if it has no apiserver proxy, and plan again")
			continue
		}
		if len(m.Other) > 0 && slices.ContainsFunc(m.Other, func(o string) bool { return strings.Contains(o, "haproxy") }) {
			b.refuse("proxy-unsupported", fmt.Sprintf("%s has no nginx config at %s but haproxy (%s), not read as its apiserver proxy: it would keep sending requests to the leaving masters",
				name, m.Path, strings.Join(m.Other, ", ")),
				"set proxy: haproxy for "+name+" in the inventory (and haproxy_config, where its config is not "+inventory.DefaultHAProxyConfig+") so mastershrink edits it, or point nginx_config at its real nginx config; then plan again")
			continue
		}
		if len(m.Other) > 0 {
			b.refuse("proxy-unsupported", fmt.Sprintf("%s has no nginx config at %s but another apiserver proxy (%s), which mastershrink cannot rewrite: it would keep sending requests to the leaving masters",
				name, m.Path, strings.Join(m.Other, ", ")),
				"take the leaving masters out of that proxy by hand (and reload it), then set nginx_config: \"\" for "+name+" in the inventory so mastershrink leaves it alone, and plan again; or set nginx_config to its real nginx config")
			continue
		}
		b.warn("%s: no nginx config at %s, so it is treated as a host without an apiserver proxy; if it reaches the apiservers through a proxy elsewhere, set nginx_config for it in the inventory and plan again", name, m.Path)
	}
}
