package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mastershrink/mastershrink/host/machine"
)

func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// labPIDs lists every process in the lab's cgroup folders: by construction only processes the
// lab started (nspawn was moved there before it exec'd, and everything in a machine descends
// from it), so these and only these are the lab's to kill.
func labPIDs(name string) []int {
	seen := map[int]bool{}
	for _, root := range cgroupDirs(name) {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	var out []int
	for pid := range seen {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// cleanup removes everything lab name may have left, in order: machines (SIGTERM to nspawn,
// which halts the machine, then SIGKILL to what is left in the lab's cgroups), mounts under
// the state folder, network namespaces, cgroup folders, nspawn's runtime folders, the state
// folder. It is safe to run when nothing is left.
func cleanup(name string, log io.Writer) error {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	var errs []error
	pids := labPIDs(name)
	if len(pids) > 0 {
		fmt.Fprintf(log, "[lab %s] stopping %d processes\n", name, len(pids))
	}
	for _, pid := range pids {
		if comm(pid) == "systemd-nspawn" {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	waitGone := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			left := 0
			for _, pid := range labPIDs(name) {
				if alive(pid) {
					left++
				}
			}
			if left == 0 {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	// A graceful halt waits for kube-apiserver's --request-timeout; the lab is disposable, so
	// after a short grace everything left is killed.
	if len(pids) > 0 && !waitGone(2*time.Second) {
		for _, pid := range labPIDs(name) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if !waitGone(5 * time.Second) {
			errs = append(errs, fmt.Errorf("lab %s: processes still alive after SIGKILL: %v", name, labPIDs(name)))
		}
	}

	stateDir := filepath.Join(StateRoot(), name)
	for _, mp := range mountsUnder(stateDir) {
		if err := unix.Unmount(mp, 0); err != nil {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
	}
	for _, ns := range labNetnsNames(name) {
		if err := deleteNetns(ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, root := range cgroupDirs(name) {
		if err := removeCgroupTree(root); err != nil {
			errs = append(errs, err)
		}
	}
	// nspawn's own runtime folders, named after the machine.
	for _, d := range []string{"/run/systemd/nspawn/propagate", "/run/systemd/nspawn/unix-export"} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), name+"-") && isMachineName(strings.TrimPrefix(e.Name(), name+"-")) {
				os.RemoveAll(filepath.Join(d, e.Name()))
			}
		}
	}
	if len(mountsUnder(stateDir)) == 0 {
		if err := os.RemoveAll(stateDir); err != nil {
			errs = append(errs, fmt.Errorf("remove lab state %s: %w", stateDir, err))
		}
	} else {
		errs = append(errs, fmt.Errorf("lab %s: mounts left under %s: %v", name, stateDir, mountsUnder(stateDir)))
	}
	return errors.Join(errs...)
}

// mountsUnder lists mount points at or below dir in this mount namespace, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := machine.UnescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// removeCgroupTree removes a cgroup folder and its children, deepest first (cgroup folders are
// removed with rmdir, never by deleting their files).
func removeCgroupTree(root string) error {
	var dirs []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var last error
	for _, d := range dirs {
		var err error
		for i := 0; i < 20; i++ {
			if err = unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			// A cgroup just emptied can report EBUSY for a moment.
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			last = fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return last
}

// Leftovers reports what of lab name still exists on the host: processes, mounts, namespaces,
// cgroup folders, state folder. Empty after a clean Down.
func Leftovers(name string) []string {
	var out []string
	for _, pid := range labPIDs(name) {
		out = append(out, fmt.Sprintf("process %d (%s)", pid, comm(pid)))
	}
	stateDir := filepath.Join(StateRoot(), name)
	for _, mp := range mountsUnder(stateDir) {
		out = append(out, "mount "+mp)
	}
	for _, ns := range labNetnsNames(name) {
		out = append(out, "netns "+ns)
	}
	for _, d := range cgroupDirs(name) {
		if _, err := os.Stat(d); err == nil {
			out = append(out, "cgroup "+d)
		}
	}
	if _, err := os.Stat(stateDir); err == nil {
		out = append(out, "state "+stateDir)
	}
	entries, _ := os.ReadDir("/run/systemd/nspawn/propagate")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"-") {
			out = append(out, "nspawn folder /run/systemd/nspawn/propagate/"+e.Name())
		}
	}
	return out
}

// Clean removes whatever lab name left on the host (what Up does first), without its lab.json.
func Clean(name string, log io.Writer) error {
	if err := cleanup(name, log); err != nil {
		return err
	}
	if left := Leftovers(name); len(left) > 0 {
		return fmt.Errorf("lab %s: left after cleanup: %s", name, strings.Join(left, ", "))
	}
	return nil
}
