package observe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
)

// observeProxy reads a host's apiserver proxy: the one its inventory proxy names, or, when it
// names none, nginx where nginx_config exists and else haproxy where haproxy_config fronts
// the apiservers. A host whose proxy config is not there gives missing, with what was found
// instead; a host the inventory gives no proxy (no nginx_config, no proxy) gives neither.
func observeProxy(ctx context.Context, h host.Host, ih *inventory.Host, apiservers []string) (cfg *lb.NodeConfig, missing *plan.ProxyMissing, err error) {
	p := ih.Paths
	hapConfig, _, _ := p.HAProxyPaths()
	if p.Proxy == inventory.ProxyHAProxy {
		c, err := lb.ObserveHAProxy(ctx, h, p, apiservers)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &plan.ProxyMissing{Path: hapConfig, Kind: inventory.ProxyHAProxy, Other: otherProxies(ctx, h)}, nil
		}
		if err != nil {
			return nil, nil, err
		}
		return &c, nil, nil
	}
	if p.NginxConfig == "" {
		return nil, nil, nil
	}
	c, err := lb.Observe(ctx, h, p, apiservers)
	if err == nil {
		if p.Proxy == "" {
			if err := secondProxy(ctx, h, p, apiservers); err != nil {
				return nil, nil, err
			}
		}
		return &c, nil, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	other := otherProxies(ctx, h)
	if p.Proxy == "" {
		hc, herr := lb.ObserveHAProxy(ctx, h, p, apiservers)
		switch {
		case herr == nil && len(hc.Upstreams) > 0:
			return &hc, nil, nil
		case herr == nil:
			// haproxy is there but fronts none of the apiservers (Debian's default config,
			// or a proxy for something else): not the node's apiserver proxy.
			other = withoutHAProxy(other, hapConfig)
		case !errors.Is(herr, fs.ErrNotExist):
			return nil, nil, fmt.Errorf("no nginx config at %s, and the haproxy config there cannot be read: %w", p.NginxConfig, herr)
		}
	}
	return nil, &plan.ProxyMissing{Path: p.NginxConfig, Other: other}, nil
}

// proxyFiles are the files observeProxy reads first on a host: its nginx config's main file
// and the haproxy config, which tells a second proxy or the one the node runs instead.
func proxyFiles(ih *inventory.Host) []string {
	var out []string
	if ih.Paths.NginxConfig != "" {
		out = append(out, lb.MainConfigPath(ih.Paths))
	}
	if hap, _, _ := ih.Paths.HAProxyPaths(); hap != "" {
		out = append(out, hap)
	}
	return out
}

// secondProxy refuses a host where, next to the nginx it runs, an active haproxy fronts the
// apiservers too: mastershrink edits one proxy per node, and the other would keep sending
// requests to the leaving masters. A haproxy config that is not running is not in the way.
func secondProxy(ctx context.Context, h host.Host, p inventory.Paths, apiservers []string) error {
	hc, err := lb.ObserveHAProxy(ctx, h, p, apiservers)
	if err != nil || len(hc.Upstreams) == 0 {
		return nil
	}
	_, unit, _ := p.HAProxyPaths()
	sd, err := h.Systemd(ctx)
	if err != nil {
		return nil
	}
	defer sd.Close()
	st, err := sd.Status(ctx, unit)
	if err != nil || st.ActiveState != "active" {
		return nil
	}
	return fmt.Errorf("both nginx (%s) and haproxy (%s, %s active) front the apiservers there, and mastershrink edits one proxy per node: set proxy: nginx or proxy: haproxy for %s in the inventory, and take the leaving masters out of the other by hand",
		p.NginxConfig, hc.Main, unit, h.Name())
}

// withoutHAProxy drops the signs of haproxy from a list of otherProxies.
func withoutHAProxy(other []string, config string) []string {
	var out []string
	for _, o := range other {
		if o == config || strings.HasPrefix(o, "haproxy.service ") {
			continue
		}
		out = append(out, o)
	}
	return out
}
