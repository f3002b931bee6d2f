package runner

import (
	"errors"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/plan"
)

// components/retire proves on the hosts, when it runs, that no staying proxy still routes to
// the apiserver it stops: with w1's lb/update in the plan but not on w1 (the journal may say
// otherwise), it refuses and stops nothing; once the rewrite is there, it retires.
func TestRetireRefusesWhileAProxyStillRoutes(t *testing.T) {
	f := newCPFixture(t)
	m3, w1 := f.fc.hosts["m3"], f.fc.hosts["w1"]
	units := []string{"kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service"}
	for _, u := range units {
		m3.SetUnit(u, unitRunning)
	}
	lbStep := f.lbUpdate(t)
	retire := mkStep(plan.KindRetire, "m3", plan.RetireParams{Units: units})
	f.p.Steps = []plan.Step{lbStep, retire}

	_, err := apply(t, f.r, retire)
	if !errors.Is(err, ErrStillRouted) || !strings.Contains(err.Error(), "w1") || !strings.Contains(err.Error(), lbStep.ID) {
		t.Fatalf("retire with w1's proxy still routing to m3: %v", err)
	}
	for _, u := range units {
		if st := m3.Unit(u); st.ActiveState != "active" {
			t.Errorf("%s was stopped although the refusal says nothing was: %+v", u, st)
		}
	}

	w1.SetFile(lbStep.Files[0].Path, lbStep.Files[0].After)
	if _, err := apply(t, f.r, retire); err != nil {
		t.Fatalf("retire with every proxy rewritten: %v", err)
	}
	if !doneOf(t, f.r, retire) {
		t.Error("not done after it ran")
	}
}
