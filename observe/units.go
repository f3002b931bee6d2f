package observe

import (
	"context"
	"strings"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/unitfile"
)

// unitField pairs an inventory path field naming a unit with the program the unit runs.
type unitField struct {
	field, program string
	unit           func(inventory.Paths) string
}

var unitFields = []unitField{
	{"etcd_unit", "etcd", func(p inventory.Paths) string { return p.EtcdUnit }},
	{"apiserver_unit", "kube-apiserver", func(p inventory.Paths) string { return p.APIServerUnit }},
	{"controller_manager_unit", "kube-controller-manager", func(p inventory.Paths) string { return p.ControllerManagerUnit }},
	{"scheduler_unit", "kube-scheduler", func(p inventory.Paths) string { return p.SchedulerUnit }},
}

// discoverUnits looks, on a host where a unit the inventory names is not running, for the
// unit that runs its program instead: a preset that guessed the unit's name wrong (or a
// distribution's packaged etcd.service left inactive next to the cluster's own) must stop the
// plan naming the field to set, not plan around the wrong unit (a survivor left on its old
// etcd endpoints, a removed member's etcd never stopped). states maps the inventory fields
// whose unit is not running to its state there ("not-found", "inactive", ...).
func discoverUnits(ctx context.Context, h host.Host, ih *inventory.Host, states map[string]string) []plan.UnitMismatch {
	var programs []string
	for _, f := range unitFields {
		if _, ok := states[f.field]; ok {
			programs = append(programs, f.program)
		}
	}
	if len(programs) == 0 {
		return nil
	}
	// procps names the unit of each process; one command for every program asked about.
	res, err := h.Run(ctx, "ps -o unit=,comm= -C "+strings.Join(programs, ","))
	if err != nil && len(res.Stdout) == 0 {
		return nil // nothing runs them (ps exits 1), or no ps: nothing to tell
	}
	running := map[string]string{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasSuffix(f[0], ".service") {
			running[f[1]] = f[0]
		}
	}
	var out []plan.UnitMismatch
	for _, f := range unitFields {
		state, ok := states[f.field]
		if !ok {
			continue
		}
		want := unitfile.NormalizeName(f.unit(ih.Paths))
		if u, ok := running[f.program]; ok && u != want {
			out = append(out, plan.UnitMismatch{Field: f.field, Inventory: want, State: state, Program: f.program, Found: u})
		}
	}
	return out
}

// unitState says how a unit is not running: "not-found" for one systemd does not know.
func unitState(st host.UnitStatus) string {
	if st.LoadState == "not-found" {
		return "not-found"
	}
	return st.ActiveState
}
