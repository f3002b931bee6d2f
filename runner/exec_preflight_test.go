package runner

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
)

// shrinkWorld is the etcd fixture as a cluster to shrink: m1..m3 are masters too (their
// apiservers answer on loopback), m3 leaves, and a worker w1's proxy fronts the three.
type shrinkWorld struct {
	*etcdFixture
	api   map[string]*readyz
	proxy *readyz
	p     *plan.Plan
	r     *run
}

func newShrinkWorld(t *testing.T) *shrinkWorld {
	t.Helper()
	w := &shrinkWorld{etcdFixture: newEtcdFixture(t), api: map[string]*readyz{}, p: &plan.Plan{Cluster: "t"}}
	w.p.Target.Remove = []string{"m3"}
	var servers []string
	for i := range w.fc.inv.Hosts {
		ih := &w.fc.inv.Hosts[i]
		ih.Roles = append(ih.Roles, inventory.RoleMaster)
		paths := cpPaths
		paths.EtcdUnit = ih.Paths.EtcdUnit
		ih.Paths = paths
		w.api[ih.Name] = serveAPIServer(t, w.fc.hosts[ih.Name])
		w.fc.hosts[ih.Name].SetUnit("etcd.service", unitRunning)
		servers = append(servers, net.JoinHostPort(ih.Address, "6443"))
	}
	w1 := hosttest.New("w1")
	w.fc.hosts["w1"] = w1
	var cfg lb.NodeConfig
	w.proxy, cfg = serveProxy(t, w1, servers)
	wp := cpPaths
	wp.NginxListen = w.proxy.Addr()
	w.fc.inv.Hosts = append(w.fc.inv.Hosts, inventory.Host{Name: "w1", Address: "192.0.2.11", Roles: []inventory.Role{inventory.RoleWorker}, Paths: wp})
	w.p.Facts.LB = map[string]lb.NodeConfig{"w1": cfg}
	for _, ih := range w.fc.inv.Hosts {
		w.p.Facts.Hosts = append(w.p.Facts.Hosts, plan.Host{Name: ih.Name, Address: ih.Address, Roles: ih.Roles, Paths: ih.Paths, Reachable: true})
	}
	w.r = w.run(w.p)
	return w
}

func (w *shrinkWorld) preflight(t *testing.T) (outcome, error) {
	t.Helper()
	return apply(t, w.r, mkStep(plan.KindPreflight, "", nil))
}

// preflight: passes on a healthy cluster, saying what it checked; refuses an unreachable
// host (not one planned offline), an apiserver that refuses its probe, a CA that cannot
// re-sign the plan's certificates, and an unhealthy member (not one planned offline).
func TestExecutorPreflight(t *testing.T) {
	w := newShrinkWorld(t)
	out, err := w.preflight(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hosts reachable: 4", "etcd members healthy: 3 of 3", "kube-apiserver ready on m1, m2"} {
		if !strings.Contains(out.note, want) {
			t.Errorf("note %q lacks %q", out.note, want)
		}
	}

	w.p.Facts.Hosts = append(w.p.Facts.Hosts, plan.Host{Name: "m9", Address: "192.0.2.9"})
	if _, err := w.preflight(t); !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "host m9 unreachable") {
		t.Errorf("unreachable host: %v, want ErrPreflight naming m9", err)
	}
	w.p.Target.Offline = []string{"m9"}
	if _, err := w.preflight(t); err != nil {
		t.Errorf("unreachable host planned offline: %v", err)
	}

	w.api["m2"].set(http.StatusUnauthorized)
	if _, err := w.preflight(t); !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "m2") {
		t.Errorf("apiserver refusing its probe: %v", err)
	}
	w.api["m2"].set(http.StatusOK)

	certWorld(t, w.p, w.fc.hosts, "m1", "m2")
	if _, err := w.preflight(t); err != nil {
		t.Errorf("with a certificate to re-sign: %v", err)
	}
	w.fc.hosts["m1"].SetFile("/etc/kubernetes/ssl/ca-key.pem", "not a key")
	if _, err := w.preflight(t); !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "CA on m1") {
		t.Errorf("a CA that cannot sign: %v", err)
	}
	w.p.Steps = nil

	// Before an etcd restart (certificates): every member healthy, so one may be down.
	if err := w.r.quorumWithout(ctxT(t)); err != nil {
		t.Errorf("quorum check with 3 healthy members: %v", err)
	}
	w.ec.Stop(2)
	if err := w.r.quorumWithout(ctxT(t)); !errors.Is(err, etcd.ErrQuorumAtRisk) {
		t.Errorf("quorum check with 2 of 3 healthy: %v, want ErrQuorumAtRisk", err)
	}
	if _, err := w.preflight(t); !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "etcd member m3") {
		t.Errorf("unhealthy member: %v", err)
	}
	w.p.Target.Offline = append(w.p.Target.Offline, "m3")
	out, err = w.preflight(t)
	if err != nil || !strings.Contains(out.note, "unhealthy: m3 (planned offline)") {
		t.Errorf("unhealthy member planned offline: %v, note %q", err, out.note)
	}
	if _, err := apply(t, hostRun(hostsOnly{}, &plan.Plan{}), mkStep(plan.KindPreflight, "", nil)); !errors.Is(err, ErrPreflight) {
		t.Errorf("no etcd: %v", err)
	}
}

// etcd/move-leader: done while the leader stays; moves it off a leaving member; refuses a
// malformed ID before anything.
func TestExecutorMoveLeader(t *testing.T) {
	t.Parallel() // its own etcd and fakes
	f := newEtcdFixture(t)
	facts, err := f.cli.Observe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	leader := facts.LeaderID
	var other uint64
	for _, id := range f.ids {
		if id != leader {
			other = id
		}
	}
	stays := mkStep(plan.KindMoveLeader, "", plan.MoveLeaderParams{Leaving: []string{etcd.FormatID(other)}})
	r := f.run(&plan.Plan{Steps: []plan.Step{stays}})
	if !doneOf(t, r, stays) {
		t.Error("not done while the leader stays")
	}
	moves := mkStep(plan.KindMoveLeader, "", plan.MoveLeaderParams{Leaving: []string{etcd.FormatID(leader)}})
	if doneOf(t, r, moves) {
		t.Fatal("done while the leader leaves")
	}
	out, err := apply(t, r, moves)
	if err != nil {
		t.Fatal(err)
	}
	after, err := f.cli.Observe(ctxT(t))
	if err != nil || after.LeaderID == leader || after.LeaderID == 0 {
		t.Errorf("leader after the move %x (was %x): %v", after.LeaderID, leader, err)
	}
	if len(out.changes) != 1 || out.changes[0].Action != "move-leader" {
		t.Errorf("changes %+v", out.changes)
	}
	if !doneOf(t, r, moves) {
		t.Error("not done after the move")
	}
	var all []string
	for _, id := range f.ids {
		all = append(all, etcd.FormatID(id))
	}
	every := mkStep(plan.KindMoveLeader, "", plan.MoveLeaderParams{Leaving: all})
	if _, err := apply(t, r, every); err == nil {
		t.Error("moved the leader with every member leaving")
	}
	bad := mkStep(plan.KindMoveLeader, "", plan.MoveLeaderParams{Leaving: []string{"zz"}})
	if _, err := r.executor(bad); err == nil || !strings.Contains(err.Error(), "leaving") {
		t.Errorf("malformed member ID: %v", err)
	}
}
