package host_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/testenv"
)

// TestLabSystemd drives a real systemd over SSH and D-Bus (systemd-stdio-bridge), on a lab
// master reached through the lab's network namespace.
func TestLabSystemd(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Masters: 1, Workers: 1})
	inv, err := inventory.Load(lab.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	m := inv.HostsWithRole(inventory.RoleMaster)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	h, err := host.Connect(ctx, inv, m.Name, lab.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	res, err := h.Run(ctx, "hostname")
	if err != nil || strings.TrimSpace(string(res.Stdout)) == "" {
		t.Fatalf("hostname on %s: %q %v", m.Name, res.Stdout, err)
	}

	sd, err := h.Systemd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	if typ := fmt.Sprintf("%T", sd); typ != "*host.dbusSystemd" {
		t.Fatalf("Systemd on %s is %s, want D-Bus through systemd-stdio-bridge", m.Name, typ)
	}
	unit := m.Paths.SchedulerUnit + ".service"

	st, err := sd.Status(ctx, m.Paths.SchedulerUnit)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != unit || st.LoadState != "loaded" || st.ActiveState != "active" || st.SubState != "running" ||
		st.UnitFileState != "enabled" || !strings.HasSuffix(st.FragmentPath, "/"+unit) || st.MainPID <= 0 {
		t.Errorf("Status(%s) = %+v", unit, st)
	}
	// The systemctl fallback reads the same unit the same way.
	fb, err := host.NewSystemctl(h).Status(ctx, m.Paths.SchedulerUnit)
	if err != nil || fb.ActiveState != st.ActiveState || fb.UnitFileState != st.UnitFileState || fb.MainPID != st.MainPID || fb.FragmentPath != st.FragmentPath {
		t.Errorf("systemctl Status = %+v, %v\nD-Bus Status    = %+v", fb, err, st)
	}

	// Restart returns once the job is done: the unit runs again, under a new PID.
	if err := sd.Restart(ctx, unit); err != nil {
		t.Fatal(err)
	}
	after, err := sd.Status(ctx, unit)
	if err != nil || after.ActiveState != "active" || after.MainPID == st.MainPID || after.MainPID <= 0 {
		t.Errorf("after Restart: %+v %v (PID before %d)", after, err, st.MainPID)
	}

	if err := sd.Stop(ctx, unit); err != nil {
		t.Fatal(err)
	}
	if s, _ := sd.Status(ctx, unit); s.ActiveState != "inactive" || s.MainPID != 0 {
		t.Errorf("after Stop: %+v", s)
	}
	if err := sd.Start(ctx, unit); err != nil {
		t.Fatal(err)
	}
	if s, _ := sd.Status(ctx, unit); s.ActiveState != "active" {
		t.Errorf("after Start: %+v", s)
	}

	// Disable and Enable, checked through systemctl on the machine as well.
	if err := sd.Disable(ctx, unit); err != nil {
		t.Fatal(err)
	}
	if s, _ := sd.Status(ctx, unit); s.UnitFileState != "disabled" {
		t.Errorf("after Disable: UnitFileState %q", s.UnitFileState)
	}
	if out, _ := lab.Exec(ctx, m.Name, "systemctl", "is-enabled", unit); strings.TrimSpace(string(out)) != "disabled" {
		t.Errorf("systemctl is-enabled after Disable: %q", out)
	}
	if err := sd.Enable(ctx, unit); err != nil {
		t.Fatal(err)
	}
	if out, _ := lab.Exec(ctx, m.Name, "systemctl", "is-enabled", unit); strings.TrimSpace(string(out)) != "enabled" {
		t.Errorf("systemctl is-enabled after Enable: %q", out)
	}

	// DaemonReload picks up a drop-in written with WriteFile.
	dropIn := "/etc/systemd/system/" + unit + ".d/50-mastershrink-test.conf"
	if _, err := h.Run(ctx, "mkdir -p /etc/systemd/system/"+unit+".d"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteFile(ctx, dropIn, []byte("[Service]\nEnvironment=MASTERSHRINK_TEST=1\n"), host.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := sd.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := sd.Status(ctx, unit); !slices.Contains(s.DropInPaths, dropIn) {
		t.Errorf("after DaemonReload: DropInPaths %v, want %s", s.DropInPaths, dropIn)
	}
	if _, err := h.Run(ctx, "rm -rf /etc/systemd/system/"+unit+".d"); err != nil {
		t.Fatal(err)
	}
	if err := sd.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := h.ReadFile(ctx, dropIn); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(removed drop-in) = %q, %v", b, err)
	}

	// Reload keeps the process: the node proxy has an ExecReload.
	lb, err := sd.Status(ctx, m.Paths.NginxUnit)
	if err != nil {
		t.Fatal(err)
	}
	if lb.LoadState == "loaded" {
		if err := sd.Reload(ctx, m.Paths.NginxUnit); err != nil {
			t.Fatal(err)
		}
		if s, _ := sd.Status(ctx, m.Paths.NginxUnit); s.ActiveState != "active" || s.MainPID != lb.MainPID {
			t.Errorf("after Reload: %+v, want the same PID %d", s, lb.MainPID)
		}
	} else {
		t.Logf("%s has no %s: Reload not tried", m.Name, m.Paths.NginxUnit)
	}

	// A job on a unit that does not exist names the unit.
	if err := sd.Restart(ctx, "no-such-unit"); err == nil || !strings.Contains(err.Error(), "no-such-unit.service") {
		t.Errorf("Restart(no-such-unit) = %v", err)
	}
	// Reload of a unit without ExecReload is refused, never turned into a restart.
	if err := sd.Reload(ctx, unit); err == nil {
		t.Errorf("Reload(%s) without ExecReload succeeded", unit)
	}
}
