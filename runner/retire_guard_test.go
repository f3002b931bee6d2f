package runner

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/plan"
)

// components/retire proves on the hosts, when it runs, that no staying proxy still routes to
// the apiserver it stops and that a survivor's apiserver is ready: with w1's lb/update in the
// plan but not on w1 (the journal may say otherwise), or with no survivor ready, it refuses
// and stops nothing; once both hold, it retires.
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
	// No survivor ready (m1 and m2 survive in the fixture): stopping m3 would take the API down.
	f.api["m1"].set(http.StatusInternalServerError)
	f.api["m2"].set(http.StatusInternalServerError)
	if _, err := apply(t, f.r, retire); !errors.Is(err, ErrNoSurvivorReady) {
		t.Fatalf("retire with no survivor ready: %v", err)
	}
	if st := m3.Unit(units[0]); st.ActiveState != "active" {
		t.Errorf("%s was stopped with no survivor ready", units[0])
	}
	f.api["m2"].set(http.StatusOK)
	if _, err := apply(t, f.r, retire); err != nil {
		t.Fatalf("retire with every proxy rewritten: %v", err)
	}
	if !doneOf(t, f.r, retire) {
		t.Error("not done after it ran")
	}
}
