package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/testenv"
)

func TestLabStatus(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "msstatus"})
	before := labState(t, lab)

	out, errOut, code := cli(t, lab, "status", "-i", lab.Inventory)
	t.Logf("mastershrink status\n%s\n%s", errOut, out)
	if code != exitOK {
		t.Fatalf("status exit %d, want 0", code)
	}
	out0 := out
	for _, want := range []string{"etcd: 3 members, 3 healthy, leader ", "apiservers: 3 of 3 ready", "disagreements with the inventory: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("status table lacks %q", want)
		}
	}

	out, errOut, code = cli(t, lab, "status", "-i", lab.Inventory, "-o", "json")
	if code != exitOK {
		t.Fatalf("status -o json exit %d\n%s", code, errOut)
	}
	var s observe.Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	healthy, leaders := 0, 0
	hosts := map[string]bool{}
	for _, m := range s.Members {
		if m.Healthy {
			healthy++
		}
		if m.Leader {
			leaders++
			if m.Name != s.Leader {
				t.Errorf("leader row %s, leader field %s", m.Name, s.Leader)
			}
		}
		// The lab names members by address (seed 003 does): each must map to its own master.
		if !strings.HasPrefix(m.Host, "m") || hosts[m.Host] {
			t.Errorf("member %s mapped to host %q, want a master of its own", m.Name, m.Host)
		}
		hosts[m.Host] = true
	}
	if !strings.Contains(out0, "leader "+s.Leader+" on "+s.LeaderHost) {
		t.Errorf("status table does not name the leader %s on %s", s.Leader, s.LeaderHost)
	}
	if len(s.Members) != 3 || healthy != 3 || leaders != 1 || s.Leader == "" {
		t.Errorf("members %d, healthy %d, leaders %d (%q): want 3, 3, 1", len(s.Members), healthy, leaders, s.Leader)
	}
	ready := 0
	for _, a := range s.APIServers {
		if a.Ready && a.Unit == "active" {
			ready++
		}
	}
	if ready != 3 {
		t.Errorf("%d ready apiservers, want 3: %+v", ready, s.APIServers)
	}
	// Every node's proxy sends to the three masters, none marked down.
	proxies := map[string]bool{}
	for _, p := range s.Proxies {
		var masters []string
		for _, u := range p.Upstreams {
			for _, sv := range u.Servers {
				if !sv.Down {
					masters = append(masters, sv.Master)
				}
			}
		}
		if strings.Join(masters, ",") != "m1,m2,m3" {
			t.Errorf("proxy on %s sends to %q, want m1,m2,m3", p.Host, masters)
		}
		proxies[p.Host] = true
	}
	for _, m := range lab.Machines {
		if !proxies[m.Name] {
			t.Errorf("no proxy row for %s", m.Name)
		}
	}
	if len(s.Certs) == 0 || len(s.Disagreements) != 0 || len(s.Leftovers) != 0 {
		t.Errorf("certs %d, disagreements %q, leftovers %q", len(s.Certs), s.Disagreements, s.Leftovers)
	}

	after := labState(t, lab)
	for name, b := range before {
		if after[name] != b {
			t.Errorf("status changed %s:\nbefore:\n%s\nafter:\n%s", name, b, after[name])
		}
	}
	if !strings.Contains(out0, "problems: none") {
		t.Errorf("healthy cluster: the table does not end with problems: none")
	}

	// For cron: a stopped etcd member and apiserver make status exit 5, naming both.
	if out, err := lab.Exec(t.Context(), "m3", "systemctl", "stop", "kube-apiserver", "kube-etcd"); err != nil {
		t.Fatalf("stop m3's etcd and apiserver: %v\n%s", err, out)
	}
	out, errOut, code = cli(t, lab, "status", "-i", lab.Inventory)
	t.Logf("mastershrink status, m3 stopped\n%s\n%s", errOut, out)
	if code != exitCheck || !strings.Contains(errOut, "the cluster is not healthy") {
		t.Errorf("status with m3 stopped: exit %d, want %d", code, exitCheck)
	}
	for _, want := range []string{"apiserver on m3 (10.88.0.13:6443): unit inactive", "etcd member 10.88.0.13 ("} {
		if !strings.Contains(out, "  - "+want) {
			t.Errorf("the problems do not list %q", want)
		}
	}
}
