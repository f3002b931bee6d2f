package apiserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/unitfile"
)

// ErrStillRunning means a retired unit is still active or still enabled.
var ErrStillRunning = errors.New("still active or enabled")

// controlPlaneUnits returns the host's three control-plane unit names.
func controlPlaneUnits(p inventory.Paths) []string {
	return []string{
		unitfile.NormalizeName(orDefault(p.APIServerUnit, KubeAPIServer)),
		unitfile.NormalizeName(orDefault(p.ControllerManagerUnit, KubeControllerManager)),
		unitfile.NormalizeName(orDefault(p.SchedulerUnit, KubeScheduler)),
	}
}

// RetireComponents stops and disables kube-apiserver, kube-controller-manager and
// kube-scheduler on a leaving master, then confirms each is inactive and disabled. A unit
// systemd does not know counts as retired. Every unit is tried; the errors are joined.
func RetireComponents(ctx context.Context, h host.Host, p inventory.Paths) error {
	sd, err := h.Systemd(ctx)
	if err != nil {
		return fmt.Errorf("retire control plane on %s: %w", h.Name(), err)
	}
	defer sd.Close()
	disabled := false
	errs := eachKnownUnit(ctx, h, sd, p, func(u string, st host.UnitStatus) error {
		if !stopped(st) {
			if err := sd.Stop(ctx, u); err != nil {
				return fmt.Errorf("stop %s on %s: %w", u, h.Name(), err)
			}
		}
		if !disabledState(st) {
			if err := sd.Disable(ctx, u); err != nil {
				return fmt.Errorf("disable %s on %s: %w", u, h.Name(), err)
			}
			disabled = true
		}
		return nil
	})
	if disabled {
		// systemctl disable reloads the manager; the D-Bus call does not.
		if err := sd.DaemonReload(ctx); err != nil {
			errs = append(errs, fmt.Errorf("daemon-reload on %s: %w", h.Name(), err))
		}
	}
	if err := confirmRetired(ctx, h, sd, p); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Retired is RetireComponents' postcondition: every control-plane unit on the host is
// inactive (or failed) and disabled (or masked, or unknown to systemd).
func Retired(ctx context.Context, h host.Host, p inventory.Paths) (bool, error) {
	sd, err := h.Systemd(ctx)
	if err != nil {
		return false, fmt.Errorf("check control plane on %s: %w", h.Name(), err)
	}
	defer sd.Close()
	err = confirmRetired(ctx, h, sd, p)
	if errors.Is(err, ErrStillRunning) {
		return false, nil
	}
	return err == nil, err
}

func confirmRetired(ctx context.Context, h host.Host, sd host.Systemd, p inventory.Paths) error {
	return errors.Join(eachKnownUnit(ctx, h, sd, p, func(u string, st host.UnitStatus) error {
		if !stopped(st) || !disabledState(st) {
			return fmt.Errorf("%s on %s is %s/%s: %w", u, h.Name(), st.ActiveState, st.UnitFileState, ErrStillRunning)
		}
		return nil
	})...)
}

// eachKnownUnit calls fn with each control-plane unit's status, skipping the units systemd
// does not know (nothing to retire there), and returns the errors of every unit, not only
// the first, so one report names them all.
func eachKnownUnit(ctx context.Context, h host.Host, sd host.Systemd, p inventory.Paths, fn func(unit string, st host.UnitStatus) error) []error {
	var errs []error
	for _, u := range controlPlaneUnits(p) {
		st, err := sd.Status(ctx, u)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s on %s: %w", u, h.Name(), err))
			continue
		}
		if st.LoadState == "not-found" {
			continue
		}
		if err := fn(u, st); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func stopped(st host.UnitStatus) bool {
	return st.ActiveState == "inactive" || st.ActiveState == "failed"
}

func disabledState(st host.UnitStatus) bool {
	switch st.UnitFileState {
	case "disabled", "masked", "masked-runtime", "":
		return true
	}
	return false
}
