package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

type faultLab struct {
	t   *testing.T
	lab *testenv.Lab
	dir string
	ctx context.Context
}

func startFaultLab(t *testing.T, name string) *faultLab {
	t.Helper()
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: name})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	t.Cleanup(cancel)
	f := &faultLab{t: t, lab: lab, dir: t.TempDir(), ctx: ctx}
	ec, err := lab.EtcdClient()
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	if err := seed.WriteKeys(ctx, ec, "/fault/", faultKeys); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *faultLab) cluster() *observe.Cluster {
	f.t.Helper()
	inv, err := inventory.Load(f.lab.Inventory)
	if err != nil {
		f.t.Fatal(err)
	}
	return observe.Open(inv, observe.Options{Dial: f.lab.DialContext})
}

// plan observes the lab and writes the plan for target as `mastershrink plan --out` does.
func (f *faultLab) plan(target plan.Target) (*plan.Plan, string) {
	f.t.Helper()
	c := f.cluster()
	defer c.Close()
	facts, err := observe.Gather(f.ctx, c, target)
	if err != nil {
		f.t.Fatalf("observe: %v", err)
	}
	p := plan.Build(facts, target, version.String(), time.Now())
	data, err := plan.Encode(p)
	if err != nil {
		f.t.Fatal(err)
	}
	path := filepath.Join(f.dir, "plan.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	if p, err = plan.Decode(data, version.String()); err != nil {
		f.t.Fatal(err)
	}
	return p, path
}

// apply runs the plan as `mastershrink apply PLAN` does, with a connection of its own.
func (f *faultLab) apply(path string) (Summary, string, error) {
	f.t.Helper()
	c := f.cluster()
	defer c.Close()
	var out testenv.Buffer
	sum, err := Run(f.ctx, Options{PlanPath: path, Cluster: c, Progress: &out, ToolVersion: version.String()})
	return sum, out.String(), err
}

// resume reruns the plan after a failure (what names the rerun), which must succeed and say
// it resumed the run before it.
func (f *faultLab) resume(path, what string) {
	f.t.Helper()
	sum, out, err := f.apply(path)
	f.t.Logf("%s:\n%s", what, out)
	if err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
	if !sum.Resumed {
		f.t.Errorf("%s did not resume the plan", what)
	}
}

func journalEntries(t *testing.T, planPath string) []Entry {
	t.Helper()
	data, err := os.ReadFile(strings.TrimSuffix(planPath, ".json") + ".journal.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// checkFailReported asserts that the journal's last run failed at step, and that every step
// that run started is accounted for by an end or a fail: nothing half-done goes unreported.
func checkFailReported(t *testing.T, planPath, step string) {
	t.Helper()
	es := journalEntries(t, planPath)
	var run string
	for _, e := range es {
		if e.Event == EventRunStart {
			run = e.Run
		}
	}
	open := map[string]bool{}
	failed := ""
	for _, e := range es {
		if e.Run != run {
			continue
		}
		switch e.Event {
		case EventStart:
			open[e.Step] = true
		case EventEnd:
			delete(open, e.Step)
		case EventFail:
			delete(open, e.Step)
			failed = e.Step
			if e.Error == "" {
				t.Errorf("journal: the fail of %s carries no error", e.Step)
			}
		case EventRunEnd:
			if e.Result != "failed" {
				t.Errorf("journal: the run ended %q, want failed", e.Result)
			}
		}
	}
	if failed != step {
		t.Errorf("journal: the failed step is %q, want %q", failed, step)
	}
	if len(open) > 0 {
		t.Errorf("journal: steps started but neither ended nor failed: %v", open)
	}
}

// waitJournal polls the journal until an entry matches, then calls do.
func waitJournal(ctx context.Context, planPath string, match func(Entry) bool) error {
	path := strings.TrimSuffix(planPath, ".json") + ".journal.jsonl"
	for {
		if data, err := os.ReadFile(path); err == nil {
			for _, l := range bytes.Split(data, []byte("\n")) {
				var e Entry
				if json.Unmarshal(l, &e) == nil && match(e) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("journal %s: the awaited entry never came: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func stepEvent(step, event string) func(Entry) bool {
	return func(e Entry) bool { return e.Step == step && e.Event == event }
}

// readyz polls GET /readyz at url with sockets made by dial until it answers 200.
func (f *faultLab) readyz(what, url string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Minute)
	defer cancel()
	if err := f.lab.WaitReadyz(ctx, url, dial); err != nil {
		return fmt.Errorf("%s /readyz: %w", what, err)
	}
	return nil
}

// checkServing asserts the API answers through every worker's proxy and every key written
// before is still in etcd (read from m1, which stays in every fault).
func (f *faultLab) checkServing() {
	f.t.Helper()
	for _, m := range f.lab.Machines {
		if m.Name[0] == 'w' {
			if err := f.readyz("proxy on "+m.Name, "https://127.0.0.1:8443/readyz", testenv.DialerIn(m.NetNS)); err != nil {
				f.t.Errorf("not serving: %v", err)
			}
		}
	}
	ec := f.m1Etcd()
	defer ec.Close()
	ctx, cancel := context.WithTimeout(f.ctx, time.Minute)
	defer cancel()
	if err := seed.CheckKeys(ctx, ec, "/fault/", faultKeys); err != nil {
		f.t.Errorf("keys written before the shrink: %v", err)
	}
}

// m1Etcd returns a client of m1's etcd, which stays in every fault.
func (f *faultLab) m1Etcd() *clientv3.Client {
	f.t.Helper()
	m1, _ := f.lab.Machine("m1")
	ec, err := f.lab.EtcdClient("https://" + m1.Address + ":2379")
	if err != nil {
		f.t.Fatal(err)
	}
	return ec
}

// checkShrunk asserts the shrink completed: m1 is etcd's only member.
func (f *faultLab) checkShrunk() {
	f.t.Helper()
	m1, _ := f.lab.Machine("m1")
	ec := f.m1Etcd()
	defer ec.Close()
	ctx, cancel := context.WithTimeout(f.ctx, time.Minute)
	defer cancel()
	ml, err := ec.MemberList(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(ml.Members) != 1 || ml.Members[0].Name != m1.Address {
		f.t.Errorf("etcd members %v, want only %s", ml.Members, m1.Address)
	}
	f.checkServing()
}

func (f *faultLab) exec(host string, cmd ...string) string {
	f.t.Helper()
	out, err := f.lab.Exec(f.ctx, host, cmd...)
	if err != nil {
		f.t.Fatal(err)
	}
	return string(out)
}

// inNetns runs a host binary (iptables) inside a machine's network namespace only.
func (f *faultLab) inNetns(machine string, cmd ...string) {
	f.t.Helper()
	m, _ := f.lab.Machine(machine)
	out, err := exec.CommandContext(f.ctx, "nsenter", append([]string{"--net=" + m.NetNS, "--"}, cmd...)...).CombinedOutput()
	if err != nil {
		f.t.Fatalf("%s in %s's netns: %v: %s", strings.Join(cmd, " "), machine, err, out)
	}
}

func plannedFile(t *testing.T, p *plan.Plan, step string) (string, string, string) {
	t.Helper()
	st, ok := p.Step(step)
	if !ok || len(st.Files) == 0 {
		t.Fatalf("plan has no file change in %s", step)
	}
	return st.Files[0].Path, st.Files[0].Before, st.Files[0].After
}

var shrink = plan.Target{Remove: []string{"m2", "m3"}, LBMode: "down"}

// A surviving apiserver that will not start with its new unit. The plan points m1's
func procAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fs := strings.Fields(string(b))
	return len(fs) > 2 && fs[2] != "Z"
}
