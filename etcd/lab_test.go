package etcd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/seed"
	"github.com/mastershrink/mastershrink/unitfile"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// labVersions are the etcd releases the lab shrinks; 3.4 is Debian's etcd-server package.
var labVersions = []struct{ name, option, want string }{
	{"3.4", testenv.DebianEtcdVersion, "3.4.23"},
	{"3.5", "v3.5.21", "3.5.21"},
	{"3.6", "v3.6.16", "3.6.16"},
}

const labKeys = 2000

// TestLabShrink shrinks a 3-member etcd under systemd to one member on each version, one lab
// after another: snapshot from the leader, a refusal while a survivor is stopped, leadership
// moved off the leaving members, a crash between a removal and the host-side stop followed by
// a rerun, the 2-to-1 refusals with the other member down, the last removal, and the
// survivor's unit rewritten without a restart.
func TestLabShrink(t *testing.T) {
	testenv.RequireLab(t)
	for _, v := range labVersions {
		t.Run(v.name, func(t *testing.T) { labShrink(t, v.option, v.want) })
	}
}

// labEtcd is one lab with its etcd clients and the mapping between members and machines.
type labEtcd struct {
	lab    *testenv.Lab
	inv    *inventory.Inventory
	cli    *etcd.Client
	kv     *clientv3.Client
	unit   string
	hostOf map[uint64]string // member ID -> machine name
	idOf   map[string]uint64
}

func labShrink(t *testing.T, option, want string) {
	lab := testenv.StartLab(t, testenv.Options{Masters: 3, Workers: 1, EtcdVersion: option})
	ctx := testCtx(t, 15*time.Minute)
	e := openLabEtcd(t, ctx, lab)

	// The 3.7 client talks to this server: members, status and health all filled.
	f := observe(t, e.cli)
	if len(f.Members) != 3 || f.LeaderID == 0 {
		t.Fatalf("etcd %s at start: %+v", want, f)
	}
	for _, m := range f.Members {
		if !m.Healthy || m.Version != want || m.RaftAppliedIndex == 0 || m.DBSize == 0 {
			t.Fatalf("etcd %s at start: member %s: %+v", want, m.Name, m)
		}
	}
	if err := seed.WriteKeys(ctx, e.kv, "/lab/", labKeys); err != nil {
		t.Fatal(err)
	}

	// Snapshot from the leader, verified, on the operator's side.
	info, err := e.cli.Snapshot(ctx, filepath.Join(t.TempDir(), "snapshots"), nil) // a folder of its own, made 0700
	if err != nil {
		t.Fatalf("snapshot on etcd %s: %v", want, err)
	}
	if info.Leader != observe(t, e.cli).LeaderID || info.Keys < labKeys || info.Revision == 0 {
		t.Fatalf("snapshot %+v: not from the leader or missing keys", info)
	}
	if again, err := etcd.VerifySnapshot(info.Path); err != nil || again.SHA256 != info.SHA256 || again.Keys != info.Keys {
		t.Fatalf("snapshot does not verify again: %+v, %v", again, err)
	}
	t.Logf("etcd %s: snapshot from %s: %d bytes, revision %d, %d keys, storage version %q", want, info.LeaderName, info.Size, info.Revision, info.Keys, info.Version)

	m2, m3 := e.idOf["m2"], e.idOf["m3"]

	// Refusal: a survivor stopped before the removal; nothing changes.
	before := e.snapshotState(t, ctx)
	e.exec(t, ctx, "m1", "systemctl", "stop", e.unit)
	wantRefusal(t, e.cli.RemoveMember(ctx, m2, false), etcd.ErrQuorumAtRisk)
	e.exec(t, ctx, "m1", "systemctl", "start", e.unit)
	e.waitHealthy(t, ctx, 3)
	if after := e.snapshotState(t, ctx); after != before {
		t.Fatalf("a refused removal changed the cluster:\nbefore %s\nafter  %s", before, after)
	}

	// Leadership: put it on a leaving member, check that removing the leader is refused,
	// then move it to the member PickNewLeader chooses.
	f = observe(t, e.cli)
	if e.hostOf[f.LeaderID] == "m1" {
		if err := e.cli.MoveLeader(ctx, m2); err != nil {
			t.Fatal(err)
		}
		f = observe(t, e.cli)
	}
	wantRefusal(t, e.cli.RemoveMember(ctx, f.LeaderID, false), etcd.ErrLeaderLeaving)
	to, err := etcd.PickNewLeader(f, []uint64{m2, m3})
	if err != nil || to != e.idOf["m1"] {
		t.Fatalf("PickNewLeader = %x, %v; want m1 (%x)", to, err, e.idOf["m1"])
	}
	if err := e.cli.MoveLeader(ctx, to); err != nil {
		t.Fatalf("move leadership off the leaving members on etcd %s: %v", want, err)
	}
	if f = observe(t, e.cli); f.LeaderID != to {
		t.Fatalf("leader %x after MoveLeader to %x", f.LeaderID, to)
	}

	// m2: a crash between the removal and the host-side stop, then a rerun.
	crashAfterRemove(t, ctx, lab, m2)
	behaviour := e.watchRemoved(t, ctx, "m2", 20*time.Second)
	t.Logf("etcd %s: removed but not stopped, m2's unit: %s", want, behaviour)
	// The host reboots before the rerun: the unit is still enabled, so etcd starts again.
	e.exec(t, ctx, "m2", "systemctl", "start", "--no-block", e.unit)
	t.Logf("etcd %s: removed member started again: %s", want, e.watchRemoved(t, ctx, "m2", 20*time.Second))
	if out, err := e.lab.Exec(ctx, "m2", "sh", "-c", "journalctl -o cat -u "+e.unit+" | grep -iE 'removed|fatal|panic' | tail -n 3"); err == nil {
		t.Logf("etcd %s: m2's etcd said: %s", want, strings.TrimSpace(string(out)))
	}
	if err := e.cli.RemoveMember(ctx, m2, false); err != nil {
		t.Fatalf("rerun: removing the already removed m2: %v", err)
	}
	e.stopAndDisable(t, ctx, "m2")
	e.assertRetired(t, ctx, "m2", -1)

	// 2 to 1 with the other member down is refused, alive-checked or offline.
	before = e.snapshotState(t, ctx)
	e.exec(t, ctx, "m3", "systemctl", "stop", e.unit)
	wantRefusal(t, e.cli.RemoveMember(ctx, m3, false), etcd.ErrQuorumAtRisk)
	wantRefusal(t, e.cli.RemoveMember(ctx, m3, true), etcd.ErrQuorumAtRisk)
	e.exec(t, ctx, "m3", "systemctl", "start", e.unit)
	e.waitHealthy(t, ctx, 2)
	if after := e.snapshotState(t, ctx); after != before {
		t.Fatalf("a refused 2-to-1 removal changed the cluster:\nbefore %s\nafter  %s", before, after)
	}

	// m3: the normal path, stopped and disabled right after the removal commits.
	if f = observe(t, e.cli); f.LeaderID != e.idOf["m1"] {
		if err := e.cli.MoveLeader(ctx, e.idOf["m1"]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.cli.RemoveMember(ctx, m3, false); err != nil {
		t.Fatalf("remove m3 on etcd %s: %v", want, err)
	}
	e.stopAndDisable(t, ctx, "m3")
	e.assertRetired(t, ctx, "m3", 0)

	// The survivor's unit: rewritten, reloaded, not restarted.
	f = observe(t, e.cli)
	if len(f.Members) != 1 || f.Members[0].ID != e.idOf["m1"] || !f.Members[0].Healthy || f.LeaderID != e.idOf["m1"] {
		t.Fatalf("after the shrink: %+v", f)
	}
	pidBefore := e.props(t, ctx, "m1", "MainPID")["MainPID"]
	h1 := e.connect(t, ctx, "m1")
	initial := etcd.InitialClusterFor(f, []string{f.Members[0].Name})
	since := e.exec(t, ctx, "m1", "date", "+%s")
	changes, err := rewriteSurvivorUnit(ctx, h1, e.unit, initial)
	if err != nil {
		t.Fatalf("rewrite the survivor's unit on etcd %s: %v", want, err)
	}
	if len(changes) == 0 {
		t.Fatal("the survivor's unit needed no change")
	}
	e.checkSurvivorUnit(t, ctx, initial, pidBefore, strings.TrimSpace(since))
	if again, err := rewriteSurvivorUnit(ctx, h1, e.unit, initial); err != nil || len(again) != 0 {
		t.Errorf("second rewrite: %d changes, %v; want none", len(again), err)
	}

	survivor := e.memberKV(t, "m1")
	if err := seed.CheckKeys(ctx, survivor, "/lab/", labKeys); err != nil {
		t.Fatalf("etcd %s after the shrink: %v", want, err)
	}
	if _, err := survivor.Put(ctx, "/lab/after", "x"); err != nil {
		t.Fatalf("the survivor takes no writes: %v", err)
	}
	// Nothing brought the removed members back while the survivor was checked.
	e.assertRetired(t, ctx, "m3", 0)
}

func openLabEtcd(t *testing.T, ctx context.Context, lab *testenv.Lab) *labEtcd {
	t.Helper()
	inv, err := inventory.Load(lab.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	files := labTLS(t, lab.EtcdCA, lab.EtcdCert, lab.EtcdKey)
	cli, err := etcd.Dial(ctx, lab.EtcdEndpoints(), files, lab.DialContext)
	if err != nil {
		t.Fatalf("dial the lab's etcd: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	e := &labEtcd{lab: lab, inv: inv, cli: cli, hostOf: map[uint64]string{}, idOf: map[string]uint64{}}
	e.kv = e.newKV(t, lab.EtcdEndpoints()...)
	h, ok := inv.Host("m1")
	if !ok {
		t.Fatal("no m1 in the lab inventory")
	}
	e.unit = h.Paths.EtcdUnit + ".service"
	for _, m := range observe(t, cli).Members {
		u, err := url.Parse(m.PeerURLs[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, mc := range lab.Machines {
			if mc.Address == u.Hostname() {
				e.hostOf[m.ID], e.idOf[mc.Name] = mc.Name, m.ID
			}
		}
	}
	if len(e.idOf) != 3 {
		t.Fatalf("members by machine: %v", e.idOf)
	}
	return e
}

func labTLS(t *testing.T, ca, cert, key string) etcd.TLSFiles {
	t.Helper()
	var f etcd.TLSFiles
	for dst, p := range map[*[]byte]string{&f.CA: ca, &f.Cert: cert, &f.Key: key} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		*dst = b
	}
	return f
}

// newKV is a plain clientv3 client through the lab's namespace, for seeding and checking keys.
func (e *labEtcd) newKV(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := e.lab.EtcdClient(endpoints...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (e *labEtcd) memberKV(t *testing.T, machine string) *clientv3.Client {
	t.Helper()
	m, _ := e.lab.Machine(machine)
	return e.newKV(t, "https://"+m.Address+":2379")
}

func (e *labEtcd) connect(t *testing.T, ctx context.Context, machine string) host.Host {
	t.Helper()
	h, err := host.Connect(ctx, e.inv, machine, e.lab.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func (e *labEtcd) exec(t *testing.T, ctx context.Context, machine string, cmd ...string) string {
	t.Helper()
	out, err := e.lab.Exec(ctx, machine, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// props reads unit properties with systemctl show on the machine itself.
func (e *labEtcd) props(t *testing.T, ctx context.Context, machine string, names ...string) map[string]string {
	t.Helper()
	out := e.exec(t, ctx, machine, "systemctl", "show", "--property="+strings.Join(names, ","), e.unit)
	p := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	return p
}

// snapshotState is what a refused step must leave untouched: the member list and every
// member's unit state.
func (e *labEtcd) snapshotState(t *testing.T, ctx context.Context) string {
	t.Helper()
	resp, err := e.kv.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range resp.Members {
		ids = append(ids, etcd.FormatID(m.ID))
	}
	slices.Sort(ids)
	s := "members " + strings.Join(ids, ",")
	for _, name := range []string{"m1", "m2", "m3"} {
		p := e.props(t, ctx, name, "ActiveState", "UnitFileState")
		s += fmt.Sprintf("; %s %s/%s", name, p["ActiveState"], p["UnitFileState"])
	}
	if err := seed.CheckKeys(ctx, e.kv, "/lab/", labKeys); err != nil {
		s += "; " + err.Error()
	}
	return s
}

func (e *labEtcd) waitHealthy(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		f, err := e.cli.Observe(ctx)
		healthy := 0
		for _, m := range f.Members {
			if m.Healthy {
				healthy++
			}
		}
		if err == nil && len(f.Members) == n && healthy == n && f.LeaderID != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not back to %d healthy members: %+v, %v", n, f, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// watchRemoved records what a removed member's unit does when nothing stops it: the
// difference between versions this tool exists to handle.
func (e *labEtcd) watchRemoved(t *testing.T, ctx context.Context, machine string, window time.Duration) string {
	t.Helper()
	var seen []string
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		p := e.props(t, ctx, machine, "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")
		s := fmt.Sprintf("%s/%s result=%s exit=%s restarts=%s", p["ActiveState"], p["SubState"], p["Result"], p["ExecMainStatus"], p["NRestarts"])
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return strings.Join(seen, " -> ")
}

func (e *labEtcd) stopAndDisable(t *testing.T, ctx context.Context, machine string) {
	t.Helper()
	h := e.connect(t, ctx, machine)
	if err := etcd.StopAndDisable(ctx, h, e.unit); err != nil {
		t.Fatalf("stop and disable etcd on %s: %v", machine, err)
	}
	// A rerun finds it done.
	if err := etcd.StopAndDisable(ctx, h, e.unit); err != nil {
		t.Fatalf("stop and disable etcd on %s again: %v", machine, err)
	}
}

// assertRetired checks, for longer than the unit's RestartSec, at every poll, that the
// removed member's etcd is stopped, disabled, has no process, and is not restarted.
// restarts is the NRestarts it must keep; -1 means whatever it is at the first poll (a
// member that crash-looped before it was stopped).
func (e *labEtcd) assertRetired(t *testing.T, ctx context.Context, machine string, restarts int) {
	t.Helper()
	end := time.Now().Add(8 * time.Second) // RestartSec=5 in the lab's unit
	for first := true; first || time.Now().Before(end); first = false {
		p := e.props(t, ctx, machine, "ActiveState", "SubState", "UnitFileState", "NRestarts", "MainPID")
		n, err := strconv.Atoi(p["NRestarts"])
		if err != nil {
			t.Fatalf("%s: NRestarts %q", machine, p["NRestarts"])
		}
		if restarts < 0 {
			restarts = n
			t.Logf("%s: NRestarts %d once stopped and disabled (the daemon-reload may drop the counter)", machine, n)
		}
		if (p["ActiveState"] != "inactive" && p["ActiveState"] != "failed") || p["UnitFileState"] != "disabled" || n != restarts || p["MainPID"] != "0" {
			t.Fatalf("removed member on %s is not retired: %v (want %d restarts)", machine, p, restarts)
		}
		if out, err := e.lab.Exec(ctx, machine, "pgrep", "-x", "etcd"); err == nil {
			t.Fatalf("an etcd process still runs on %s: %s", machine, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkSurvivorUnit checks the rewritten unit on m1: new flags on disk and in systemd, no
// pending daemon-reload, no warning from systemd about the unit, and etcd not restarted.
func (e *labEtcd) checkSurvivorUnit(t *testing.T, ctx context.Context, initial, pidBefore, since string) {
	t.Helper()
	p := e.props(t, ctx, "m1", "NeedDaemonReload", "MainPID", "ExecStart", "FragmentPath", "ActiveState")
	if p["NeedDaemonReload"] != "no" {
		t.Errorf("NeedDaemonReload=%s after the rewrite", p["NeedDaemonReload"])
	}
	if p["MainPID"] != pidBefore || p["ActiveState"] != "active" {
		t.Errorf("etcd on m1 restarted or stopped by the rewrite: %v (PID before %s)", p, pidBefore)
	}
	for _, flag := range []string{"--initial-cluster=" + initial, "--initial-cluster-state=existing"} {
		if !strings.Contains(p["ExecStart"], flag) {
			t.Errorf("systemd's ExecStart lacks %s: %s", flag, p["ExecStart"])
		}
		if text := e.exec(t, ctx, "m1", "cat", p["FragmentPath"]); !strings.Contains(text, flag) {
			t.Errorf("%s lacks %s:\n%s", p["FragmentPath"], flag, text)
		}
	}
	if out := e.exec(t, ctx, "m1", "systemctl", "daemon-reload"); strings.TrimSpace(out) != "" {
		t.Errorf("systemctl daemon-reload said: %s", out)
	}
	if out := e.exec(t, ctx, "m1", "systemctl", "status", "--no-pager", "--lines=0", e.unit); strings.Contains(out, "Warning") {
		t.Errorf("systemctl status warns: %s", out)
	}
	journal := e.exec(t, ctx, "m1", "journalctl", "--no-pager", "-o", "cat", "_PID=1", "--since=@"+since)
	for _, line := range strings.Split(journal, "\n") {
		if strings.Contains(line, e.unit) {
			t.Errorf("systemd about the rewritten unit: %s", line)
		}
	}
}

// crashSpec is what the helper process needs to remove a member in the lab.
type crashSpec struct {
	Endpoints     []string
	CA, Cert, Key string
	NetNS         string
	ID            uint64
}

const crashEnv = "MASTERSHRINK_ETCD_CRASH_HELPER"

// crashAfterRemove runs the removal in a helper process that blocks where the host-side stop
// would follow, and kills it with SIGKILL there, as a crash of the tool would.
func crashAfterRemove(t *testing.T, ctx context.Context, lab *testenv.Lab, id uint64) {
	t.Helper()
	spec, err := json.Marshal(crashSpec{Endpoints: lab.EtcdEndpoints(), CA: lab.EtcdCA, Cert: lab.EtcdCert, Key: lab.EtcdKey, NetNS: lab.NetNS, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLabHelperRemoveThenBlock$", "-test.v", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(spec))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	removed := make(chan bool, 1)
	var lines []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if sc.Text() == "REMOVED-NOW-BLOCKING" {
				removed <- true
				return
			}
		}
		removed <- false
	}()
	ok := false
	select {
	case ok = <-removed:
	case <-time.After(3 * time.Minute):
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	if !ok {
		t.Fatalf("helper process did not remove the member: %v\n%s\n%s", werr, strings.Join(lines, "\n"), stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper process ended with %v, want killed by SIGKILL", werr)
	}
}

// TestLabHelperRemoveThenBlock is the process crashAfterRemove kills; it runs only as that.
func TestLabHelperRemoveThenBlock(t *testing.T) {
	raw := os.Getenv(crashEnv)
	if raw == "" {
		t.Skip("helper process of TestLabShrink")
	}
	var s crashSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 5*time.Minute)
	cli, err := etcd.Dial(ctx, s.Endpoints, labTLS(t, s.CA, s.Cert, s.Key), testenv.DialerIn(s.NetNS))
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.RemoveMember(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
	fmt.Println("REMOVED-NOW-BLOCKING")
	// StopAndDisable would come here; the parent kills this process first.
	<-ctx.Done()
	t.Fatal("not killed")
}

// rewriteSurvivorUnit does what the etcd/initial-cluster executor does: read the unit, plan
// with PlanSurvivorUnit, apply with ApplySurvivorUnit; the changes made (none when the unit
// was already right).
func rewriteSurvivorUnit(ctx context.Context, h host.Host, unit, initialCluster string) ([]host.FileChange, error) {
	u, err := unitfile.Read(ctx, h, unit)
	if err != nil {
		return nil, err
	}
	changes, err := etcd.PlanSurvivorUnit(u, h.Name(), initialCluster)
	if err != nil {
		return nil, err
	}
	if err := etcd.ApplySurvivorUnit(ctx, h, changes); err != nil {
		return nil, err
	}
	return changes, nil
}
