package runner

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

// outcome is what an executor did.
type outcome struct {
	note     string
	already  bool
	backups  map[string]string
	snapshot *Snapshot
	changes  []Change
	warnings []string
}

// executor is one step's postcondition and action. done may be nil: the action then finds out
// itself what is left (and says already when nothing was).
type executor struct {
	phase string
	done  func(ctx context.Context) (bool, string, error)
	apply func(ctx context.Context) (outcome, error)
}

// builder makes the executor of one step.
type builder func(r *run, st plan.Step) (executor, error)

// builders is the registry of executors, one per kind. Each family's file (exec_*.go)
// registers its kinds next to their executors, so a new kind touches three files: plan's
// kinds.go (the table), its planner (build_*.go, with its params struct) and its executor.
// TestEveryKindHasAnExecutor holds the registry to the table.
var builders = map[string]builder{}

func register(kind string, b builder) bool {
	if _, dup := builders[kind]; dup {
		panic("runner: two executors for kind " + kind)
	}
	builders[kind] = b
	return true
}

func (r *run) executor(st plan.Step) (executor, error) {
	b, ok := builders[st.Kind]
	if !ok {
		return executor{}, fmt.Errorf("unknown step kind %q: this mastershrink cannot apply it", st.Kind)
	}
	return b(r, st)
}

// untyped registers an executor of a kind without params.
func untyped(build func(r *run, st plan.Step) executor) builder {
	return func(r *run, st plan.Step) (executor, error) { return build(r, st), nil }
}

// typed builds the executor of st from its params, decoded into the kind's struct (plan's
// build_*.go): planner and executor name the same fields, which the compiler checks.
func typed[T plan.Params](build func(r *run, st plan.Step, p T) executor) builder {
	return typedOrErr(func(r *run, st plan.Step, p T) (executor, error) { return build(r, st, p), nil })
}

// typedOrErr is typed for executors whose params can still be malformed (IDs to parse).
func typedOrErr[T plan.Params](build func(r *run, st plan.Step, p T) (executor, error)) builder {
	return func(r *run, st plan.Step) (executor, error) {
		p, err := plan.DecodeParams[T](st)
		if err != nil {
			return executor{}, err
		}
		return build(r, st, p)
	}
}

// detail is where executors write their own progress: the step lines only, unless verbose.
func (r *run) detail() io.Writer {
	if r.opts.Verbose {
		return indent{r.prog}
	}
	return nil
}

// host connects to a host and returns, with it, the host as the plan knows it: its address,
// roles and paths are the plan's facts, not the inventory's now, so an inventory edited since
// the review cannot change what an approved step does (the inventory only says how to reach it).
func (r *run) host(ctx context.Context, name string) (host.Host, *inventory.Host, error) {
	ih, ok := r.planned(name)
	if !ok {
		return nil, nil, fmt.Errorf("host %s is not in the inventory %s", name, r.c.Inventory().File)
	}
	h, err := r.c.Host(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return h, ih, nil
}

// planned is an inventory host as the plan knows it (see host), without connecting.
func (r *run) planned(name string) (*inventory.Host, bool) {
	ih, ok := r.c.Inventory().Host(name)
	if !ok {
		return nil, false
	}
	if fh, ok := r.p.Facts.Host(name); ok {
		p := *ih
		p.Address, p.Roles, p.Paths = fh.Address, fh.Roles, fh.Paths
		return &p, true
	}
	return ih, true
}

// plannedHosts are the inventory's hosts as the plan knows them, in inventory order.
func (r *run) plannedHosts() []*inventory.Host {
	var out []*inventory.Host
	for _, ih := range r.c.Inventory().Hosts {
		if p, ok := r.planned(ih.Name); ok {
			out = append(out, p)
		}
	}
	return out
}

func (r *run) leaving(name string) bool { return slices.Contains(r.p.Target.Remove, name) }
func (r *run) offline(name string) bool { return slices.Contains(r.p.Target.Offline, name) }

// survivingMasters are the masters that stay, in inventory order.
func (r *run) survivingMasters() []*inventory.Host {
	var out []*inventory.Host
	for _, ih := range r.plannedHosts() {
		if !ih.Has(inventory.RoleMaster) {
			continue
		}
		if !r.leaving(ih.Name) {
			out = append(out, ih)
		}
	}
	return out
}

// fileState says whether every planned file holds its new content ("after"), every one holds
// its old or new content ("before"), or some hold neither ("drift").
func fileState(ctx context.Context, h host.Host, files []host.FileChange) (string, error) {
	state, _, err := readFileState(ctx, h, files)
	return state, err
}

// readFileState is fileState with what it read, by path (lb.NodeTarget.Current).
func readFileState(ctx context.Context, h host.Host, files []host.FileChange) (string, map[string]string, error) {
	state := "after"
	read := make(map[string]string, len(files))
	for _, f := range files {
		cur, err := h.ReadFile(ctx, f.Path)
		if err != nil {
			return "", nil, fmt.Errorf("read %s:%s: %w", h.Name(), f.Path, err)
		}
		read[f.Path] = string(cur)
		switch string(cur) {
		case f.After:
		case f.Before:
			state = "before"
		default:
			return "drift", read, nil
		}
	}
	return state, read, nil
}

func fileChanges(hostName string, files []host.FileChange, backups map[string]string, only func(path string) bool) []Change {
	var out []Change
	for _, f := range files {
		if only != nil && !only(f.Path) {
			continue
		}
		out = append(out, Change{Host: hostName, File: f.Path, Action: "rewrite",
			BeforeSHA256: sha([]byte(f.Before)), AfterSHA256: sha([]byte(f.After)), Backup: backups[f.Path]})
	}
	return out
}

func hostBackups(hostName string, backups map[string]string) map[string]string {
	if len(backups) == 0 {
		return nil
	}
	out := map[string]string{}
	for p, b := range backups {
		out[hostName+":"+p] = b
	}
	return out
}

// restartedSince says whether the unit's main process started after the last change of paths,
// that is whether it runs with what they now hold (one-second resolution).
func restartedSince(ctx context.Context, h host.Host, unit string, paths []string) (bool, error) {
	sd, err := h.Systemd(ctx)
	if err != nil {
		return false, err
	}
	defer sd.Close()
	st, err := sd.Status(ctx, unit)
	if err != nil {
		return false, err
	}
	if st.ActiveState != "active" || st.MainPID <= 0 {
		return false, nil
	}
	out, now, mtime, err := machine.AfterChange(ctx, h, fmt.Sprintf("ps -o etimes= -p %d", st.MainPID), paths)
	if err != nil {
		return false, fmt.Errorf("restart check of %s: %w", unit, err)
	}
	age, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return false, fmt.Errorf("restart check of %s on %s: ps gave no age for its process %d: %q", unit, h.Name(), st.MainPID, out)
	}
	return now-age >= mtime, nil
}
