package etcd

import (
	"context"
	"errors"
	"fmt"

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
