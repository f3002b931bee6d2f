package vip

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/mastershrink/mastershrink/host/machine"
)

// Observed is what one host runs of keepalived.
type Observed struct {
	Path string `json:"path"`
	// Text is the config as read; never kept in a plan (it may hold auth_pass), apply reads it
	// again from the host.
	Text    string `json:"-"`
	Config  Config `json:"config"`
	Active  bool   `json:"active"`
	Enabled bool   `json:"enabled"`
	// Holds are the config's VIPs the host holds now.
	Holds []string `json:"holds,omitempty"`
	// Error says why the config or the unit could not be read; the rest is then incomplete.
	Error string `json:"error,omitempty"`
}

// Observe reads keepalived's config and unit on h and which of its VIPs h holds. found is
// false when the host has neither the config nor the unit.
func Observe(ctx context.Context, h machine.Host, path, unit string) (o Observed, found bool, err error) {
	o.Path = path
	data, rerr := h.ReadFile(ctx, path)
	switch {
	case rerr == nil:
		found = true
		o.Text = string(data)
		if o.Config, err = Parse(o.Text); err != nil {
			return o, true, fmt.Errorf("%s: %s: %w", h.Name(), path, err)
		}
	case !errors.Is(rerr, fs.ErrNotExist):
		return o, true, fmt.Errorf("%s: read %s: %w", h.Name(), path, rerr)
	}
	st, err := unitStatus(ctx, h, unit)
	if err != nil {
		return o, found, err
	}
	if st.LoadState != "not-found" {
		o.Active = st.ActiveState == "active"
		o.Enabled = st.UnitFileState == "enabled"
		found = found || o.Active || o.Enabled
	}
	if !found {
		return o, false, nil
	}
	held, err := HeldOn(ctx, h)
	if err != nil {
		return o, true, err
	}
	for _, v := range o.Config.VIPs() {
		if slices.Contains(held, v) {
			o.Holds = append(o.Holds, v)
		}
	}
	return o, true, nil
}

func unitStatus(ctx context.Context, h machine.Host, unit string) (machine.UnitStatus, error) {
	sd, err := h.Systemd(ctx)
	if err != nil {
		return machine.UnitStatus{}, fmt.Errorf("%s: systemd: %w", h.Name(), err)
	}
	defer sd.Close()
	st, err := sd.Status(ctx, unit)
	if err != nil {
		return st, fmt.Errorf("%s: %s: %w", h.Name(), unit, err)
	}
	return st, nil
}

// HeldOn lists the addresses h holds on any interface, as `ip -o addr show` says.
func HeldOn(ctx context.Context, h machine.Host) ([]string, error) {
	res, err := h.Run(ctx, "ip -o addr show")
	if err != nil {
		return nil, fmt.Errorf("%s: ip -o addr show: %w", h.Name(), err)
	}
	return Held(string(res.Stdout)), nil
}

// Stopped says whether keepalived is stopped and will not start again at boot.
func Stopped(ctx context.Context, h machine.Host, unit string) (bool, error) {
	st, err := unitStatus(ctx, h, unit)
	if err != nil {
		return false, err
	}
	if st.LoadState == "not-found" {
		return true, nil
	}
	return (st.ActiveState == "inactive" || st.ActiveState == "failed") && st.UnitFileState != "enabled", nil
}

// Release stops and disables keepalived on h. A stopping keepalived sends a priority-0
// advertisement, so a backup takes the VIP over at once instead of after the master-down
// interval; disabling keeps it from taking the VIP back at the next boot.
func Release(ctx context.Context, h machine.Host, unit string) error {
	sd, err := h.Systemd(ctx)
	if err != nil {
		return fmt.Errorf("%s: systemd: %w", h.Name(), err)
	}
	defer sd.Close()
	if err := sd.Stop(ctx, unit); err != nil {
		return fmt.Errorf("%s: stop %s: %w", h.Name(), unit, err)
	}
	if err := sd.Disable(ctx, unit); err != nil {
		return fmt.Errorf("%s: disable %s: %w", h.Name(), unit, err)
	}
	return nil
}

// WaitHolder polls hosts until exactly one of them holds addr, and returns its name. Two
// holders (a split brain while adverts cross) or none are waited out until timeout.
func WaitHolder(ctx context.Context, hosts []machine.Host, addr string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		var holders []string
		for _, h := range hosts {
			held, err := HeldOn(ctx, h)
			if err != nil {
				return "", err
			}
			if slices.Contains(held, addr) {
				holders = append(holders, h.Name())
			}
		}
		if len(holders) == 1 {
			return holders[0], nil
		}
		last = fmt.Sprintf("held by %d hosts %v", len(holders), holders)
		if time.Now().After(deadline) {
			return "", fmt.Errorf("VIP %s is %s after %s, want exactly one", addr, last, timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
