package host

import (
	"context"
	"fmt"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// dbusSystemd talks to systemd's D-Bus API, on the local system bus or through an SSH
// channel running systemd-stdio-bridge.
type dbusSystemd struct {
	host string
	conn *sdbus.Conn
}

// unitName adds ".service" to a bare name, as systemctl does.
func unitName(u string) string {
	for _, suffix := range []string{".service", ".socket", ".target", ".timer", ".mount", ".path", ".slice", ".scope", ".swap", ".device", ".automount"} {
		if strings.HasSuffix(u, suffix) {
			return u
		}
	}
	return u + ".service"
}

func (s *dbusSystemd) Status(ctx context.Context, unit string) (UnitStatus, error) {
	unit = unitName(unit)
	props, err := s.conn.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return UnitStatus{}, fmt.Errorf("%s: status of %s: %w", s.host, unit, err)
	}
	st := UnitStatus{Name: unit}
	st.LoadState, _ = props["LoadState"].(string)
	st.ActiveState, _ = props["ActiveState"].(string)
	st.SubState, _ = props["SubState"].(string)
	st.UnitFileState, _ = props["UnitFileState"].(string)
	st.FragmentPath, _ = props["FragmentPath"].(string)
	st.DropInPaths, _ = props["DropInPaths"].([]string)
	if strings.HasSuffix(unit, ".service") && st.LoadState == "loaded" {
		p, err := s.conn.GetUnitTypePropertyContext(ctx, unit, "Service", "MainPID")
		if err != nil {
			return st, fmt.Errorf("%s: main PID of %s: %w", s.host, unit, err)
		}
		if pid, ok := p.Value.Value().(uint32); ok {
			st.MainPID = int(pid)
		}
	}
	return st, nil
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// job runs one unit job and waits for systemd's verdict, so "restart" returns only once the
// unit is up again (or has failed).
func (s *dbusSystemd) job(ctx context.Context, verb, unit string, f jobFunc) error {
	unit = unitName(unit)
	ch := make(chan string, 1)
	if _, err := f(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%s: %s %s: %w", s.host, verb, unit, err)
	}
	select {
	case result := <-ch:
		if result != "done" {
			return fmt.Errorf("%s: %s %s: job %s (see journalctl -u %s on %s)", s.host, verb, unit, result, unit, s.host)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %s %s: waiting for the job: %w", s.host, verb, unit, ctx.Err())
	}
}

func (s *dbusSystemd) Start(ctx context.Context, unit string) error {
	return s.job(ctx, "start", unit, s.conn.StartUnitContext)
}

func (s *dbusSystemd) Stop(ctx context.Context, unit string) error {
	return s.job(ctx, "stop", unit, s.conn.StopUnitContext)
}

func (s *dbusSystemd) Restart(ctx context.Context, unit string) error {
	return s.job(ctx, "restart", unit, s.conn.RestartUnitContext)
}

func (s *dbusSystemd) Reload(ctx context.Context, unit string) error {
	return s.job(ctx, "reload", unit, s.conn.ReloadUnitContext)
}

func (s *dbusSystemd) Enable(ctx context.Context, unit string) error {
	unit = unitName(unit)
	if _, _, err := s.conn.EnableUnitFilesContext(ctx, []string{unit}, false, false); err != nil {
		return fmt.Errorf("%s: enable %s: %w", s.host, unit, err)
	}
	if err := s.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("%s: daemon-reload after enabling %s: %w", s.host, unit, err)
	}
	return nil
}

func (s *dbusSystemd) Disable(ctx context.Context, unit string) error {
	unit = unitName(unit)
	if _, err := s.conn.DisableUnitFilesContext(ctx, []string{unit}, false); err != nil {
		return fmt.Errorf("%s: disable %s: %w", s.host, unit, err)
	}
	if err := s.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("%s: daemon-reload after disabling %s: %w", s.host, unit, err)
	}
	return nil
}

func (s *dbusSystemd) DaemonReload(ctx context.Context) error {
	if err := s.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("%s: daemon-reload: %w", s.host, err)
	}
	return nil
}

func (s *dbusSystemd) Close() error {
	s.conn.Close()
	return nil
}
