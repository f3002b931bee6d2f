package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mastershrink/mastershrink/plan"
)

// The bad inputs of the safety work: selections that would stop a voting member, plans of
// kinds this binary does not know, and flags out of range. Each exits non-zero with one
// error line naming the problem and the way out, prints nothing on stdout, and writes
// nothing: every refusal comes before any host is dialled (the inventory's host has no sshd).
func TestBadInputApplySafety(t *testing.T) {
	inv := writeInventory(t, goodInventory)
	dir := filepath.Dir(inv)
	good := writePlan(t)
	planDir := filepath.Dir(good)
	edit := func(name string, change func(p *plan.Plan)) string {
		data, _ := os.ReadFile(good)
		var p plan.Plan
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatal(err)
		}
		change(&p)
		out, err := plan.Encode(&p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(planDir, name)
		os.WriteFile(path, out, 0o600)
		return path
	}
	unknownKind := edit("unknown-kind.json", func(p *plan.Plan) { p.Steps[1].Kind = "etcd/defrag"; p.Steps[1].ID = "etcd/defrag" })
	wrongID := edit("wrong-id.json", func(p *plan.Plan) { p.Steps[1].ID = "nodes/cleanup/m1" })
	otherCluster := edit("other-cluster.json", func(p *plan.Plan) { p.Cluster = "prod" })
	refused := edit("refused.json", func(p *plan.Plan) {
		p.Steps = nil
		p.Refusals = []plan.Refusal{{Code: "quorum-at-risk", Reason: "after removing m3, 1 healthy of 2 members would be below quorum 2", WayOut: "restore the unhealthy members first"}}
	})
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"skip the removals", []string{"apply", good, "-i", inv, "--skip", "etcd/remove-member"}, exitRefused,
			[]string{"etcd/stop/m2 needs etcd/remove-member/m2", "stopping a member that was not removed"}},
		{"only the stops", []string{"apply", good, "-i", inv, "--only", "etcd/stop"}, exitRefused, []string{"etcd/stop/m2 needs etcd/remove-member/m2", "select etcd/remove-member/m2 too"}},
		{"skip the snapshot", []string{"apply", good, "-i", inv, "--skip", "etcd/snapshot"}, exitRefused, []string{"needs etcd/snapshot", "verified snapshot"}},
		{"only the removals", []string{"apply", good, "-i", inv, "--only", "etcd/remove-member/m2"}, exitRefused, []string{"etcd/remove-member/m2 needs etcd/snapshot"}},
		{"only a retire", []string{"apply", good, "-i", inv, "--only", "components/retire/m2"}, exitRefused, []string{"components/retire/m2 needs lb/update/m1", "proxies"}},
		{"skip the proxies", []string{"apply", good, "-i", inv, "--skip", "lb/update"}, exitRefused, []string{"needs lb/update/m1"}},
		{"unknown kind", []string{"apply", unknownKind, "-i", inv}, exitRefused, []string{`kind "etcd/defrag"`, "make the plan again"}},
		{"ID of another kind", []string{"apply", wrongID, "-i", inv}, exitRefused, []string{"step nodes/cleanup/m1 has kind etcd/snapshot", "make the plan again"}},
		{"plan of another cluster", []string{"apply", otherCluster, "-i", inv}, exitRefused, []string{`cluster "prod"`, `"t"`}},
		{"refused plan", []string{"apply", refused, "-i", inv}, exitRefused, []string{"refused when it was made", "quorum"}},
		{"plan file is a folder", []string{"apply", planDir, "-i", inv}, exitError, []string{"read plan", "is a directory"}},
		{"plan file missing", []string{"apply", filepath.Join(planDir, "none.json"), "-i", inv}, exitError, []string{"read plan", "no such file"}},
		{"snapshot age not a duration", []string{"apply", good, "-i", inv, "--snapshot-max-age", "soon"}, exitUsage, []string{"snapshot-max-age", "soon"}},
		{"plan file and --wipe-leaving", []string{"apply", good, "-i", inv, "--wipe-leaving", "move"}, exitUsage, []string{"already says what to remove", "--wipe-leaving"}},
		{"plan --wipe-leaving shred", []string{"plan", "-i", inv, "--remove", "m1", "--wipe-leaving", "shred"}, exitUsage, []string{`--wipe-leaving "shred"`, "move or remove"}},
		{"apply --lb-mode sideways", []string{"apply", "-i", inv, "--remove", "m1", "--lb-mode", "sideways", "--yes"}, exitUsage, []string{`--lb-mode "sideways"`, "down or remove"}},
		{"empty --only", []string{"apply", good, "-i", inv, "--only", "certs/resign/x"}, exitUsage, []string{`--only "certs/resign/x" names no step`}},
		{"skip everything but verify", []string{"apply", good, "-i", inv, "--only", "verify/final,etcd/stop/m2"}, exitRefused, []string{"etcd/stop/m2 needs etcd/remove-member/m2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := treeState(t, dir) + treeState(t, planDir)
			out, errOut, code := run(t, tc.args...)
			problems := refusal(out, errOut, code, tc.want)
			if code != tc.code {
				problems = append(problems, fmt.Sprintf("exit %d, want %d; stderr:\n%s", code, tc.code, errOut))
			}
			verdict(t, "apply/"+tc.name, append(problems, unchanged(before, treeState(t, dir)+treeState(t, planDir))...))
		})
	}
}
