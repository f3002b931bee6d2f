package runner

import (
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/plan"
)

// The etcd executors' checks that need no etcd: their postconditions from the unit alone, and
// their refusals when etcd cannot be asked (nothing is stopped on a guess).
func TestEtcdExecutorsWithoutEtcd(t *testing.T) {
	m3 := hosttest.New("m3")
	m3.SetUnit("etcd.service", unitRunning)
	r := hostRun(hostsOnly{"m3": m3}, &plan.Plan{})

	stop := mkStep(plan.KindStopEtcd, "m3", plan.StopEtcdParams{Unit: "etcd.service", Endpoint: "https://192.0.2.3:2379", Address: "192.0.2.3"})
	for _, c := range []struct {
		st   host.UnitStatus
		done bool
	}{
		{unitRunning, false},
		{host.UnitStatus{ActiveState: "inactive", UnitFileState: "enabled"}, false},
		{host.UnitStatus{ActiveState: "inactive", UnitFileState: "disabled"}, true},
		{host.UnitStatus{ActiveState: "failed", UnitFileState: "masked"}, true},
	} {
		m3.SetUnit("etcd.service", c.st)
		if got := doneOf(t, r, stop); got != c.done {
			t.Errorf("etcd/stop done with %s/%s: %v, want %v", c.st.ActiveState, c.st.UnitFileState, got, c.done)
		}
	}
	m3.SetUnit("etcd.service", unitRunning)
	if _, err := apply(t, r, stop); err == nil || !strings.Contains(err.Error(), "no etcd") {
		t.Errorf("stop with etcd unreachable: %v", err)
	}
	if u := m3.Unit("etcd.service"); u.ActiveState != "active" || len(m3.Log()) != 0 {
		t.Errorf("stopped without proof: %+v, %v", u, m3.Log())
	}

	snap := mkStep(plan.KindSnapshot, "", nil)
	if doneOf(t, r, snap) {
		t.Error("snapshot done without one taken")
	}
	if _, err := apply(t, r, snap); err == nil {
		t.Error("snapshot without etcd succeeded")
	}
	rm := mkStep(plan.KindRemoveMember, "m3", plan.RemoveMemberParams{MemberID: "not-hex", Member: "m3"})
	if _, err := r.executor(rm); err == nil || !strings.Contains(err.Error(), "member_id") {
		t.Errorf("malformed member ID: %v", err)
	}
	ic := mkStep(plan.KindInitialCluster, "m9", plan.InitialClusterParams{Unit: "etcd.service"})
	if _, err := apply(t, r, ic); err == nil || !strings.Contains(err.Error(), "m9") {
		t.Errorf("initial-cluster on an unknown host: %v", err)
	}
}
