package plan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/vip"
)

// keepalivedOn is the keepalived.conf of master i in a unicast VRRP group of three, m3 with
// the highest priority and the VIP.
func keepalivedOn(self int) vip.Observed {
	var peers []string
	for i := 1; i <= 3; i++ {
		if i != self {
			peers = append(peers, "        "+masterIP(i)+"\n")
		}
	}
	text := fmt.Sprintf("vrrp_instance VI_1 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority %d\n"+
		"    authentication {\n        auth_type PASS\n        auth_pass topsecret\n    }\n    unicast_src_ip %s\n"+
		"    unicast_peer {\n%s    }\n    virtual_ipaddress {\n        %s/24\n    }\n}\n", 100+10*(self-1), masterIP(self), strings.Join(peers, ""), testVIP)
	c, err := vip.Parse(text)
	if err != nil {
		panic(err)
	}
	o := vip.Observed{Path: vip.DefaultConfig, Text: text, Config: c, Active: true, Enabled: true}
	if self == 3 {
		o.Holds = []string{testVIP}
	}
	return o
}

const testVIP = "172.72.0.200"

func vrrpFacts(t *testing.T) Facts {
	f := seed003.facts(t)
	f.VRRP = map[string]vip.Observed{}
	for i := 1; i <= 3; i++ {
		f.VRRP[fmt.Sprintf("m%d", i)] = keepalivedOn(i)
	}
	return f
}

// The VIP on a leaving master moves once, straight to the staying one: the leaving backup
// stops first, the holder last, both before any apiserver or proxy there stops; the staying
// keepalived forgets its leaving peers only after that, and the plan never shows auth_pass.
func TestVIPMovesOffLeavingMasters(t *testing.T) {
	p := Build(vrrpFacts(t), Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %+v", p.Refusals)
	}
	pos := map[string]int{}
	for i, s := range p.Steps {
		pos[s.ID] = i
	}
	order := []string{"vip/release/m2", "vip/release/m3", "vip/update/m1", "apiserver/update/m1", "components/retire/m2"}
	for i := 1; i < len(order); i++ {
		a, oka := pos[order[i-1]]
		b, okb := pos[order[i]]
		if !oka || !okb || a > b {
			t.Fatalf("want %v in this order; steps: %v", order, ids(p))
		}
	}
	if _, ok := pos["vip/update/m2"]; ok {
		t.Errorf("a leaving host's keepalived config is rewritten")
	}
	rel := p.Steps[pos["vip/release/m3"]]
	if got := rel.Params["backups"]; got != "m1" {
		t.Errorf("backups = %q, want m1", got)
	}
	if d := strings.Join(rel.Details, "\n"); !strings.Contains(d, "m3 holds "+testVIP+" (priority 120); staying keepalived for it: m1 (priority 100)") {
		t.Errorf("details:\n%s", d)
	}
	up := p.Steps[pos["vip/update/m1"]]
	if len(up.Files) != 1 || strings.Contains(up.Files[0].After, masterIP(2)) || strings.Contains(up.Files[0].After, masterIP(3)) {
		t.Fatalf("m1's keepalived rewrite: %+v", up.Files)
	}
	for _, f := range up.Files {
		if strings.Contains(f.Before+f.After, "topsecret") || !strings.Contains(f.After, "auth_pass <redacted:sha256:") {
			t.Errorf("auth_pass not redacted:\n%s", f.After)
		}
	}
	checkOrder(t, p)
}

func TestVIPRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		edit       func(f *Facts)
	}{
		{"no staying keepalived", "vip-no-survivor", func(f *Facts) { o := f.VRRP["m1"]; o.Active = false; f.VRRP["m1"] = o }},
		{"include", "keepalived-include", func(f *Facts) {
			o := f.VRRP["m3"]
			o.Config.Includes = []string{"/etc/keepalived/conf.d/*.conf"}
			f.VRRP["m3"] = o
		}},
		{"unreadable", "keepalived-config", func(f *Facts) { f.VRRP["m3"] = vip.Observed{Error: "line 3: } without a block to close"} }},
		{"signs only", "keepalived-on-leaving", func(f *Facts) {
			delete(f.VRRP, "m3")
			f.Keepalived = map[string][]string{"m3": {"keepalived.service active, enabled"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := vrrpFacts(t)
			tc.edit(&f)
			p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
			for _, r := range p.Refusals {
				if r.Code == tc.code && r.WayOut != "" {
					return
				}
			}
			t.Errorf("want refusal %s, got %+v", tc.code, p.Refusals)
		})
	}
	// A stopped and disabled keepalived on a leaving host is no reason to wait for anything.
	f := vrrpFacts(t)
	o := f.VRRP["m3"]
	o.Active, o.Enabled, o.Holds = false, false, nil
	f.VRRP["m3"] = o
	p := Build(f, Target{Remove: []string{"m3"}}, "test", observedAt)
	for _, s := range p.Steps {
		if s.ID == "vip/release/m3" {
			t.Errorf("a stopped keepalived is released again")
		}
	}
}

// An LB host is neither retired nor drained: the refusal says so, not "use --drain".
func TestLBHostIsNotATarget(t *testing.T) {
	for _, target := range []Target{{Remove: []string{"lb1"}}, {Drain: []string{"lb1"}}} {
		f := seed003.facts(t)
		f.Hosts = append(f.Hosts, Host{Name: "lb1", Address: "172.72.0.91", Roles: []inventory.Role{inventory.RoleLB}, Reachable: true})
		p := Build(f, target, "test", observedAt)
		if len(p.Refusals) != 1 || p.Refusals[0].Code != "lb-host" || !strings.Contains(p.Refusals[0].WayOut, "keepalived pair") {
			t.Errorf("%+v: refusals %+v", target, p.Refusals)
		}
	}
}

// The release order follows the configured priorities, not who holds the VIP when the plan
// is made: a failover between plan and apply leaves the plan's steps as they were.
func TestVIPReleaseOrderIgnoresTheHolder(t *testing.T) {
	f := vrrpFacts(t)
	a := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	for _, name := range []string{"m2", "m3"} {
		o := f.VRRP[name]
		o.Holds = map[string][]string{"m2": {testVIP}, "m3": nil}[name]
		f.VRRP[name] = o
	}
	b := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if strings.Join(ids(a), " ") != strings.Join(ids(b), " ") || Fingerprint(a) != Fingerprint(b) {
		t.Errorf("a failover changed the plan:\n%v\n%v", ids(a), ids(b))
	}
}

// Apply can ask /readyz through the VIP only with a kubeconfig that names it: the plan says so
// when mastershrink's does not.
func TestVIPKubeconfigWarning(t *testing.T) {
	for server, want := range map[string]bool{"https://" + masterIP(1) + ":6443": true, "https://" + testVIP + ":8443": false} {
		f := vrrpFacts(t)
		f.KubeServer = server
		p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
		if got := strings.Contains(strings.Join(p.Warnings, "\n"), "does not use the VIP "+testVIP+":"); got != want {
			t.Errorf("kubeconfig %s: warned %v, want %v: %q", server, got, want, p.Warnings)
		}
	}
}
