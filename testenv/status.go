package testenv

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MachineStatus is what `lab status` shows for one machine.
type MachineStatus struct {
	Machine
	Running bool
	// System is `systemctl is-system-running` inside the machine.
	System string
	// Units maps each lab unit on the machine to its ActiveState.
	Units map[string]string
	// MemoryBytes is the proportional set size (PSS) of every process of the machine,
	// nspawn included.
	MemoryBytes int64
}

// Units lists the systemd units the lab runs on m, by the layout's names.
func (l *Lab) Units(m Machine) []string {
	lay, _ := LookupLayout(l.Layout)
	p := lay.Paths
	units := []string{"ssh", p.NginxUnit}
	if l.hasRole(m, "etcd") {
		units = append(units, p.EtcdUnit)
	}
	if l.hasRole(m, "master") {
		units = append(units, p.APIServerUnit, p.ControllerManagerUnit, p.SchedulerUnit)
	}
	if l.hasRole(m, "worker") {
		units = append(units, p.KubeletUnit)
	}
	return units
}

// Status reports every machine's state, units and memory.
func (l *Lab) Status(ctx context.Context) []MachineStatus {
	var out []MachineStatus
	for _, m := range l.Machines {
		s := MachineStatus{Machine: m, Units: map[string]string{}}
		s.Running = m.PID > 0 && isSystemd(m.PID) && alive(m.NspawnPID)
		if s.Running {
			o, _ := l.Exec(ctx, m.Name, "systemctl", "is-system-running")
			s.System = strings.TrimSpace(string(o))
			for _, u := range l.Units(m) {
				o, _ := l.Exec(ctx, m.Name, "systemctl", "is-active", u)
				s.Units[u] = strings.TrimSpace(string(o))
			}
			s.MemoryBytes = cgroupPSS(filepath.Join(lastCgroupDir(l.Name), m.Name))
		}
		out = append(out, s)
	}
	return out
}

// MemoryBytes is the PSS of every process of the lab.
func (l *Lab) MemoryBytes() int64 {
	return cgroupPSS(lastCgroupDir(l.Name))
}

func cgroupPSS(root string) int64 {
	var total int64
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			total += pss(f)
		}
		return nil
	})
	return total
}

func pss(pid string) int64 {
	f, err := os.Open("/proc/" + pid + "/smaps_rollup")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "Pss:") {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 2 {
				kb, _ := strconv.ParseInt(fs[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// FormatStatus renders statuses as a table.
func FormatStatus(st []MachineStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s %-12s %-12s %-6s %-10s %8s  %s\n", "NAME", "ADDRESS", "ROLES", "PID", "SYSTEM", "MEM(MiB)", "UNITS")
	var total int64
	for _, s := range st {
		var units []string
		for _, u := range slices.Sorted(maps.Keys(s.Units)) {
			units = append(units, u+"="+s.Units[u])
		}
		sys := s.System
		if !s.Running {
			sys = "stopped"
		}
		total += s.MemoryBytes
		fmt.Fprintf(&b, "%-4s %-12s %-12s %-6d %-10s %8d  %s\n", s.Name, s.Address, strings.Join(s.Roles, ","), s.PID, sys, s.MemoryBytes>>20, strings.Join(units, " "))
	}
	fmt.Fprintf(&b, "total memory (PSS): %d MiB\n", total>>20)
	return b.String()
}

func lastCgroupDir(name string) string {
	d := cgroupDirs(name)
	return d[len(d)-1]
}
