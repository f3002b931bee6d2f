package runner

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/vip"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const fakeVIP = "192.0.2.100"

// vipWorld is three masters running keepalived for fakeVIP, m3 with the highest priority.
// The VIP is on the host with the highest priority whose keepalived is active, as VRRP
// elects it, unless stuck names a host that keeps it whatever happens.
type vipWorld struct {
	fc    *fakeCluster
	r     *run
	stuck string
}

func keepalivedConf(self int) string {
	var peers []string
	for i := 1; i <= 3; i++ {
		if i != self {
			peers = append(peers, fmt.Sprintf("        192.0.2.%d\n", i))
		}
	}
	return fmt.Sprintf("vrrp_instance VI_1 {\n    priority %d\n    unicast_src_ip 192.0.2.%d\n    unicast_peer {\n%s    }\n    virtual_ipaddress {\n        %s/24\n    }\n}\n",
		100+10*self, self, strings.Join(peers, ""), fakeVIP)
}

func newVIPWorld(t *testing.T) *vipWorld {
	t.Helper()
	master := []inventory.Role{inventory.RoleMaster}
	var fhs []plan.Host
	for i := 1; i <= 3; i++ {
		fhs = append(fhs, plan.Host{Name: fmt.Sprintf("m%d", i), Address: fmt.Sprintf("192.0.2.%d", i), Roles: master, Paths: cpPaths})
	}
	fc, p := newFakes(nil, nil, fhs...)
	w := &vipWorld{fc: fc}
	p.Target.Remove = []string{"m2", "m3"}
	p.Facts.VRRP = map[string]vip.Observed{}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("m%d", i)
		h := fc.hosts[name]
		h.SetFile(vip.DefaultConfig, keepalivedConf(i))
		h.SetUnit(vip.DefaultUnit, host.UnitStatus{LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled", MainPID: 10})
		c, err := vip.Parse(keepalivedConf(i))
		if err != nil {
			t.Fatal(err)
		}
		p.Facts.VRRP[name] = vip.Observed{Path: vip.DefaultConfig, Config: c, Active: true, Enabled: true}
		h.RunFunc = shell(on("ip -o addr show", func(string) (host.Result, error) {
			out := fmt.Sprintf("2: eth0    inet 192.0.2.%d/24 scope global eth0\n", i)
			if w.holder() == name {
				out += "2: eth0    inet " + fakeVIP + "/24 scope global secondary eth0\n"
			}
			return host.Result{Stdout: []byte(out)}, nil
		}))
	}
	w.r = hostRun(fc, p)
	return w
}

func (w *vipWorld) holder() string {
	if w.stuck != "" {
		return w.stuck
	}
	for _, name := range []string{"m3", "m2", "m1"} {
		if w.fc.hosts[name].Unit(vip.DefaultUnit).ActiveState == "active" {
			return name
		}
	}
	return ""
}

func (w *vipWorld) host(name string) *hosttest.Host { return w.fc.hosts[name] }

// vip/release: the backup first (the VIP stays on the leaving holder, whose own release
// comes next), then the holder: the VIP ends on m1; each step is done once keepalived is
// stopped and disabled there and the VIP is held elsewhere, and a rerun changes nothing.
func TestExecutorVIPRelease(t *testing.T) {
	w := newVIPWorld(t)
	params := plan.VIPReleaseParams{Unit: vip.DefaultUnit, VIPs: []string{fakeVIP}, Backups: []string{"m1"}}
	for _, name := range []string{"m2", "m3"} {
		st := mkStep(plan.KindVIPRelease, name, params)
		if doneOf(t, w.r, st) {
			t.Fatalf("%s done before it ran", st.ID)
		}
		out, err := apply(t, w.r, st)
		if err != nil {
			t.Fatalf("%s: %v", st.ID, err)
		}
		u := w.host(name).Unit(vip.DefaultUnit)
		if u.ActiveState != "inactive" || u.UnitFileState != "disabled" {
			t.Errorf("%s keepalived after its release: %+v", name, u)
		}
		want := map[string]string{"m2": fakeVIP + " on m3 (leaving too", "m3": fakeVIP + " on m1"}[name]
		if !strings.Contains(out.note, want) {
			t.Errorf("%s note %q, want %q", st.ID, out.note, want)
		}
		if !doneOf(t, w.r, st) {
			t.Errorf("%s not done after it ran", st.ID)
		}
	}
	if w.holder() != "m1" {
		t.Errorf("the VIP ended on %s", w.holder())
	}
}

// vip/release refuses to stop the holder while no staying host runs keepalived for the VIP,
// and fails (naming it) when the VIP stays where it was.
func TestExecutorVIPReleaseFailures(t *testing.T) {
	w := newVIPWorld(t)
	st := mkStep(plan.KindVIPRelease, "m3", plan.VIPReleaseParams{Unit: vip.DefaultUnit, VIPs: []string{fakeVIP}, Backups: []string{"m1"}})
	w.host("m1").SetUnit(vip.DefaultUnit, host.UnitStatus{LoadState: "loaded", ActiveState: "inactive", UnitFileState: "enabled"})
	_, err := apply(t, w.r, st)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "m1: keepalived not running") {
		t.Fatalf("release without a running staying keepalived: %v", err)
	}
	if w.host("m3").Unit(vip.DefaultUnit).ActiveState != "active" {
		t.Errorf("keepalived on m3 stopped although nothing could take the VIP")
	}

	w = newVIPWorld(t)
	w.stuck = "m3"
	defer func(d time.Duration) { vipMoveTimeout = d }(vipMoveTimeout)
	vipMoveTimeout = time.Second
	if _, err := apply(t, w.r, st); err == nil || !strings.Contains(err.Error(), "still on m3") {
		t.Errorf("a VIP that did not move: %v", err)
	}
}

// vip/release where mastershrink's kubeconfig reaches the API through the VIP: once the VIP
// has moved, the step asks /readyz through it until three answers in a row are ready, and
// fails naming the VIP when the new holder does not answer before the deadline.
func TestExecutorVIPReleaseAsksTheAPIThroughTheVIP(t *testing.T) {
	var failing, calls atomic.Int32 // failing: answers still to fail
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/readyz" {
			http.NotFound(rw, req)
			return
		}
		calls.Add(1)
		if failing.Add(-1) >= 0 {
			http.Error(rw, "[-]etcd failed: reason withheld", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(rw, "ok")
	}))
	defer srv.Close()
	kube, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { vipMoveTimeout = d }(vipMoveTimeout)
	vipMoveTimeout = 2 * time.Second
	params := plan.VIPReleaseParams{Unit: vip.DefaultUnit, VIPs: []string{fakeVIP}, Backups: []string{"m1"}}

	for _, tc := range []struct {
		name      string
		fail      int32
		wantErr   string
		wantCalls int32
	}{
		{"one failed answer, then three ready", 1, "", 4},
		{"never ready", 1 << 20, "the API does not answer through the VIP " + fakeVIP, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newVIPWorld(t)
			w.fc.kube = kube
			w.r.p.Facts.KubeServer = "https://" + fakeVIP + ":8443"
			failing.Store(tc.fail)
			calls.Store(0)
			// m2 first: the VIP stays on m3, leaving too, and the API is not asked.
			if _, err := apply(t, w.r, mkStep(plan.KindVIPRelease, "m2", params)); err != nil || calls.Load() != 0 {
				t.Fatalf("m2's release: %v, %d /readyz asked", err, calls.Load())
			}
			out, err := apply(t, w.r, mkStep(plan.KindVIPRelease, "m3", params))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("m3's release: %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("m3's release: %v", err)
			}
			if !strings.Contains(out.note, fakeVIP+" on m1, /readyz through it answers") || calls.Load() != tc.wantCalls {
				t.Errorf("note %q after %d /readyz, want %d", out.note, calls.Load(), tc.wantCalls)
			}
		})
	}
}

// vip/update: m1's peers rewritten and checked; keepalived is reloaded only where it holds no
// VIP (a reload re-elects), and a config keepalived refuses is put back.
func TestExecutorVIPUpdate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		holder     bool
		configTest func(string) (host.Result, error)
		wantErr    string
		wantReload bool
	}{
		{name: "holder", holder: true},
		{name: "backup", wantReload: true},
		{name: "refused", configTest: exitWith("m1", 1, "Unknown keyword 'unicast_peerz'"), wantErr: "keepalived refuses the new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newVIPWorld(t)
			if tc.holder {
				w.stuck = "m1"
			}
			m1 := w.host("m1")
			if tc.configTest != nil {
				m1.RunFunc = shell(on("keepalived --config-test", tc.configTest), fallback(m1.RunFunc))
			}
			before := keepalivedConf(1)
			after, err := vip.DropPeers(before, []string{"192.0.2.2", "192.0.2.3"})
			if err != nil {
				t.Fatal(err)
			}
			st := mkStep(plan.KindVIPUpdate, "m1", plan.VIPUpdateParams{Unit: vip.DefaultUnit, Reload: true},
				host.FileChange{Host: "m1", Path: vip.DefaultConfig, Before: before, After: after})
			w.r.history.Ended = map[string]bool{}
			_, err = apply(t, w.r, st)
			got, _ := m1.File(vip.DefaultConfig)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != before {
					t.Fatalf("err %v, config now:\n%s", err, got)
				}
				return
			}
			if err != nil || got != after {
				t.Fatalf("err %v, config now:\n%s", err, got)
			}
			reloaded := slices.ContainsFunc(m1.Log(), func(l string) bool { return strings.HasPrefix(l, "reload "+vip.DefaultUnit) })
			if reloaded != tc.wantReload {
				t.Errorf("reloaded %v, want %v; log %v", reloaded, tc.wantReload, m1.Log())
			}
		})
	}
}

// Undoing vip/update checks the restored config and reloads keepalived, unless it holds the
// VIP; a restored config keepalived refuses fails the undo.
func TestUndoVIPUpdate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		holder     bool
		refuse     bool
		wantReload bool
	}{{"backup", false, false, true}, {"holder", true, false, false}, {"refused", false, true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			w := newVIPWorld(t)
			if tc.holder {
				w.stuck = "m1"
			}
			m1 := w.host("m1")
			if tc.refuse {
				m1.RunFunc = shell(on("keepalived --config-test", exitWith("m1", 1, "bad")), fallback(m1.RunFunc))
			}
			err := undoVIPUpdate(ctxT(t), m1, []UndoFile{{Path: vip.DefaultConfig}})
			if (err != nil) != tc.refuse {
				t.Fatalf("err %v", err)
			}
			reloaded := slices.ContainsFunc(m1.Log(), func(l string) bool { return strings.HasPrefix(l, "reload "+vip.DefaultUnit) })
			if reloaded != tc.wantReload {
				t.Errorf("reloaded %v, want %v", reloaded, tc.wantReload)
			}
		})
	}
}

// Old proxy workers are cut on workers, and on a staying master only where keepalived may
// hold a VIP (its proxy then serves the VIP's clients); a master without one, or leaving, is
// left to the apiserver's graceful shutdown.
func TestCutsOldWorkers(t *testing.T) {
	w := newVIPWorld(t)
	w1 := plan.Host{Name: "w1", Address: "192.0.2.21", Roles: []inventory.Role{inventory.RoleWorker}, Paths: cpPaths}
	w.fc.inv.Hosts = append(w.fc.inv.Hosts, inventory.Host{Name: w1.Name, Address: w1.Address, Roles: w1.Roles, Paths: w1.Paths})
	w.r.p.Facts.Hosts = append(w.r.p.Facts.Hosts, w1)
	want := map[string]bool{"w1": true, "m1": true, "m2": false, "m3": false, "nobody": false}
	for name, cut := range want {
		if got := w.r.cutsOldWorkers(name); got != cut {
			t.Errorf("cutsOldWorkers(%s) = %v, want %v", name, got, cut)
		}
	}
	// m1 without a running keepalived, or with one that holds no VIP, is a plain master.
	o := w.r.p.Facts.VRRP["m1"]
	o.Active = false
	w.r.p.Facts.VRRP["m1"] = o
	if w.r.cutsOldWorkers("m1") {
		t.Error("m1 is cut with keepalived stopped there")
	}
	delete(w.r.p.Facts.VRRP, "m1")
	if w.r.cutsOldWorkers("m1") {
		t.Error("m1 is cut without keepalived")
	}
}
