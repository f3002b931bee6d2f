package runner

import (
	"errors"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/plan"
)

// The selections an operator reaches for first must never stop a voting member.
func TestPrerequisitesRefuseUnsafeSelections(t *testing.T) {
	p := seedPlan(t)
	cases := []struct {
		only, skip []string
		ended      []string
		missing    string // "" when the selection is allowed
	}{
		{skip: []string{"etcd/remove-member"}, missing: "etcd/stop/m2 needs etcd/remove-member/m2"},
		{only: []string{"etcd/stop"}, missing: "etcd/stop/m2 needs etcd/remove-member/m2"},
		{only: []string{"etcd/remove-member"}, missing: "needs etcd/snapshot"},
		{only: []string{"components/retire"}, missing: "components/retire/m2 needs lb/update/m1"},
		// Ended in an earlier run of the plan: the selection may go on from there.
		{only: []string{"etcd/stop"}, ended: []string{"etcd/remove-member/m2", "etcd/remove-member/m3"}},
		{only: []string{"etcd/snapshot", "etcd/move-leader", "etcd/remove-member", "etcd/stop"}},
		{skip: []string{"certs"}},
		{},
	}
	for _, tc := range cases {
		sel, err := Select(p, tc.only, tc.skip)
		if err != nil {
			t.Fatal(err)
		}
		ended := map[string]bool{}
		for _, id := range tc.ended {
			ended[id] = true
		}
		err = sel.CheckPrerequisites(p, ended)
		if tc.missing == "" {
			if err != nil {
				t.Errorf("only %v skip %v ended %v: %v", tc.only, tc.skip, tc.ended, err)
			}
			continue
		}
		if !errors.Is(err, ErrPrerequisite) || !strings.Contains(err.Error(), tc.missing) {
			t.Errorf("only %v skip %v: err = %v, want ErrPrerequisite with %q", tc.only, tc.skip, err, tc.missing)
		}
	}
}

func TestMemberAt(t *testing.T) {
	peer := []string{"https://10.0.0.2:2380"}
	members := []etcd.Member{{ID: 1, Name: "a", PeerURLs: []string{"https://10.0.0.1:2380"}}, {ID: 2, Name: "b", PeerURLs: peer}}
	if present, err := memberAt(members, 2, peer); !present || err != nil {
		t.Errorf("planned member there: %v, %v", present, err)
	}
	if present, err := memberAt(members[:1], 2, peer); present || err != nil {
		t.Errorf("planned member gone, nobody at its address: %v, %v (want done)", present, err)
	}
	replaced := append(members[:1:1], etcd.Member{ID: 9, Name: "b", PeerURLs: peer})
	if _, err := memberAt(replaced, 2, peer); !errors.Is(err, plan.ErrStalePlan) || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("member replaced at the planned address: %v, want a stale-plan refusal naming it", err)
	}
	moved := []etcd.Member{{ID: 2, Name: "b", PeerURLs: []string{"https://10.0.0.3:2380"}}}
	if _, err := memberAt(moved, 2, peer); !errors.Is(err, plan.ErrStalePlan) {
		t.Errorf("member with other peer URLs: %v, want a stale-plan refusal", err)
	}
}

func TestProvenDead(t *testing.T) {
	me := Holder{MachineID: "m", BootID: "b", PIDNamespace: "pid:[1]", PID: 1}
	dead := Holder{MachineID: "m", BootID: "b", PIDNamespace: "pid:[1]", PID: 999999999}
	if !provenDead(me, dead) {
		t.Error("a gone process of this machine, boot and PID namespace is not proven dead")
	}
	for _, h := range []Holder{
		{MachineID: "m", BootID: "b", PIDNamespace: "pid:[2]", PID: 999999999}, // another container
		{MachineID: "m", BootID: "other", PIDNamespace: "pid:[1]", PID: 999999999},
		{MachineID: "m", PID: 999999999}, // an older holder that did not say
		{MachineID: "other", BootID: "b", PIDNamespace: "pid:[1]", PID: 999999999},
	} {
		if provenDead(me, h) {
			t.Errorf("holder %+v is taken for dead", h)
		}
	}
}
