package etcd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/unitfile"
	"github.com/mastershrink/mastershrink/unitfile/unitfiletest"
)

// layoutHost copies testdata/<layout> to a temporary root, so tests may write to it.
// Systemd's answer names the unit's fragment, as a real host's would.
func layoutHost(t *testing.T, layout, unit, fragment string) *unitfiletest.DirHost {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(filepath.Join("testdata", layout))); err != nil {
		t.Fatal(err)
	}
	return &unitfiletest.DirHost{HostName: "master-1", Root: root, Statuses: map[string]host.UnitStatus{
		unit: {LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled", FragmentPath: fragment},
	}}
}

// planSurvivor reads unit from h as a survivor's rewrite does and plans it for the initial
// cluster ic.
func planSurvivor(t *testing.T, h host.Host, unit, ic string) []host.FileChange {
	t.Helper()
	u, err := unitfile.Read(context.Background(), h, unit)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := etcd.PlanSurvivorUnit(u, h.Name(), ic)
	if err != nil {
		t.Fatal(err)
	}
	return changes
}

func TestPlanSurvivorUnitSeed003(t *testing.T) {
	h := layoutHost(t, "seed003", "kube-etcd.service", "/etc/systemd/system/kube-etcd.service")
	ctx := context.Background()
	const ic = "172.72.0.95=https://172.72.0.95:2380"
	changes := planSurvivor(t, h, "kube-etcd", ic)
	if len(changes) != 1 || changes[0].Path != "/etc/systemd/system/kube-etcd.service" || changes[0].Host != "master-1" {
		t.Fatalf("changes %+v", changes)
	}
	after := changes[0].After
	for _, want := range []string{"--initial-cluster=" + ic + " \\\n", "--initial-cluster-state=existing \\\n"} {
		if !strings.Contains(after, want) {
			t.Errorf("rewritten unit lacks %q:\n%s", want, after)
		}
	}
	if strings.Contains(after, "172.72.0.96") || strings.Contains(after, "=new") {
		t.Errorf("rewritten unit still names a removed member or state new:\n%s", after)
	}
	// Only those two lines differ.
	bl, al := strings.Split(changes[0].Before, "\n"), strings.Split(after, "\n")
	diff := 0
	for i := range bl {
		if bl[i] != al[i] {
			diff++
		}
	}
	if len(bl) != len(al) || diff != 2 {
		t.Errorf("%d lines changed (of %d/%d), want 2", diff, len(bl), len(al))
	}

	// Applying writes the file; the test host has no systemd, so the reload step reports it.
	err := etcd.ApplySurvivorUnit(ctx, h, changes)
	if !errors.Is(err, unitfiletest.ErrNotSupported) || !strings.Contains(err.Error(), "daemon-reload") {
		t.Fatalf("apply: %v", err)
	}
	got, _ := h.ReadFile(ctx, changes[0].Path)
	if string(got) != after {
		t.Fatal("unit not rewritten")
	}
	// Planning again on the rewritten unit: nothing to do.
	u, err := unitfile.Read(ctx, h, "kube-etcd")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := etcd.PlanSurvivorUnit(u, h.Name(), ic); err != nil || len(again) != 0 {
		t.Errorf("second plan: %+v, %v", again, err)
	}
}

func TestPlanSurvivorUnitEnvironmentFile(t *testing.T) {
	h := layoutHost(t, "debian", "etcd.service", "/lib/systemd/system/etcd.service")
	changes := planSurvivor(t, h, "etcd", "m1=https://10.88.0.11:2380")
	if len(changes) != 1 || changes[0].Path != "/etc/default/etcd" {
		t.Fatalf("changes %+v", changes)
	}
	after := changes[0].After
	for _, want := range []string{
		`ETCD_INITIAL_CLUSTER="m1=https://10.88.0.11:2380"` + "\n",
		"ETCD_INITIAL_CLUSTER_STATE=existing\n",
		"# The cluster as it was first bootstrapped.\n",
		`ETCD_INITIAL_CLUSTER_TOKEN="etcd-cluster"`,
	} {
		if !strings.Contains(after, want) {
			t.Errorf("rewritten file lacks %q:\n%s", want, after)
		}
	}
}

func TestApplySurvivorUnitRefusesDrift(t *testing.T) {
	h := layoutHost(t, "seed003", "kube-etcd.service", "/etc/systemd/system/kube-etcd.service")
	ctx := context.Background()
	path := "/etc/systemd/system/kube-etcd.service"
	cur, _ := h.ReadFile(ctx, path)
	change := host.FileChange{Host: h.Name(), Path: path, Before: string(cur) + "# planned from an older file\n", After: "x"}
	if err := etcd.ApplySurvivorUnit(ctx, h, []host.FileChange{change}); !errors.Is(err, etcd.ErrFileDrift) {
		t.Fatalf("got %v, want ErrFileDrift", err)
	}
	if now, _ := h.ReadFile(ctx, path); string(now) != string(cur) {
		t.Fatal("file changed by a refused rewrite")
	}
}

func TestStopAndDisableAlreadyDone(t *testing.T) {
	h := &unitfiletest.DirHost{HostName: "master-2", Root: t.TempDir(), Statuses: map[string]host.UnitStatus{
		"kube-etcd.service": {LoadState: "loaded", ActiveState: "inactive", SubState: "dead", UnitFileState: "disabled"},
		"etcd.service":      {LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled"},
	}}
	ctx := context.Background()
	// Nothing left to do: no systemd job is asked for (the test host would refuse one).
	if err := etcd.StopAndDisable(ctx, h, "kube-etcd"); err != nil {
		t.Fatalf("already stopped and disabled: %v", err)
	}
	if err := etcd.StopAndDisable(ctx, h, "etcd"); !errors.Is(err, unitfiletest.ErrNotSupported) {
		t.Fatalf("running unit: got %v, want the stop to be attempted", err)
	}
	if err := etcd.StopAndDisable(ctx, h, "nope"); !errors.Is(err, unitfile.ErrUnitNotFound) {
		t.Fatalf("missing unit: got %v", err)
	}
}

// The survivor rewrite lands where the value lives: the guide's etcd.conf variables, or the
// keys of etcd's --config-file, and nothing else in those files changes.
func TestPlanSurvivorUnitWhereTheValueLives(t *testing.T) {
	cases := []struct {
		layout, fragment, file string
		want                   []string // lines of the rewritten file
		removed                string
	}{
		{"envguide", "/usr/lib/systemd/system/etcd.service", "/opt/etcd/cfg/etcd.conf",
			[]string{`ETCD_INITIAL_CLUSTER="etcd-1=https://192.168.31.71:2380"`, `ETCD_INITIAL_CLUSTER_STATE="existing"`}, "192.168.31.72"},
		{"etcdyaml", "/etc/systemd/system/etcd.service", "/etc/etcd/etcd.config.yml",
			[]string{`initial-cluster: 'etcd-1=https://192.168.31.71:2380'`, `initial-cluster-state: 'existing'`}, "192.168.1.62"},
	}
	for _, c := range cases {
		t.Run(c.layout, func(t *testing.T) {
			h := layoutHost(t, c.layout, "etcd.service", c.fragment)
			ctx := context.Background()
			const ic = "etcd-1=https://192.168.31.71:2380"
			changes := planSurvivor(t, h, "etcd", ic)
			if len(changes) != 1 || changes[0].Path != c.file {
				t.Fatalf("changes %+v, want one change of %s", changes, c.file)
			}
			bl, al := strings.Split(changes[0].Before, "\n"), strings.Split(changes[0].After, "\n")
			if len(bl) != len(al) {
				t.Fatalf("line count %d -> %d", len(bl), len(al))
			}
			var changed []string
			for i := range bl {
				if bl[i] != al[i] {
					changed = append(changed, al[i])
				}
			}
			if strings.Join(changed, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("changed lines:\n%s\nwant:\n%s", strings.Join(changed, "\n"), strings.Join(c.want, "\n"))
			}
			if strings.Contains(changes[0].After, c.removed+":2380") {
				t.Errorf("%s still names %s", c.file, c.removed)
			}
			// Written and read back, the unit needs nothing more.
			if err := etcd.ApplySurvivorUnit(ctx, h, changes); !errors.Is(err, unitfiletest.ErrNotSupported) {
				t.Fatalf("apply: %v", err)
			}
			u, err := unitfile.Read(ctx, h, "etcd")
			if err != nil {
				t.Fatal(err)
			}
			if f, _ := u.Flag("--initial-cluster"); f.Value != ic {
				t.Errorf("after the rewrite --initial-cluster = %q", f.Value)
			}
			if again, err := etcd.PlanSurvivorUnit(u, h.Name(), ic); err != nil || len(again) != 0 {
				t.Errorf("second plan: %+v, %v", again, err)
			}
		})
	}
}
