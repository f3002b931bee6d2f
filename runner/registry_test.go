package runner

import (
	"testing"

	"github.com/mastershrink/mastershrink/plan"
)

// The registry and plan's table of kinds name the same kinds: a kind the planner can write
// has an executor, and no executor waits for a kind that no longer exists.
func TestEveryKindHasAnExecutor(t *testing.T) {
	inTable := map[string]bool{}
	for _, k := range plan.Kinds {
		inTable[k.Kind] = true
		if builders[k.Kind] == nil {
			t.Errorf("kind %s is in plan.Kinds but no exec_*.go registers an executor for it", k.Kind)
		}
	}
	for kind := range builders {
		if !inTable[kind] {
			t.Errorf("an executor is registered for %s, which plan.Kinds does not list", kind)
		}
	}
	r := &run{p: &plan.Plan{}}
	if _, err := r.executor(plan.Step{ID: "etcd/defrag", Kind: "etcd/defrag"}); err == nil {
		t.Error("a kind without an executor was accepted")
	}
	// A step whose params do not fit its kind's struct is refused before anything runs.
	st := plan.Step{ID: "nodes/drain/w1", Kind: plan.KindDrain, Params: map[string]string{"node": "w1", "grace": "0"}}
	if _, err := r.executor(st); err == nil {
		t.Error("a drain step with an unknown param was accepted")
	}
}
