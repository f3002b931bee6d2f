package plan

import (
	"strings"
	"testing"
)

// A staying host without the nginx config the inventory names: with another proxy there,
// the shrink is refused (that proxy would keep the leaving masters); with nothing there, the
// plan goes on and warns, since a wrong path looks the same.
func TestProxyMissing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		other   []string
		refusal string
		warning string
		kind    string
		path    string
		code    string
		wayOut  string
	}{
		{name: "envoy", other: []string{"/etc/envoy/envoy.yaml", "envoy.service active, enabled"},
			refusal: "w1 has no nginx config at /etc/nginx/nginx.conf but another apiserver proxy (/etc/envoy/envoy.yaml, envoy.service active, enabled)", wayOut: `nginx_config: "" for w1`},
		// haproxy that observe did not take as the proxy (its config elsewhere, or proxy: nginx).
		{name: "haproxy", other: []string{"/usr/local/etc/haproxy/haproxy.cfg", "haproxy.service active, enabled"},
			refusal: "w1 has no nginx config at /etc/nginx/nginx.conf but haproxy (/usr/local/etc/haproxy/haproxy.cfg, haproxy.service active, enabled), not read as its apiserver proxy", wayOut: "set proxy: haproxy for w1"},
		{name: "haproxy config missing", kind: "haproxy", path: "/etc/haproxy/haproxy.cfg",
			refusal: "the inventory says w1's proxy is haproxy, but there is no haproxy config at /etc/haproxy/haproxy.cfg (found: nothing else)", code: "proxy-missing", wayOut: "set haproxy_config for w1"},
		{name: "nothing", warning: "w1: no nginx config at /etc/nginx/nginx.conf, so it is treated as a host without an apiserver proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := seed003.facts(t)
			delete(f.LB, "w1")
			path := "/etc/nginx/nginx.conf"
			if tc.path != "" {
				path = tc.path
			}
			f.ProxyMissing = map[string]ProxyMissing{"w1": {Path: path, Kind: tc.kind, Other: tc.other}}
			p := Build(f, Target{Remove: []string{"m3"}}, "test", observedAt)
			var reasons []string
			for _, r := range p.Refusals {
				reasons = append(reasons, r.Code+": "+r.Reason+" / "+r.WayOut)
			}
			got := strings.Join(reasons, "\n")
			if tc.refusal != "" {
				code := "proxy-unsupported"
				if tc.code != "" {
					code = tc.code
				}
				if !strings.Contains(got, code+": "+tc.refusal) || !strings.Contains(got, tc.wayOut) {
					t.Errorf("refusals:\n%s\nwant proxy-unsupported naming %q and the way out", got, tc.refusal)
				}
				return
			}
			if got != "" {
				t.Errorf("refused: %s", got)
			}
			if !strings.Contains(strings.Join(p.Warnings, "\n"), tc.warning) {
				t.Errorf("warnings %q lack %q", p.Warnings, tc.warning)
			}
		})
	}
	// A leaving host's missing proxy is not the shrink's business.
	f := seed003.facts(t)
	f.ProxyMissing = map[string]ProxyMissing{"m3": {Path: "/etc/nginx/nginx.conf", Other: []string{"haproxy.service active, enabled"}}}
	if p := Build(f, Target{Remove: []string{"m3"}}, "test", observedAt); len(p.Refusals) > 0 {
		t.Errorf("a leaving host's haproxy refused the plan: %+v", p.Refusals)
	}
}

// A leaving host running keepalived is refused: the VIP may be on it; an offline one is not
// (it is down already), nor a staying one.
func TestKeepalivedOnLeaving(t *testing.T) {
	f := seed003.facts(t)
	f.Keepalived = map[string][]string{"m3": {"/etc/keepalived/keepalived.conf", "keepalived.service active, enabled"}}
	p := Build(f, Target{Remove: []string{"m3"}}, "test", observedAt)
	if len(p.Refusals) != 1 || p.Refusals[0].Code != "keepalived-on-leaving" ||
		!strings.Contains(p.Refusals[0].Reason, "m3 runs keepalived (/etc/keepalived/keepalived.conf, keepalived.service active, enabled)") ||
		!strings.Contains(p.Refusals[0].WayOut, "move the VIP off m3") {
		t.Errorf("refusals: %+v", p.Refusals)
	}
	if p := Build(f, Target{Remove: []string{"m2"}}, "test", observedAt); len(p.Refusals) != 0 {
		t.Errorf("keepalived on a staying host refused the plan: %+v", p.Refusals)
	}
}
