package runner

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv/etcdtest"
)

// fakeCluster gives the executors fake hosts, a real etcd on loopback and a fake API (each
// refused when nil).
type fakeCluster struct {
	inv   *inventory.Inventory
	hosts map[string]*hosttest.Host
	etcd  *etcd.Client
	kube  kubernetes.Interface
}

func (c *fakeCluster) Host(_ context.Context, name string) (host.Host, error) {
	return fakeHost(c.hosts, name)
}
func (c *fakeCluster) Etcd(context.Context) (*etcd.Client, error) {
	if c.etcd == nil {
		return nil, errors.New("no etcd in this test")
	}
	return c.etcd, nil
}
func (c *fakeCluster) EtcdKV(context.Context) (*clientv3.Client, error) {
	return nil, errors.New("no lock in executor tests")
}
func (c *fakeCluster) Kube() (kubernetes.Interface, *rest.Config, error) {
	if c.kube == nil {
		return nil, nil, errors.New("no API in this test")
	}
	return c.kube, &rest.Config{}, nil
}
func (c *fakeCluster) Inventory() *inventory.Inventory { return c.inv }

// etcdFixture is a 3-member etcd on loopback whose members "run" on fake hosts m1..m3.
type etcdFixture struct {
	t   *testing.T
	ec  *etcdtest.Cluster
	cli *etcd.Client
	fc  *fakeCluster
	ids map[string]uint64 // host -> member ID
}

func newEtcdFixture(t *testing.T) *etcdFixture {
	t.Helper()
	ec := etcdtest.Start(t, 3)
	paths := ec.TLS()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := etcd.Dial(ctx, ec.Endpoints(), etcd.TLSFiles{CA: read(paths.CA), Cert: read(paths.Cert), Key: read(paths.Key)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	f := &etcdFixture{t: t, ec: ec, cli: cli, ids: map[string]uint64{},
		fc: &fakeCluster{inv: &inventory.Inventory{Cluster: "t"}, hosts: map[string]*hosttest.Host{}, etcd: cli}}
	facts, err := cli.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		name := []string{"m1", "m2", "m3"}[i]
		h := hosttest.New(name)
		h.SetUnit("etcd.service", host.UnitStatus{ActiveState: "active", SubState: "running", UnitFileState: "enabled"})
		f.fc.hosts[name] = h
		f.fc.inv.Hosts = append(f.fc.inv.Hosts, inventory.Host{Name: name, Address: ec.IP(i), Roles: []inventory.Role{inventory.RoleEtcd},
			Paths: inventory.Paths{EtcdUnit: "etcd.service"}})
		for _, m := range facts.Members {
			if slices.Contains(m.PeerURLs, ec.PeerURL(i)) {
				f.ids[name] = m.ID
			}
		}
	}
	return f
}

// run is a runner run over the fixture, for the plan's steps.
func (f *etcdFixture) run(p *plan.Plan) *run {
	r := hostRun(f.fc, p)
	r.opts = Options{SnapshotDir: f.t.TempDir() + "/snap", SnapshotMaxAge: DefaultSnapshotMaxAge}
	return r
}

func (f *etcdFixture) removeStep(host string, id uint64, peer string) plan.Step {
	return plan.Step{ID: plan.KindRemoveMember + "/" + host, Kind: plan.KindRemoveMember, Host: host, Risk: plan.Irreversible,
		Params: map[string]string{"member_id": etcd.FormatID(id), "member": host, "peer_urls": peer}}
}

func (f *etcdFixture) stopStep(host string, i int) plan.Step {
	return plan.Step{ID: plan.KindStopEtcd + "/" + host, Kind: plan.KindStopEtcd, Host: host, Risk: plan.Disruptive,
		Params: map[string]string{"unit": "etcd.service", "endpoint": f.ec.Endpoint(i), "address": f.ec.IP(i)}}
}

func apply(t *testing.T, r *run, st plan.Step) (outcome, error) {
	t.Helper()
	ex, err := r.executor(st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return ex.apply(ctx)
}

// The etcd family against a real 3-member etcd: a stop refused while its member votes, the
// removal of the planned member (never another), its stop once removed, and the replaced-
// member refusal.
func TestExecutorsEtcdMembership(t *testing.T) {
	f := newEtcdFixture(t)
	rm2 := f.removeStep("m2", f.ids["m2"], f.ec.PeerURL(1))
	stop2 := f.stopStep("m2", 1)
	p := &plan.Plan{Steps: []plan.Step{rm2, stop2}}
	r := f.run(p)

	// Stop before the removal: the member votes, nothing is stopped.
	if _, err := apply(t, r, stop2); !errors.Is(err, ErrStillMember) {
		t.Fatalf("stop of a voting member: %v, want ErrStillMember", err)
	}
	if u := f.fc.hosts["m2"].Unit("etcd.service"); u.ActiveState != "active" {
		t.Fatalf("a refused stop changed the unit: %+v", u)
	}
	if doneOf(t, r, rm2) {
		t.Fatal("removal done before it ran")
	}

	// The planned member is removed, and only it.
	if _, err := apply(t, r, rm2); err != nil {
		t.Fatalf("remove m2's member: %v", err)
	}
	members, err := f.cli.MemberList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || slices.ContainsFunc(members, func(m etcd.Member) bool { return m.ID == f.ids["m2"] }) {
		t.Fatalf("members after the removal: %+v", members)
	}
	if !doneOf(t, r, rm2) {
		t.Error("removal not done after it ran")
	}

	// The removed member's process ends (as etcd does, exit 0: systemd says inactive, the unit
	// stays enabled), then its stop proves and acts.
	f.ec.Stop(1)
	f.fc.hosts["m2"].SetUnit("etcd.service", host.UnitStatus{ActiveState: "inactive", SubState: "dead", UnitFileState: "enabled"})
	out, err := apply(t, r, stop2)
	if err != nil {
		t.Fatalf("stop of the removed member: %v", err)
	}
	if u := f.fc.hosts["m2"].Unit("etcd.service"); u.ActiveState != "inactive" || u.UnitFileState != "disabled" {
		t.Errorf("unit after the stop: %+v", u)
	}
	if !doneOf(t, r, stop2) {
		t.Errorf("stop not done after it ran (%s)", out.note)
	}

	// A plan that names m3 by a stale ID at m3's peer URL (a member replaced since): refused.
	stale := f.removeStep("m3", 0xdeadbeef, f.ec.PeerURL(2))
	if _, err := apply(t, f.run(&plan.Plan{Steps: []plan.Step{stale}}), stale); !errors.Is(err, plan.ErrStalePlan) || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("removal of a replaced member: %v, want a stale-plan refusal", err)
	}
	if members, _ := f.cli.MemberList(context.Background()); len(members) != 2 {
		t.Errorf("a refused removal changed the membership: %+v", members)
	}
}

// The snapshot step: a verified snapshot 0600 in its own 0700 folder, done while fresh, taken
// again once older than the bound.
func TestExecutorSnapshot(t *testing.T) {
	f := newEtcdFixture(t)
	kv := f.ec.Client(t)
	for _, k := range []string{"/a", "/b", "/c"} {
		if _, err := kv.Put(context.Background(), k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	st := plan.Step{ID: plan.KindSnapshot, Kind: plan.KindSnapshot, Risk: plan.Safe}
	r := f.run(&plan.Plan{Steps: []plan.Step{st}})
	if doneOf(t, r, st) {
		t.Fatal("snapshot done before it ran")
	}
	out, err := apply(t, r, st)
	if err != nil {
		t.Fatal(err)
	}
	if out.snapshot == nil || out.snapshot.Keys < 3 || out.snapshot.TakenAt.IsZero() {
		t.Fatalf("snapshot outcome %+v", out.snapshot)
	}
	fi, err := os.Stat(out.snapshot.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if di, err := os.Stat(r.opts.SnapshotDir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("snapshot folder mode %v (%v), want 0700", di.Mode().Perm(), err)
	}
	r.history.Snapshot = out.snapshot
	if !doneOf(t, r, st) {
		t.Error("a fresh snapshot is not done")
	}
	if err := r.checkSnapshot(); err != nil {
		t.Errorf("gate with a fresh snapshot: %v", err)
	}
	r.history.Snapshot.TakenAt = time.Now().Add(-time.Hour)
	if doneOf(t, r, st) {
		t.Error("an hour-old snapshot counts as done")
	}
	if err := r.checkSnapshot(); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("gate with an hour-old snapshot: %v, want ErrNoSnapshot", err)
	}
}

// nodes/cleanup's own proof: a host that is still an etcd member, or still runs an
// apiserver, is never cleaned, whatever the plan says.
func TestCleanupProvesTheHostLeft(t *testing.T) {
	f := newEtcdFixture(t)
	r := f.run(&plan.Plan{})
	ctx := context.Background()
	ih, _ := f.fc.inv.Host("m3")
	if err := r.proveLeft(ctx, "m3", f.fc.hosts["m3"], ih); !errors.Is(err, ErrStillControlPlane) || !strings.Contains(err.Error(), "etcd member") {
		t.Errorf("cleanup of a member's host: %v, want ErrStillControlPlane", err)
	}
	rm := f.removeStep("m3", f.ids["m3"], f.ec.PeerURL(2))
	if _, err := apply(t, f.run(&plan.Plan{Steps: []plan.Step{rm}}), rm); err != nil {
		t.Fatal(err)
	}
	ih.Paths.APIServerUnit = "kube-apiserver.service"
	f.fc.hosts["m3"].SetUnit("kube-apiserver.service", host.UnitStatus{ActiveState: "active", SubState: "running", UnitFileState: "enabled"})
	if err := r.proveLeft(ctx, "m3", f.fc.hosts["m3"], ih); !errors.Is(err, ErrStillControlPlane) || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("cleanup of a host running an apiserver: %v, want ErrStillControlPlane", err)
	}
	f.fc.hosts["m3"].SetUnit("kube-apiserver.service", host.UnitStatus{ActiveState: "inactive", UnitFileState: "disabled"})
	if err := r.proveLeft(ctx, "m3", f.fc.hosts["m3"], ih); err != nil {
		t.Errorf("cleanup of a host that left: %v", err)
	}
}

// nodes/wipe on a host that left: its keys removed, etcd's data moved aside 0700; refused
// while the host is still a member.
func TestExecutorWipe(t *testing.T) {
	f := newEtcdFixture(t)
	h := f.fc.hosts["m3"]
	keys := map[string]bool{"/etc/kubernetes/ssl/ca-key.pem": true, "/etc/kubernetes/ssl/etcd-key.pem": true}
	data := "/var/lib/etcd"
	h.SetFile("/etc/kubernetes/ssl/ca-key.pem", "-----BEGIN RSA PRIVATE KEY-----")
	h.SetFile("/etc/kubernetes/ssl/etcd-key.pem", "-----BEGIN RSA PRIVATE KEY-----")
	h.SetFile(data+"/member/snap/db", "data")
	var cmds []string
	h.RunFunc = func(cmd string) (host.Result, error) {
		cmds = append(cmds, cmd)
		switch {
		case strings.HasPrefix(cmd, "grep -rlE"):
			var out []string
			for k, ok := range keys {
				if ok {
					out = append(out, k)
				}
			}
			slices.Sort(out)
			if len(out) == 0 {
				return host.Result{ExitCode: 1}, &host.CmdError{Host: "m3", Cmd: cmd, ExitCode: 1}
			}
			return host.Result{Stdout: []byte(strings.Join(out, "\n") + "\n")}, nil
		case strings.HasPrefix(cmd, "rm -f -- "):
			keys[strings.Trim(strings.TrimPrefix(cmd, "rm -f -- "), "'")] = false
		}
		return host.Result{}, nil
	}
	st := plan.Step{ID: plan.KindWipe + "/m3", Kind: plan.KindWipe, Host: "m3", Risk: plan.Irreversible,
		Params: map[string]string{"mode": "move", "data_dirs": data}}
	r := f.run(&plan.Plan{Steps: []plan.Step{st}})
	if _, err := apply(t, r, st); !errors.Is(err, ErrStillControlPlane) {
		t.Fatalf("wipe of a member's host: %v, want ErrStillControlPlane", err)
	}
	if slices.ContainsFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "rm ") || strings.HasPrefix(c, "mv ") }) {
		t.Fatalf("a refused wipe ran %v", cmds)
	}
	rm := f.removeStep("m3", f.ids["m3"], f.ec.PeerURL(2))
	if _, err := apply(t, f.run(&plan.Plan{Steps: []plan.Step{rm}}), rm); err != nil {
		t.Fatal(err)
	}
	h.SetUnit("etcd.service", host.UnitStatus{ActiveState: "inactive", UnitFileState: "disabled"})
	out, err := apply(t, r, st)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(cmds, "\n")
	for _, want := range []string{"rm -f -- /etc/kubernetes/ssl/ca-key.pem", "mkdir -p -m 0700 -- /var/backups/mastershrink/left-", "mv -- /var/lib/etcd /var/backups/mastershrink/left-", "chmod -R go-rwx"} {
		if !strings.Contains(joined, want) {
			t.Errorf("wipe ran no %q:\n%s\nnote: %s", want, joined, out.note)
		}
	}
	if !strings.Contains(out.note, "2 key files removed") || !strings.Contains(out.note, "every Secret") {
		t.Errorf("note %q", out.note)
	}
}
