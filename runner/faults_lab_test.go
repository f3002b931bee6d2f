package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/observe"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// The fault suite (make faults): each test brings up its own lab, writes keys, plans the
// 3-to-1 shrink of seed 003, breaks something a real cluster breaks, and applies. Each ends
// with the API serving through the proxies and every key still in etcd. The crash of
// mastershrink itself at every step boundary is TestLabApplyCrashResume in cmd/mastershrink.

const faultKeys = 1000

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
	hc, err := f.lab.HTTPClient(dial)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s /readyz: %w", what, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
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
	m1, _ := f.lab.Machine("m1")
	ec, err := f.lab.EtcdClient("https://" + m1.Address + ":2379")
	if err != nil {
		f.t.Fatal(err)
	}
	defer ec.Close()
	ctx, cancel := context.WithTimeout(f.ctx, time.Minute)
	defer cancel()
	if err := seed.CheckKeys(ctx, ec, "/fault/", faultKeys); err != nil {
		f.t.Errorf("keys written before the shrink: %v", err)
	}
}

// checkShrunk asserts the shrink completed: m1 is etcd's only member.
func (f *faultLab) checkShrunk() {
	f.t.Helper()
	m1, _ := f.lab.Machine("m1")
	ec, err := f.lab.EtcdClient("https://" + m1.Address + ":2379")
	if err != nil {
		f.t.Fatal(err)
	}
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
// kube-apiserver at m1's etcd alone; after planning, a firewall rule on m1 rejects its
// connections to its own etcd client port (the old unit never noticed: it reached m2's and
// m3's members). The restart must fail within its deadline, name the host and the journal
// lines, put the old unit back with the apiserver serving, and a rerun after the fix must
// converge.
func TestFaultSurvivorAPIServerWillNotStart(t *testing.T) {
	f := startFaultLab(t, "msfapi")
	p, path := f.plan(shrink)
	step := "apiserver/update/m1"
	unitPath, before, _ := plannedFile(t, p, step)
	m1, _ := f.lab.Machine("m1")
	rule := []string{"OUTPUT", "-p", "tcp", "-d", m1.Address, "--dport", "2379", "-j", "REJECT", "--reject-with", "tcp-reset"}
	f.inNetns("m1", append([]string{"iptables", "-I"}, rule...)...)
	direct := "https://" + m1.Address + ":6443/readyz"
	if err := f.readyz("m1's apiserver behind the firewall rule", direct, f.lab.DialContext); err != nil {
		t.Fatal(err)
	}

	prober := f.lab.StartProber(f.ctx, 10)
	_, out, err := f.apply(path)
	report := prober.Stop()
	t.Logf("first apply (prober: %s):\n%s\nerror: %v", report, out, err)
	if err == nil {
		t.Fatal("apply succeeded though m1's apiserver cannot reach its etcd with the new unit")
	}
	msg := err.Error()
	for _, want := range []string{step, "kube-apiserver", "on m1", "the previous files are back and it is serving again", "last journal lines"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	checkFailReported(t, path, step)
	if got := f.exec("m1", "cat", unitPath); got != before {
		t.Errorf("%s on m1 is not the old unit after the failure:\n%s", unitPath, got)
	}
	if err := f.readyz("m1's apiserver after the rollback", direct, f.lab.DialContext); err != nil {
		t.Error(err)
	}
	for _, m := range f.lab.Machines {
		conf := f.exec(m.Name, "cat", "/approot/data/k8s/kube-nginx/kube-nginx.conf")
		for _, l := range strings.Split(conf, "\n") {
			if strings.Contains(l, m1.Address+":6443") && strings.Contains(l, " down") {
				t.Errorf("the proxy on %s still has m1 out after the rollback: %s", m.Name, strings.TrimSpace(l))
			}
		}
	}
	f.checkServing()

	f.inNetns("m1", append([]string{"iptables", "-D"}, rule...)...)
	sum, out, err := f.apply(path)
	t.Logf("rerun after the fix:\n%s", out)
	if err != nil {
		t.Fatalf("rerun after the fix: %v", err)
	}
	if !sum.Resumed {
		t.Error("the rerun did not resume the plan")
	}
	f.checkShrunk()
}

// `nginx -t` fails on one node during the apply: after the survivor's restart, w2 loses the
// stream module its config loads (a package upgrade that dropped libnginx-mod-stream). Its
// step must fail naming w2, leave it on its old config and serving, and a rerun after the
// fix must converge.
func TestFaultNginxTestFailsOnOneNode(t *testing.T) {
	f := startFaultLab(t, "msfnginx")
	p, path := f.plan(shrink)
	confPath, before, after := plannedFile(t, p, "lb/update/w2")
	const module = "/usr/lib/nginx/modules/ngx_stream_module.so"

	injected := make(chan error, 1)
	go func() {
		err := waitJournal(f.ctx, path, stepEvent("apiserver/update/m1", EventEnd))
		if err == nil {
			_, err = f.lab.Exec(f.ctx, "w2", "mv", module, module+".moved")
		}
		injected <- err
	}()
	_, out, err := f.apply(path)
	if ierr := <-injected; ierr != nil {
		t.Fatalf("break w2: %v", ierr)
	}
	t.Logf("first apply:\n%s\nerror: %v", out, err)
	if err == nil {
		t.Fatal("apply succeeded though nginx -t fails on w2")
	}
	msg := err.Error()
	for _, want := range []string{"lb/update/w2", "w2", "nginx", "old config restored"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	checkFailReported(t, path, "lb/update/w2")
	if got := f.exec("w2", "cat", confPath); got != before {
		t.Errorf("w2's proxy config is not the old one:\n%s", got)
	}
	for _, h := range []string{"m1", "w1"} {
		if got := f.exec(h, "cat", confPath); got != after {
			t.Errorf("%s's proxy config is not the new one after its step ended:\n%s", h, got)
		}
	}
	f.checkServing()

	f.exec("w2", "mv", module+".moved", module)
	if _, out, err = f.apply(path); err != nil {
		t.Fatalf("rerun after the fix: %v\n%s", err, out)
	}
	t.Logf("rerun after the fix:\n%s", out)
	f.checkShrunk()
}

// The SSH connection to a host is cut in the middle of a step: once m1's new apiserver unit
// is written and its restart under way, every sshd session on m1 is killed (the tool's
// commands, its file transfers and its systemd bridge). The run must either recover or stop
// with an error naming m1; a rerun must converge.
func TestFaultSSHCutMidStep(t *testing.T) {
	f := startFaultLab(t, "msfssh")
	p, path := f.plan(shrink)
	step := "apiserver/update/m1"
	unitPath, _, after := plannedFile(t, p, step)

	cut := make(chan error, 1)
	go func() {
		err := waitJournal(f.ctx, path, stepEvent(step, EventStart))
		for err == nil {
			out, rerr := f.lab.Exec(f.ctx, "m1", "cat", unitPath)
			if rerr == nil && string(out) == after {
				break
			}
			select {
			case <-f.ctx.Done():
				err = f.ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
		if err == nil {
			_, err = f.lab.Exec(f.ctx, "m1", "pkill", "-e", "-f", "^sshd: root")
		}
		cut <- err
	}()
	start := time.Now()
	_, out, err := f.apply(path)
	if cerr := <-cut; cerr != nil {
		t.Fatalf("cut the SSH sessions on m1: %v", cerr)
	}
	t.Logf("apply with the cut, %s:\n%s\nerror: %v", time.Since(start).Round(time.Second), out, err)
	if err != nil {
		if !strings.Contains(err.Error(), "m1") {
			t.Errorf("the error does not name m1: %v", err)
		}
		// Nothing half-done unreported: a proxy left with m1 out must be in the error.
		m1, _ := f.lab.Machine("m1")
		for _, m := range f.lab.Machines {
			conf := f.exec(m.Name, "cat", "/approot/data/k8s/kube-nginx/kube-nginx.conf")
			for _, l := range strings.Split(conf, "\n") {
				if strings.Contains(l, m1.Address+":6443") && strings.Contains(l, " down") && !strings.Contains(err.Error(), "could not be put back into every proxy") {
					t.Errorf("the proxy on %s was left with m1 out, and the error does not say so: %s", m.Name, strings.TrimSpace(l))
				}
			}
		}
		es := journalEntries(t, path)
		if last := es[len(es)-1]; last.Event != EventRunEnd || last.Result != "failed" {
			t.Errorf("journal does not end with the failed run: %+v", last)
		}
		sum, out, err := f.apply(path)
		t.Logf("rerun:\n%s", out)
		if err != nil {
			t.Fatalf("rerun after the cut: %v", err)
		}
		if !sum.Resumed {
			t.Error("the rerun did not resume the plan")
		}
	}
	f.checkShrunk()
}

// A leaving master powered off before apply: planning refuses without --offline, plans with
// it, and apply completes with m3's host-side steps skipped and a warning naming it.
func TestFaultLeavingMasterPoweredOff(t *testing.T) {
	f := startFaultLab(t, "msfoff")
	m3, _ := f.lab.Machine("m3")
	f.lab.Exec(f.ctx, "m3", "systemctl", "poweroff") // the machine may go before it answers
	deadline := time.Now().Add(2 * time.Minute)
	for procAlive(m3.PID) || procAlive(m3.NspawnPID) {
		if time.Now().After(deadline) {
			t.Fatal("m3 did not power off within 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}

	refused, _ := f.plan(shrink)
	if len(refused.Refusals) == 0 {
		t.Fatal("a plan without --offline was not refused though m3 is down")
	}
	if r := refused.Refusals[0].String(); !strings.Contains(r, "m3") || !strings.Contains(r, "--offline") {
		t.Errorf("the refusal does not name m3 and the way out, --offline: %s", r)
	}

	target := shrink
	target.Offline = []string{"m3"}
	p, path := f.plan(target)
	if len(p.Refusals) > 0 {
		t.Fatalf("plan with --offline m3 refused: %s", p.Refusals[0].Reason)
	}
	sum, out, err := f.apply(path)
	t.Logf("apply:\n%s", out)
	if err != nil {
		t.Fatalf("apply with m3 offline: %v", err)
	}
	warned := false
	for _, w := range sum.Warnings {
		warned = warned || strings.Contains(w, "m3")
	}
	if !warned {
		t.Errorf("no warning names the offline m3: %q", sum.Warnings)
	}
	f.checkShrunk()
}

// procAlive treats a zombie as gone, as the lab does.
func procAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fs := strings.Fields(string(b))
	return len(fs) > 2 && fs[2] != "Z"
}
