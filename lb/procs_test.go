package lb

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
)

// childrenCmd must print what ps prints for the same processes, from /proc, and ps's output
// where the kernel has no children list; its callers parse either.
func TestChildrenCmdMatchesPS(t *testing.T) {
	parent := exec.Command("sh", "-c", "sleep 30 & sleep 30 & exec sleep 30")
	// A parent with children of its own: sh forks two sleeps, then becomes the third.
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	master := parent.Process.Pid
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d/children", master, master)); err != nil {
		t.Skipf("this kernel has no children list (%v): only ps would run", err)
	}
	ps := func(args ...string) []string {
		out, err := exec.Command("ps", append([]string{"-ww", "-o", "pid=,ppid=,etimes=,args="}, args...)...).Output()
		if err != nil && len(out) == 0 {
			t.Fatalf("ps: %v", err)
		}
		return rows(string(out))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ps("--ppid", strconv.Itoa(master))) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, withMaster := range []bool{false, true} {
		out, err := exec.Command("sh", "-c", childrenCmd(master, withMaster)).Output()
		if err != nil {
			t.Fatalf("childrenCmd: %v", err)
		}
		got := rows(string(out))
		want := ps("--ppid", strconv.Itoa(master))
		if withMaster {
			want = ps("-p", strconv.Itoa(master), "--ppid", strconv.Itoa(master))
		}
		if len(got) != len(want) || len(got) < 2 {
			t.Fatalf("withMaster %v: got %q, ps says %q", withMaster, got, want)
		}
		for i := range got {
			g, w := strings.Fields(got[i]), strings.Fields(want[i])
			ga, _ := strconv.Atoi(g[2])
			wa, _ := strconv.Atoi(w[2])
			if g[0] != w[0] || g[1] != w[1] || strings.Join(g[3:], " ") != strings.Join(w[3:], " ") || ga < wa-1 || ga > wa+1 {
				t.Errorf("withMaster %v: row %q, ps says %q", withMaster, got[i], want[i])
			}
		}
	}
	// Parsed as the reload wait parses it: ps's own format, one field more than the old one.
	if ws := parseWorkers("  812  811  5 nginx: worker process\n  813  811  90 nginx: worker process is shutting down\n"); len(ws) != 2 ||
		ws[0].pid != 812 || ws[0].age != 5 || ws[0].shuttingDown || !ws[1].shuttingDown || ws[1].age != 90 {
		t.Fatalf("parseWorkers: %+v", ws)
	}
}

// rows are the non-empty lines of out, sorted by PID.
func rows(out string) []string {
	var rs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" {
			rs = append(rs, strings.TrimSpace(l))
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.Fields(rs[i])[0])
		b, _ := strconv.Atoi(strings.Fields(rs[j])[0])
		return a < b
	})
	return rs
}

// readCounter counts a fake host's file reads, which the fake does not log.
type readCounter struct {
	*hosttest.Host
	reads map[string]int
}

func (h *readCounter) ReadFile(ctx context.Context, path string) ([]byte, error) {
	h.reads[path]++
	return h.Host.ReadFile(ctx, path)
}

// An Executor made for one node asks it once how it reloads and where nginx's pid file is,
// however many fan-outs use it; the zero Executor asks each time.
func TestNodeExecutorRemembers(t *testing.T) {
	ctx := context.Background()
	p := inventory.Paths{NginxConfig: "/etc/kube-nginx/kube-nginx.conf", NginxPrefix: "/etc/kube-nginx"}
	for _, tc := range []struct {
		name        string
		ex          *Executor
		tests, cfgs int
	}{
		{"NewNodeExecutor", NewNodeExecutor(ReloadDetect, ""), 1, 1},
		{"zero Executor", &Executor{Reload: ReloadDetect}, 3, 3},
	} {
		fake := hosttest.New("w1")
		fake.SetFile(p.NginxConfig, "pid /run/kube-nginx.pid;\nstream {}\n")
		fake.SetFile("/run/kube-nginx.pid", "812\n")
		fake.RunFunc = func(cmd string) (host.Result, error) {
			if cmd == "test -d /run/systemd/system" {
				return host.Result{ExitCode: 1}, &host.CmdError{Host: "w1", Cmd: cmd, ExitCode: 1}
			}
			return host.Result{}, nil
		}
		h := &readCounter{Host: fake, reads: map[string]int{}}
		for range 3 {
			if err := tc.ex.CutOldWorkers(ctx, h, p); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		tests, pidReads := 0, h.reads["/run/kube-nginx.pid"]
		for _, l := range fake.Log() {
			if l == "run test -d /run/systemd/system" {
				tests++
			}
			// The cut reads the pid file in its own command (one round trip).
			if strings.HasPrefix(l, "run ") && strings.Contains(l, "read -r pid < "+shq("/run/kube-nginx.pid")) {
				pidReads++
			}
		}
		if tests != tc.tests || h.reads[p.NginxConfig] != tc.cfgs || pidReads != 3 {
			t.Errorf("%s: systemd asked %d times (want %d), config read %d times (want %d), pid file %d times (want 3: the pid itself may change)",
				tc.name, tests, tc.tests, h.reads[p.NginxConfig], tc.cfgs, pidReads)
		}
	}
}
