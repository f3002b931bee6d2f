package lb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
)

// haproxy runs in master-worker mode (Debian's unit: -Ws, and a reload is haproxy -c, then
// USR2 to the master). On a reload the master re-executes itself and forks one new worker on
// the new config, whose command line carries `-sf OLD...`: the workers it replaces. Those
// old workers stop accepting but keep their established connections, to any server, for as
// long as the connections last (hours, for an apiserver watch), unless hard-stop-after is
// set in the global section. mastershrink does not add hard-stop-after: it would change every
// later reload of the operator's haproxy, and its timer knows nothing of which connections
// matter. Instead the old workers are told to stop (SIGTERM: a hard stop of that worker
// only) when the runner cuts them, as it does nginx's: on worker nodes, right after the new
// worker is proven to run, so clients reconnect through it.

// hapController is the systemd controller of a node's haproxy unit. A node without systemd
// is refused: Debian's haproxy is run by its unit, and a reload by hand (USR2 to a master
// found some other way) is not something to guess.
func hapController(ctx context.Context, h machine.Host, p inventory.Paths) (controller, error) {
	_, unit, _ := p.HAProxyPaths()
	_, err := h.Run(ctx, "test -d /run/systemd/system")
	var ce *machine.CmdError
	if errors.As(err, &ce) && ce.ExitCode == 1 {
		return nil, fmt.Errorf("systemd does not run this node, and mastershrink reloads haproxy only through its unit (%s)", unit)
	}
	if err != nil {
		return nil, fmt.Errorf("tell whether systemd runs the node: %w", err)
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd: %w", err)
	}
	return &unitController{sd: sd, unit: unit}, nil
}

// HAProxyTestCmd is the command that checks a node's haproxy config.
func HAProxyTestCmd(p inventory.Paths) string {
	cfg, _, bin := p.HAProxyPaths()
	return shq(bin) + " -c -f " + shq(cfg)
}

func hapTest(ctx context.Context, h machine.Host, p inventory.Paths) error {
	return testConfig(ctx, h, HAProxyTestCmd(p), "haproxy -c", hapMessage)
}

// hapMessage keeps haproxy's ALERT lines without their "[ALERT]    (pid) : " prefix.
func hapMessage(stderr string) string {
	var keep []string
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(l, "[ALERT]") {
			continue
		}
		if _, rest, ok := strings.Cut(l, ") : "); ok {
			l = rest
		}
		keep = append(keep, strings.TrimSpace(l))
	}
	if len(keep) == 0 {
		return strings.TrimSpace(stderr)
	}
	return strings.Join(keep, "; ")
}

// hapProc is one child of the haproxy master.
type hapProc struct {
	pid int
	age int64 // seconds since start
	// replaces are the PIDs after -sf on its command line: the workers it took over from.
	replaces []int
}

// hapChildren lists the haproxy processes the master forked (its workers, current and old).
// A child that is not the master's own program (a `program` section) is left out.
func hapChildren(ctx context.Context, h machine.Host, master int) ([]hapProc, error) {
	res, err := h.Run(ctx, childrenCmd(master, true))
	if err != nil {
		return nil, err
	}
	return parseHAPChildren(string(res.Stdout), master), nil
}

func parseHAPChildren(out string, master int) []hapProc {
	type row struct {
		pid, ppid int
		age       int64
		args      []string
	}
	var rows []row
	exe := ""
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		pid, err1 := strconv.Atoi(f[0])
		ppid, err2 := strconv.Atoi(f[1])
		age, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if pid == master {
			exe = f[3]
			continue
		}
		rows = append(rows, row{pid, ppid, age, f[3:]})
	}
	var out2 []hapProc
	for _, r := range rows {
		if r.ppid != master || (exe != "" && r.args[0] != exe) {
			continue
		}
		p := hapProc{pid: r.pid, age: r.age}
		for i := 0; i < len(r.args); i++ {
			if r.args[i] != "-sf" {
				continue
			}
			for j := i + 1; j < len(r.args); j++ {
				n, err := strconv.Atoi(r.args[j])
				if err != nil {
					break
				}
				p.replaces = append(p.replaces, n)
			}
		}
		out2 = append(out2, p)
	}
	return out2
}

// hapCurrent splits the master's children into its current workers (no other child
// replaced them) and the old ones.
func hapCurrent(ps []hapProc) (cur, old []hapProc) {
	replaced := map[int]bool{}
	for _, p := range ps {
		for _, r := range p.replaces {
			replaced[r] = true
		}
	}
	for _, p := range ps {
		if replaced[p.pid] {
			old = append(old, p)
		} else {
			cur = append(cur, p)
		}
	}
	return cur, old
}

// hapReload reloads the unit and waits until the master runs one current worker that it did
// not have before: the master forks it only once it has read the new config, and a reload it
// refuses leaves the old worker current.
func hapReload(ctx context.Context, h machine.Host, ctl controller, timeout time.Duration) error {
	master := ctl.mainPID(ctx)
	if master <= 0 {
		return fmt.Errorf("haproxy is not running (its unit has no main PID): start it, then apply again")
	}
	ps, err := hapChildren(ctx, h, master)
	if err != nil {
		return fmt.Errorf("list haproxy workers before the reload: %w", err)
	}
	before := map[int]bool{}
	for _, p := range ps {
		before[p.pid] = true
	}
	if err := ctl.reload(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		ps, err := hapChildren(ctx, h, master)
		if err != nil {
			return fmt.Errorf("list haproxy workers after the reload: %w", err)
		}
		cur, _ := hapCurrent(ps)
		if len(cur) == 1 && !before[cur[0].pid] {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reload: haproxy (master %d) started no worker on the new config within %s (see journalctl -u %s)", master, timeout, unitOf(ctl))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func unitOf(ctl controller) string {
	if u, ok := ctl.(*unitController); ok {
		return u.unit
	}
	return "haproxy"
}

// hapLoaded says whether haproxy's current worker started at or after the last change of
// paths: the master read them when it forked it. False when it cannot tell.
func hapLoaded(ctx context.Context, h machine.Host, ctl controller, paths []string) (bool, error) {
	master := ctl.mainPID(ctx)
	if master <= 0 {
		return false, nil
	}
	out, now, mtime, err := machine.AfterChange(ctx, h, childrenCmd(master, true), paths)
	if err != nil {
		return false, err
	}
	cur, _ := hapCurrent(parseHAPChildren(out, master))
	return len(cur) == 1 && now-cur[0].age >= mtime, nil
}

// hapCutOld stops the master's old workers. The current one is never signalled: the master
// exits with all its workers when a current worker dies, so with anything but exactly one
// current worker nothing is cut, and the error says why.
func hapCutOld(ctx context.Context, h machine.Host, master int) error {
	ps, err := hapChildren(ctx, h, master)
	if err != nil {
		return err
	}
	cur, old := hapCurrent(ps)
	if len(cur) != 1 {
		var pids []string
		for _, p := range cur {
			pids = append(pids, strconv.Itoa(p.pid))
		}
		return fmt.Errorf("cannot tell haproxy's current worker (master %d, candidates [%s]): its old workers are left to finish their connections", master, strings.Join(pids, " "))
	}
	if len(old) == 0 {
		return nil
	}
	pids := make([]string, 0, len(old))
	for _, p := range old {
		if !slices.Contains(pids, strconv.Itoa(p.pid)) {
			pids = append(pids, strconv.Itoa(p.pid))
		}
	}
	// An old worker may end on its own between the listing and the signal.
	_, err = h.Run(ctx, "kill -TERM "+strings.Join(pids, " ")+" 2>/dev/null; true")
	return err
}
