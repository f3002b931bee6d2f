package runner

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/apiserver"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
)

const (
	apiserverUnitPath = "/etc/systemd/system/kube-apiserver.service"
	nginxConfPath     = "/etc/nginx/nginx.conf"
	caPath            = "/etc/kubernetes/ssl/ca.pem"
)

// cpFixture is a control plane of fake hosts: masters m1 and m2 (addresses 192.0.2.1-2) whose
// apiservers answer /readyz on loopback, a leaving master m3 (192.0.2.3) and a worker w1 whose
// nginx proxy fronts all three.
type cpFixture struct {
	fc    *fakeCluster
	p     *plan.Plan
	r     *run
	api   map[string]*readyz
	proxy *readyz
}

var cpPaths = inventory.Paths{APIServerUnit: "kube-apiserver.service", ControllerManagerUnit: "kube-controller-manager.service",
	SchedulerUnit: "kube-scheduler.service", NginxUnit: "kube-nginx.service", NginxConfig: nginxConfPath, CACert: caPath}

func apiserverUnit(port int, etcdServers string) string {
	return fmt.Sprintf("[Service]\nExecStart=/usr/local/bin/kube-apiserver --bind-address=127.0.0.1 --secure-port=%d --etcd-servers=%s\n", port, etcdServers)
}

func nginxConf(listen string, servers ...string) string {
	var b strings.Builder
	b.WriteString("events {}\nstream {\n    upstream kube_apiserver {\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "        server %s;\n", s)
	}
	fmt.Fprintf(&b, "    }\n    server {\n        listen %s;\n        proxy_pass kube_apiserver;\n    }\n}\n", listen)
	return b.String()
}

var cpServers = []string{"192.0.2.1:6443", "192.0.2.2:6443", "192.0.2.3:6443"}

func newCPFixture(t *testing.T) *cpFixture {
	t.Helper()
	f := &cpFixture{api: map[string]*readyz{}}
	master := []inventory.Role{inventory.RoleMaster}
	f.fc, f.p = newFakes(nil, nil,
		plan.Host{Name: "m1", Address: "192.0.2.1", Roles: master, Paths: cpPaths},
		plan.Host{Name: "m2", Address: "192.0.2.2", Roles: master, Paths: cpPaths},
		plan.Host{Name: "m3", Address: "192.0.2.3", Roles: master, Paths: cpPaths},
		plan.Host{Name: "w1", Address: "192.0.2.11", Roles: []inventory.Role{inventory.RoleWorker}, Paths: cpPaths})
	f.p.Target.Remove = []string{"m3"}
	for _, name := range []string{"m1", "m2"} {
		f.api[name] = serveAPIServer(t, f.fc.hosts[name])
	}
	var cfg lb.NodeConfig
	f.proxy, cfg = serveProxy(t, f.fc.hosts["w1"], cpServers)
	f.p.Facts.Hosts[3].Paths.NginxListen = f.proxy.Addr()
	f.p.Facts.LB = map[string]lb.NodeConfig{"w1": cfg}
	f.r = hostRun(f.fc, f.p)
	return f
}

// serveAPIServer makes h a master (cpPaths) whose kube-apiserver runs, its /readyz answering
// on loopback.
func serveAPIServer(t *testing.T, h *hosttest.Host) *readyz {
	t.Helper()
	z := newReadyz(t)
	h.SetFile(apiserverUnitPath, apiserverUnit(z.Port(), "https://192.0.2.1:2379,https://192.0.2.3:2379"))
	h.SetFile(caPath, z.CAPEM)
	h.SetUnit("kube-apiserver.service", host.UnitStatus{ActiveState: "active", SubState: "running", UnitFileState: "enabled",
		MainPID: 500, FragmentPath: apiserverUnitPath})
	h.RunFunc = shell(clock(h, "", "kube-apiserver.service"))
	return z
}

// serveProxy makes h a node (cpPaths) whose nginx proxies servers, listening on loopback
// where the returned endpoint answers for the apiservers; cfg is its config as planned.
func serveProxy(t *testing.T, h *hosttest.Host, servers []string) (*readyz, lb.NodeConfig) {
	t.Helper()
	z := newReadyz(t)
	conf := nginxConf(z.Addr(), servers...)
	h.SetFile(nginxConfPath, conf)
	h.SetUnit("kube-nginx.service", host.UnitStatus{ActiveState: "active", SubState: "running", UnitFileState: "enabled", MainPID: 500})
	h.RunFunc = nginxShell(h, nil)
	cfg, err := lb.Parse(h.Name(), nginxConfPath, map[string]string{nginxConfPath: conf}, servers)
	if err != nil {
		t.Fatal(err)
	}
	return z, cfg
}

// nginxShell answers a node proxy's commands: systemd runs the node, nginx -t passes unless
// test says otherwise, workers as clock tells; extra rules come first.
func nginxShell(h *hosttest.Host, test func(string) (host.Result, error), extra ...rule) func(string) (host.Result, error) {
	if test == nil {
		test = stdout("")
	}
	return shell(append(extra, on("test -d /run/systemd/system", stdout("")), on("nginx ", test), clock(h, "kube-nginx.service"))...)
}

// update is m1's apiserver/update step: --etcd-servers without m3, and m1 marked down in
// w1's proxy for the time of the restart, as the planner writes it.
func (f *cpFixture) update(t *testing.T, restart ...string) plan.Step {
	t.Helper()
	before, _ := f.fc.hosts["m1"].File(apiserverUnitPath)
	after := strings.Replace(before, ",https://192.0.2.3:2379", "", 1)
	st := mkStep(plan.KindAPIServerRewrite, "m1", plan.APIServerUpdateParams{Restart: restart},
		host.FileChange{Host: "m1", Path: apiserverUnitPath, Before: before, After: after})
	aside, err := lb.Rewrite(f.p.Facts.LB["w1"], []string{"192.0.2.1:6443"}, lb.MarkDown)
	if err != nil || len(aside) != 1 {
		t.Fatalf("aside rewrite %+v: %v", aside, err)
	}
	st.Aside = aside
	return st
}

// The apiserver step: not done before, rewrites the unit and restarts the apiserver with m1 out
// of the proxies meanwhile (m2 serves), done after; a rerun finds it done.
func TestExecutorAPIServerUpdate(t *testing.T) {
	f := newCPFixture(t)
	st := f.update(t, apiserver.KubeAPIServer)
	m1, w1 := f.fc.hosts["m1"], f.fc.hosts["w1"]
	conf, _ := w1.File(nginxConfPath)
	if doneOf(t, f.r, st) {
		t.Fatal("done before it ran")
	}
	out, err := apply(t, f.r, st)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m1.File(apiserverUnitPath); got != st.Files[0].After {
		t.Errorf("unit after the step:\n%s", got)
	}
	log := m1.Log()
	write, restart := slices.Index(log, "write "+apiserverUnitPath), slices.Index(log, "restart kube-apiserver.service")
	if write < 0 || restart < write || !slices.Contains(log, "daemon-reload") {
		t.Errorf("m1 did %v, want the write, a daemon-reload and the restart after it", log)
	}
	if _, ok := out.backups["m1:"+apiserverUnitPath]; !ok {
		t.Errorf("backups %v", out.backups)
	}
	if !slices.ContainsFunc(out.changes, func(c Change) bool { return c.File == apiserverUnitPath && c.Action == "rewrite" }) ||
		!slices.ContainsFunc(out.changes, func(c Change) bool { return c.Unit == "kube-apiserver.service" && c.Action == "restart" }) {
		t.Errorf("changes %+v", out.changes)
	}
	// m1 was marked down in w1's proxy during the restart, and put back.
	if !strings.Contains(out.note, "out of the proxies meanwhile") {
		t.Errorf("note %q", out.note)
	}
	if got, _ := w1.File(nginxConfPath); got != conf {
		t.Errorf("w1's proxy config after the step:\n%s\nwant it as planned:\n%s", got, conf)
	}
	wl := w1.Log()
	if n := countOf(wl, "write "+nginxConfPath); n != 2 || countOf(wl, "reload kube-nginx.service") != 2 {
		t.Errorf("w1 did %v, want two writes and two reloads (aside, back)", wl)
	}
	if n := w1.Reads(nginxConfPath); n != 0 {
		t.Errorf("w1's config was read %d times: each write checks the planned content on the node", n)
	}
	if !slices.ContainsFunc(w1.Commands(), func(c string) bool { return strings.Contains(c, "kill -TERM") }) {
		t.Errorf("the worker's old nginx workers were not cut: %v", w1.Commands())
	}
	if !doneOf(t, f.r, st) {
		t.Errorf("not done after it ran: %v", m1.Log())
	}
	// The postcondition also puts back a proxy a crash left aside.
	w1.SetFile(nginxConfPath, st.Aside[0].After)
	if !doneOf(t, f.r, st) {
		t.Error("not done with m1 left aside")
	}
	if got, _ := w1.File(nginxConfPath); got != conf {
		t.Errorf("the postcondition left m1 aside in w1's proxy:\n%s", got)
	}
}

// Written by a run that stopped before the restart: the files say after, the process runs
// the old ones; not done, and the apply restarts without writing again.
func TestExecutorAPIServerUpdateResumes(t *testing.T) {
	f := newCPFixture(t)
	st := f.update(t)
	m1 := f.fc.hosts["m1"]
	m1.SetFile(apiserverUnitPath, st.Files[0].After)
	if doneOf(t, f.r, st) {
		t.Fatal("done while the apiserver runs the old unit")
	}
	out, err := apply(t, f.r, st)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(m1.Log(), "write "+apiserverUnitPath) || !slices.Contains(m1.Log(), "restart kube-apiserver.service") {
		t.Errorf("m1 did %v, want a restart and no write", m1.Log())
	}
	if slices.ContainsFunc(out.changes, func(c Change) bool { return c.Action == "rewrite" }) {
		t.Errorf("a file written by the earlier run is audited again: %+v", out.changes)
	}
	if !doneOf(t, f.r, st) {
		t.Error("not done after the restart")
	}
}

// Failures: a drifted unit, an apiserver not ready before, one that fails its restart (rolled
// back), a component systemd does not know. None leaves m1 or a proxy changed.
func TestExecutorAPIServerUpdateFailures(t *testing.T) {
	f := newCPFixture(t)
	st := f.update(t, apiserver.KubeAPIServer)
	m1, w1 := f.fc.hosts["m1"], f.fc.hosts["w1"]
	conf, _ := w1.File(nginxConfPath)
	untouched := func(what string) {
		t.Helper()
		if got, _ := m1.File(apiserverUnitPath); got != st.Files[0].Before {
			t.Errorf("%s: m1's unit changed:\n%s", what, got)
		}
		if got, _ := w1.File(nginxConfPath); got != conf {
			t.Errorf("%s: w1's proxy left changed:\n%s", what, got)
		}
	}

	m1.SetFile(apiserverUnitPath, st.Files[0].Before+"# edited\n")
	if _, err := apply(t, f.r, st); !errors.Is(err, apiserver.ErrFileDrifted) {
		t.Errorf("drifted unit: %v, want ErrFileDrifted", err)
	}
	if slices.Contains(m1.Log(), "restart kube-apiserver.service") {
		t.Errorf("a drifted unit was restarted: %v", m1.Log())
	}
	m1.SetFile(apiserverUnitPath, st.Files[0].Before)
	untouched("drift")

	f.api["m1"].set(http.StatusInternalServerError)
	if _, err := apply(t, f.r, st); err == nil || !strings.Contains(err.Error(), "not ready before the change") {
		t.Errorf("apiserver not ready: %v", err)
	}
	f.api["m1"].set(http.StatusOK)
	untouched("not ready")

	// The first restart fails: the old unit goes back and the apiserver is restarted on it.
	failed := false
	m1.Fail = func(verb, unit string) error {
		if verb == "restart" && !failed {
			failed = true
			return errors.New("job failed")
		}
		return nil
	}
	_, err := apply(t, f.r, st)
	var re *apiserver.RestartError
	if !errors.As(err, &re) || !re.Restored || !strings.Contains(err.Error(), "job failed") {
		t.Errorf("failed restart: %v, want a restored RestartError", err)
	}
	m1.Fail = nil
	untouched("failed restart")

	bad := f.update(t, "kube-proxy")
	if _, err := apply(t, f.r, bad); err == nil || !strings.Contains(err.Error(), "systemd does not know it") {
		t.Errorf("unknown component: %v", err)
	}
	gone := f.update(t)
	gone.Host = "m9"
	if _, err := apply(t, f.r, gone); err == nil || !strings.Contains(err.Error(), "m9") {
		t.Errorf("a host not in the inventory: %v", err)
	}
}

func countOf(xs []string, x string) int {
	n := 0
	for _, y := range xs {
		if y == x {
			n++
		}
	}
	return n
}

// components/retire: done once every unit is inactive and disabled; an offline master is a
// warning; a unit that will not stop fails the step naming it.
func TestExecutorRetire(t *testing.T) {
	f := newCPFixture(t)
	m3 := f.fc.hosts["m3"]
	units := []string{"kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service"}
	for _, u := range units {
		m3.SetUnit(u, unitRunning)
	}
	st := mkStep(plan.KindRetire, "m3", plan.RetireParams{Units: units})
	refusedBySystemd(t, f.r, st, m3, "stop", "kube-scheduler.service", "kube-scheduler")
	out, err := apply(t, f.r, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.changes) != 3 || !doneOf(t, f.r, st) {
		t.Errorf("changes %+v, done %v", out.changes, doneOf(t, f.r, st))
	}
	off := mkStep(plan.KindRetire, "m3", plan.RetireParams{Units: units, Offline: true})
	out, err = apply(t, f.r, off)
	if err != nil || len(out.warnings) != 1 || !strings.Contains(out.warnings[0], "by hand") {
		t.Errorf("offline master: %v, warnings %v", err, out.warnings)
	}
}

// When w1's own lb/update step follows in the same run, putting m1 back only writes w1's
// planned config, and that step's reload loads it with its own change: two reloads in all
// instead of three. Where that step does not run here (--only, or ended in an earlier run),
// the put-back reloads as before.
func TestExecutorAPIServerPutBackWithUpdate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		only    []string
		ended   bool
		reloads int // at w1 by the apiserver step
	}{
		{"update follows", nil, false, 1},
		{"--only apiserver/", []string{"apiserver/"}, false, 2},
		{"update ended earlier", nil, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newCPFixture(t)
			st := f.update(t, apiserver.KubeAPIServer)
			down, err := lb.Rewrite(f.p.Facts.LB["w1"], []string{"192.0.2.3:6443"}, lb.MarkDown)
			if err != nil || len(down) != 1 {
				t.Fatalf("lb rewrite %+v: %v", down, err)
			}
			lbst := mkStep(plan.KindLBUpdate, "w1", plan.LBUpdateParams{}, down...)
			f.p.Steps = []plan.Step{st, lbst}
			f.r.sel = Selection{only: tc.only}
			f.r.history.Ended[lbst.ID] = tc.ended
			w1 := f.fc.hosts["w1"]
			conf, _ := w1.File(nginxConfPath)
			out, err := apply(t, f.r, st)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := w1.File(nginxConfPath); got != conf {
				t.Fatalf("w1's config after the restart:\n%s\nwant it as planned:\n%s", got, conf)
			}
			if n := countOf(w1.Log(), "reload kube-nginx.service"); n != tc.reloads {
				t.Fatalf("w1 reloaded %d times during the restart, want %d: %v", n, tc.reloads, w1.Log())
			}
			if staged := strings.Contains(out.note, "back in 1 of them with their lb/update step's reload"); staged != (tc.reloads == 1) {
				t.Errorf("note %q", out.note)
			}
			if tc.reloads != 1 {
				return
			}
			// An update nginx refuses says the proxy still runs without m1.
			w1.RunFunc = nginxShell(w1, exitWith("w1", 1, "nginx: [emerg] unknown directive\nnginx: configuration file test failed"))
			if _, err := apply(t, f.r, lbst); err == nil || !strings.Contains(err.Error(), "still runs without 192.0.2.1:6443") {
				t.Fatalf("a refused update: %v", err)
			}
			w1.RunFunc = nginxShell(w1, nil)
			// The update finds its file as planned but not loaded, and loads both at once.
			if _, err := apply(t, f.r, lbst); err != nil {
				t.Fatal(err)
			}
			if got, _ := w1.File(nginxConfPath); got != down[0].After || countOf(w1.Log(), "reload kube-nginx.service") != 2 {
				t.Errorf("after lb/update/w1: reloads %d, config:\n%s", countOf(w1.Log(), "reload kube-nginx.service"), got)
			}
		})
	}
}
