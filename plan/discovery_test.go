package plan

import (
	"strings"
	"testing"
)

// A unit the inventory names but systemd does not know, while its program runs under another
// unit there, is refused naming the field to set; the same host offline is not asked about.
func TestUnitMismatchRefused(t *testing.T) {
	f := seed003.facts(t)
	hu := f.Units["m1"]
	hu.Mismatches = []UnitMismatch{{Field: "etcd_unit", Inventory: "kube-etcd.service", State: "not-found", Program: "etcd", Found: "etcd.service"}}
	f.Units["m1"] = hu
	p := Build(f, Target{Remove: []string{"m3"}}, "test", observedAt)
	if len(p.Refusals) != 1 || p.Refusals[0].Code != "unit-mismatch" ||
		!strings.Contains(p.Refusals[0].Reason, "m1: the inventory's etcd_unit is kube-etcd.service, which systemd does not know there, but etcd runs there as etcd.service") ||
		!strings.Contains(p.Refusals[0].WayOut, "set etcd_unit: etcd.service for m1") {
		t.Errorf("refusals %+v", p.Refusals)
	}
}
