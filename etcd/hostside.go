package etcd

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/unitfile"
)

// ErrFileDrift means a file no longer holds the content a planned change was computed from.
var ErrFileDrift = errors.New("file changed since the plan")

// StopAndDisable stops and disables etcd on a removed member's host, so systemd neither
// restarts it into a crash loop (3.4/3.5) nor starts it at boot, and confirms both. A unit that
// is already stopped and disabled is left as it is.
func StopAndDisable(ctx context.Context, h host.Host, unit string) error {
	unit = unitfile.NormalizeName(unit)
	sd, err := h.Systemd(ctx)
	if err != nil {
		return fmt.Errorf("stop %s on %s: %w", unit, h.Name(), err)
	}
	defer sd.Close()
	st, err := sd.Status(ctx, unit)
	if err != nil {
		return fmt.Errorf("stop %s on %s: %w", unit, h.Name(), err)
	}
	if st.LoadState == "not-found" {
		return fmt.Errorf("stop %s on %s: %w", unit, h.Name(), unitfile.ErrUnitNotFound)
	}
	if !stopped(st.ActiveState) {
		if err := sd.Stop(ctx, unit); err != nil {
			return fmt.Errorf("stop %s on %s: %w", unit, h.Name(), err)
		}
	}
	if !disabled(st.UnitFileState) {
		if err := sd.Disable(ctx, unit); err != nil {
			return fmt.Errorf("disable %s on %s: %w", unit, h.Name(), err)
		}
	}
	st, err = sd.Status(ctx, unit)
	if err != nil {
		return fmt.Errorf("confirm %s stopped on %s: %w", unit, h.Name(), err)
	}
	if !stopped(st.ActiveState) || !disabled(st.UnitFileState) {
		return fmt.Errorf("%s on %s is %s/%s and %q after stop and disable", unit, h.Name(), st.ActiveState, st.SubState, st.UnitFileState)
	}
	return nil
}

func stopped(active string) bool { return active == "inactive" || active == "failed" }

// disabled accepts static: such a unit has no [Install] section, so nothing enables it.
func disabled(state string) bool {
	return state == "disabled" || state == "masked" || state == "static"
}

// envInitialCluster matches etcd's own environment form of --initial-cluster in an
// EnvironmentFile line: etcd reads ETCD_<FLAG> itself, so it need not appear in ExecStart.
var envInitialCluster = regexp.MustCompile(`(?m)^[ \t]*(?:export[ \t]+)?ETCD_INITIAL_CLUSTER[ \t]*=[ \t]*(?:"([^"\n]*)"|'([^'\n]*)'|([^\s#"']*))[ \t]*$`)
var envInitialClusterState = regexp.MustCompile(`(?m)^[ \t]*(?:export[ \t]+)?ETCD_INITIAL_CLUSTER_STATE[ \t]*=[ \t]*(?:"([^"\n]*)"|'([^'\n]*)'|([^\s#"']*))[ \t]*$`)

// PlanSurvivorUnit computes the rewrite of a surviving member's unit so that a later restart
// is correct: --initial-cluster set to initialCluster and --initial-cluster-state to existing,
// wherever the deployment put them (the ExecStart line, a drop-in, a variable of an
// EnvironmentFile, etcd's own ETCD_INITIAL_CLUSTER variables, or the keys of its
// --config-file YAML: unitfile reads all of them as the unit's flags). Both flags are ignored
// while the data dir exists; the rewrite matters when it is ever rebuilt. No change is
// returned when the unit already says so.
func PlanSurvivorUnit(u *unitfile.Unit, hostName, initialCluster string) ([]host.FileChange, error) {
	if err := unitfile.SafeValue(initialCluster); err != nil {
		return nil, fmt.Errorf("unit %s on %s: --initial-cluster: %w", u.Name, hostName, err)
	}
	values := map[string]string{}
	if _, ok := u.Flag("--initial-cluster"); ok {
		values["--initial-cluster"] = initialCluster
	}
	if _, ok := u.Flag("--initial-cluster-state"); ok {
		values["--initial-cluster-state"] = "existing"
	}
	if len(values) > 0 {
		changes, err := u.SetFlags(hostName, values)
		if err != nil {
			return nil, fmt.Errorf("on %s: %w", hostName, err)
		}
		return changes, nil
	}
	return planEnvFile(u, hostName, initialCluster)
}

// planEnvFile edits ETCD_INITIAL_CLUSTER(_STATE) in the one EnvironmentFile that sets them,
// for a unit whose ExecStart is not etcd itself (a wrapper script) so unitfile does not know
// the variables are etcd's flags.
func planEnvFile(u *unitfile.Unit, hostName, initialCluster string) ([]host.FileChange, error) {
	var found []string
	for _, ef := range u.EnvironmentFiles {
		if c, ok := u.Files[ef.Path]; ok && envInitialCluster.MatchString(c) {
			found = append(found, ef.Path)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("unit %s on %s: --initial-cluster: %w (neither in ExecStart nor as ETCD_INITIAL_CLUSTER in an EnvironmentFile)",
			u.Name, hostName, unitfile.ErrFlagNotFound)
	case 1:
	default:
		return nil, fmt.Errorf("unit %s on %s: ETCD_INITIAL_CLUSTER is set in %s: %w", u.Name, hostName, strings.Join(found, ", "), unitfile.ErrFlagRepeated)
	}
	path := found[0]
	before := u.Files[path]
	after, err := replaceEnv(envInitialCluster, before, initialCluster)
	if err != nil {
		return nil, fmt.Errorf("unit %s on %s: %s: ETCD_INITIAL_CLUSTER: %w", u.Name, hostName, path, err)
	}
	if envInitialClusterState.MatchString(after) {
		if after, err = replaceEnv(envInitialClusterState, after, "existing"); err != nil {
			return nil, fmt.Errorf("unit %s on %s: %s: ETCD_INITIAL_CLUSTER_STATE: %w", u.Name, hostName, path, err)
		}
	}
	if after == before {
		return nil, nil
	}
	return []host.FileChange{{Host: hostName, Path: path, Before: before, After: after}}, nil
}

// replaceEnv rewrites the value of the single line re matches, keeping its quotes.
func replaceEnv(re *regexp.Regexp, content, value string) (string, error) {
	locs := re.FindAllStringSubmatchIndex(content, -1)
	if len(locs) != 1 {
		return "", fmt.Errorf("%w: set on %d lines", unitfile.ErrFlagRepeated, len(locs))
	}
	loc := locs[0]
	for g := 1; g <= 3; g++ {
		if s, e := loc[2*g], loc[2*g+1]; s >= 0 {
			return content[:s] + value + content[e:], nil
		}
	}
	return "", errors.New("no value found")
}

// ApplySurvivorUnit writes planned unit changes (each file atomically, with a backup) and
// reloads systemd; it never restarts etcd. A file that already holds its new content is
// skipped, so a rerun resumes; a file that holds neither the planned old nor the new content
// is refused with ErrFileDrift before anything is written.
func ApplySurvivorUnit(ctx context.Context, h host.Host, changes []host.FileChange) error {
	var todo []host.FileChange
	for _, c := range changes {
		cur, err := h.ReadFile(ctx, c.Path)
		if err != nil {
			return fmt.Errorf("rewrite %s on %s: %w", c.Path, h.Name(), err)
		}
		switch string(cur) {
		case c.After:
		case c.Before:
			todo = append(todo, c)
		default:
			return fmt.Errorf("rewrite %s on %s: %w", c.Path, h.Name(), ErrFileDrift)
		}
	}
	for _, c := range todo {
		if _, err := h.WriteFile(ctx, c.Path, []byte(c.After), host.WriteOptions{Backup: true}); err != nil {
			return fmt.Errorf("rewrite %s on %s: %w", c.Path, h.Name(), err)
		}
	}
	// Always reload: a crash between the write and the reload leaves nothing else to redo it.
	sd, err := h.Systemd(ctx)
	if err != nil {
		return fmt.Errorf("daemon-reload on %s: %w", h.Name(), err)
	}
	defer sd.Close()
	if err := sd.DaemonReload(ctx); err != nil {
		return fmt.Errorf("daemon-reload on %s: %w", h.Name(), err)
	}
	return nil
}

// RewriteSurvivorUnit reads the unit from the host, plans with PlanSurvivorUnit and applies
// with ApplySurvivorUnit. It returns the changes it made (none when the unit was already right).
func RewriteSurvivorUnit(ctx context.Context, h host.Host, unit, initialCluster string) ([]host.FileChange, error) {
	u, err := unitfile.Read(ctx, h, unit)
	if err != nil {
		return nil, err
	}
	changes, err := PlanSurvivorUnit(u, h.Name(), initialCluster)
	if err != nil {
		return nil, err
	}
	if err := ApplySurvivorUnit(ctx, h, changes); err != nil {
		return nil, err
	}
	return changes, nil
}
