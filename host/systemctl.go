package host

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// NewSystemctl controls units by running systemctl on the host. It is the fallback for a
// host without systemd-stdio-bridge; every call blocks until systemctl's job finishes, like
// the D-Bus implementation.
func NewSystemctl(h Host) Systemd {
	return &systemctl{h: h}
}

type systemctl struct{ h Host }

var statusProps = []string{"LoadState", "ActiveState", "SubState", "UnitFileState", "FragmentPath", "DropInPaths", "MainPID"}

func (s *systemctl) Status(ctx context.Context, unit string) (UnitStatus, error) {
	unit = unitName(unit)
	res, err := s.h.Run(ctx, "systemctl show --no-pager -p "+strings.Join(statusProps, ",")+" -- "+shq(unit))
	if err != nil {
		return UnitStatus{}, fmt.Errorf("status of %s: %w", unit, err)
	}
	return parseShow(unit, string(res.Stdout)), nil
}

// parseShow reads `systemctl show -p ...` output (KEY=VALUE lines).
func parseShow(unit, out string) UnitStatus {
	st := UnitStatus{Name: unit}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "LoadState":
			st.LoadState = v
		case "ActiveState":
			st.ActiveState = v
		case "SubState":
			st.SubState = v
		case "UnitFileState":
			st.UnitFileState = v
		case "FragmentPath":
			st.FragmentPath = v
		case "DropInPaths":
			st.DropInPaths = strings.Fields(v)
		case "MainPID":
			st.MainPID, _ = strconv.Atoi(v)
		}
	}
	return st
}

func (s *systemctl) do(ctx context.Context, args string) error {
	_, err := s.h.Run(ctx, "systemctl "+args)
	return err
}

func (s *systemctl) Start(ctx context.Context, unit string) error {
	return s.do(ctx, "start -- "+shq(unitName(unit)))
}

func (s *systemctl) Stop(ctx context.Context, unit string) error {
	return s.do(ctx, "stop -- "+shq(unitName(unit)))
}

func (s *systemctl) Restart(ctx context.Context, unit string) error {
	return s.do(ctx, "restart -- "+shq(unitName(unit)))
}

func (s *systemctl) Reload(ctx context.Context, unit string) error {
	return s.do(ctx, "reload -- "+shq(unitName(unit)))
}

func (s *systemctl) Enable(ctx context.Context, unit string) error {
	return s.do(ctx, "enable -- "+shq(unitName(unit)))
}

func (s *systemctl) Disable(ctx context.Context, unit string) error {
	return s.do(ctx, "disable -- "+shq(unitName(unit)))
}

func (s *systemctl) DaemonReload(ctx context.Context) error {
	return s.do(ctx, "daemon-reload")
}

func (s *systemctl) Close() error { return nil }
