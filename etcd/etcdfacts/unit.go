package etcdfacts

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/unitfile"
)

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
func PlanSurvivorUnit(u *unitfile.Unit, hostName, initialCluster string) ([]machine.FileChange, error) {
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
func planEnvFile(u *unitfile.Unit, hostName, initialCluster string) ([]machine.FileChange, error) {
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
	return []machine.FileChange{{Host: hostName, Path: path, Before: before, After: after}}, nil
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
