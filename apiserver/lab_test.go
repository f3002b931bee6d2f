package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/testenv"
)

// labCP is one lab as the control-plane tests use it: SSH hosts, the readiness probe's TLS,
// and the master that carries the workers' traffic (the survivor of the 3-to-1 shrink).
type labCP struct {
	lab      *testenv.Lab
	inv      *inventory.Inventory
	hosts    map[string]host.Host
	paths    inventory.Paths
	ca       *x509.CertPool
	cert     tls.Certificate
	survivor string
	leaving  []string
}

func startLabCP(t *testing.T, opts testenv.Options) *labCP {
	t.Helper()
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, opts)
	inv, err := inventory.Load(lab.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	l := &labCP{lab: lab, inv: inv, hosts: map[string]host.Host{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ih := range inv.Hosts {
		h, err := host.Connect(ctx, inv, ih.Name, lab.DialContext)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		l.hosts[ih.Name] = h
		l.paths = ih.Paths
	}
	pem, err := os.ReadFile(lab.EtcdCA)
	if err != nil {
		t.Fatal(err)
	}
	l.ca = x509.NewCertPool()
	l.ca.AppendCertsFromPEM(pem)
	if l.cert, err = tls.LoadX509KeyPair(filepath.Join(lab.PKIDir, "admin.pem"), filepath.Join(lab.PKIDir, "admin-key.pem")); err != nil {
		t.Fatal(err)
	}
	l.survivor = l.busyMaster(t, ctx)
	for _, ih := range inv.HostsWithRole(inventory.RoleMaster) {
		if ih.Name != l.survivor {
			l.leaving = append(l.leaving, ih.Name)
		}
	}
	sort.Strings(l.leaving)
	t.Logf("survivor %s (carries the workers' proxied connections), leaving %v", l.survivor, l.leaving)
	return l
}

var apiserverPeer = regexp.MustCompile(`\s(\d+\.\d+\.\d+\.\d+):6443\s`)

// busyMaster is the master the workers' proxies send their clients to: with `hash
// $remote_addr consistent` every client of every node comes from 127.0.0.1, so all of them
// stick to one apiserver. Restarting that one is the case that can fail requests.
func (l *labCP) busyMaster(t *testing.T, ctx context.Context) string {
	t.Helper()
	byAddr := map[string]string{}
	for _, m := range l.lab.Machines {
		byAddr[m.Address] = m.Name
	}
	p := l.lab.StartProber(ctx, 10)
	defer p.Stop()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		count := map[string]int{}
		for _, m := range l.lab.Machines {
			if !strings.HasPrefix(m.Name, "w") {
				continue
			}
			out, err := execHost(ctx, "ip", "netns", "exec", filepath.Base(m.NetNS), "ss", "-Htn", "state", "established")
			if err != nil {
				t.Fatal(err)
			}
			last = out
			for _, mm := range apiserverPeer.FindAllStringSubmatch(out+" ", -1) {
				count[byAddr[mm[1]]]++
			}
		}
		if len(count) == 1 {
			for name := range count {
				if name != "" {
					return name
				}
			}
		}
	}
	t.Fatalf("the workers' proxies do not all use one apiserver:\n%s", last)
	return ""
}

func (l *labCP) address(name string) string {
	ih, _ := l.inv.Host(name)
	return ih.Address
}

// aside takes the survivor's apiserver out of every node's proxy during its restart, as
// apply's set-aside does (runner/lbdrain.go) from lb's parts: the server marked down
// (lb.Rewrite with lb.MarkDown), a graceful reload, and on the workers the old nginx workers
// cut, so that their clients reconnect through the other apiservers at once (on masters the
// apiserver's own graceful shutdown moves them; see runner's cutsOldWorkers). Back writes
// each file's content from before back and reloads, leaving the clients where they are.
func (l *labCP) aside() func(context.Context, bool) error {
	addr := l.address(l.survivor) + ":6443"
	var mu sync.Mutex
	done := map[string][]host.FileChange{} // node -> the changes aside applied
	var names []string
	for _, ih := range l.inv.Hosts {
		names = append(names, ih.Name)
	}
	return func(ctx context.Context, aside bool) error {
		errs := host.ForEach(ctx, names, len(names), func(ctx context.Context, name string) error {
			ih, _ := l.inv.Host(name)
			t := lb.NodeTarget{Host: l.hosts[name], Paths: ih.Paths}
			var ex lb.Executor
			mu.Lock()
			changes := done[name]
			mu.Unlock()
			if !aside {
				if len(changes) == 0 {
					return nil
				}
				for _, c := range changes {
					t.Changes = append(t.Changes, host.FileChange{Host: c.Host, Path: c.Path, Before: c.After, After: c.Before})
				}
				if _, err := ex.Apply(ctx, t); err != nil {
					return err
				}
				mu.Lock()
				delete(done, name)
				mu.Unlock()
				return nil
			}
			cfg, err := lb.Observe(ctx, t.Host, ih.Paths, []string{addr})
			if err != nil {
				return err
			}
			if t.Changes, err = lb.Rewrite(cfg, []string{addr}, lb.MarkDown); err != nil || len(t.Changes) == 0 {
				return err
			}
			mu.Lock()
			done[name] = t.Changes // before the reload: a failed one is put back too
			mu.Unlock()
			if _, err := ex.Apply(ctx, t); err != nil || ih.Has(inventory.RoleMaster) {
				return err
			}
			return ex.CutOldWorkers(ctx, t.Host, ih.Paths)
		})
		var joined []error
		for name, err := range errs {
			joined = append(joined, fmt.Errorf("%s: %w", name, err))
		}
		return errors.Join(joined...)
	}
}

// proxyConfigs reads every node's proxy configuration.
func (l *labCP) proxyConfigs(t *testing.T, ctx context.Context) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, h := range l.hosts {
		b, err := h.ReadFile(ctx, l.paths.NginxConfig)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = string(b)
	}
	return out
}

// checkProxiesBack asserts that every proxy has its configuration from before the restart.
func (l *labCP) checkProxiesBack(t *testing.T, ctx context.Context, before map[string]string) {
	t.Helper()
	for name, conf := range l.proxyConfigs(t, ctx) {
		if conf != before[name] {
			t.Errorf("the proxy on %s was not put back:\n%s", name, conf)
		}
	}
}

func (l *labCP) probe(c Component) *ReadyProbe {
	return &ReadyProbe{Address: c.ProbeAddress(), RootCAs: l.ca, ClientCert: &l.cert}
}

func (l *labCP) observe(t *testing.T, ctx context.Context, name string) Components {
	t.Helper()
	c, err := Observe(ctx, l.hosts[name], l.paths)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kube is a client of the survivor's apiserver directly.
func (l *labCP) kube(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg, err := l.lab.RESTConfig("https://" + l.address(l.survivor) + ":6443")
	if err != nil {
		t.Fatal(err)
	}
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// runningArgs is the command line of the unit's main process.
func (l *labCP) runningArgs(t *testing.T, ctx context.Context, name, unit string) string {
	t.Helper()
	out, err := l.lab.Exec(ctx, name, "sh", "-c", "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value "+unit+")/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// shrinkRewrite plans the survivor's rewrite of the 3-to-1 shrink: --etcd-servers to the
// surviving member only. The etcd members all stay in these tests; only the flags change.
func (l *labCP) shrinkRewrite(t *testing.T, c Components) Rewrite {
	t.Helper()
	var removed []string
	for _, n := range l.leaving {
		removed = append(removed, n, l.address(n))
	}
	r, err := PlanRewrite(c, l.survivor, []string{"https://" + l.address(l.survivor) + ":2379"}, 1, removed)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Changes) != 1 || len(r.Restart) != 1 || r.Restart[0] != KubeAPIServer {
		t.Fatalf("rewrite on %s: %d changes, restarts %v; want the apiserver unit only", l.survivor, len(r.Changes), r.Restart)
	}
	return r
}

// openWatches opens n watches with cfg (through a worker's proxy, as a kubelet's informers
// do, or straight to an apiserver), and keeps reading them until ctx ends. It returns once
// every watch is established.
func openWatches(t *testing.T, ctx context.Context, cfg *rest.Config, n int, events *atomic.Int64) {
	t.Helper()
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		var w watch.Interface
		switch i % 3 {
		case 0:
			w, err = k.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{})
		case 1:
			w, err = k.CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{})
		default:
			w, err = k.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
		}
		if err != nil {
			t.Fatalf("watch %d through %s: %v", i, cfg.Host, err)
		}
		go func() {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-w.ResultChan():
					if !ok {
						return
					}
					events.Add(1)
				}
			}
		}()
	}
}

// restartSurvivor runs the rolling restart of the survivor's apiserver with the prober on
// the workers, and fails on any failed request through their proxies.
func (l *labCP) restartSurvivor(t *testing.T, ctx context.Context, changes []host.FileChange, label string) time.Duration {
	t.Helper()
	c := l.observe(t, ctx, l.survivor)
	step := RestartStep{Host: l.hosts[l.survivor], Component: KubeAPIServer, Unit: c.APIServer.UnitName,
		Changes: changes, Probe: l.probe(c.APIServer), Deadline: ReadyDeadline(c.APIServer), Aside: l.aside()}
	proxies := l.proxyConfigs(t, ctx)
	p := l.lab.StartProber(ctx, 20)
	start := time.Now()
	t.Logf("%s %s: start", start.Format("15:04:05.000"), label)
	res, err := RollingRestart(ctx, []RestartStep{step}, testWriterFor(t))
	took := time.Since(start)
	rep := p.Stop()
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	d := res[0].Restarted
	t.Logf("TIMING %s: kube-apiserver on %s (--request-timeout=%s) restarted and ready in %s, %s with the proxies' aside and back; prober: %s",
		label, l.survivor, c.APIServer.Flags.RequestTimeout, d.Round(10*time.Millisecond), took.Round(10*time.Millisecond), rep)
	l.checkProxiesBack(t, ctx, proxies)
	if rep.Failed > 0 || rep.Total == 0 {
		var fs []string
		for i, f := range rep.Failures {
			if i == 10 {
				fs = append(fs, fmt.Sprintf("... %d more", len(rep.Failures)-10))
				break
			}
			fs = append(fs, fmt.Sprintf("%s %s: %s", f.Start.Format("15:04:05.000"), f.Worker, f.Err))
		}
		t.Errorf("%s: %d of %d requests through the workers' proxies failed:\n%s", label, rep.Failed, rep.Total, strings.Join(fs, "\n"))
	}
	return d
}

// rollingRestartScenario is the survivor's part of a 3-to-1 shrink: the rewrite restart
// without watches, then a restart with live watches through a worker's proxy.
func rollingRestartScenario(t *testing.T, l *labCP) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := l.observe(t, ctx, l.survivor)
	r := l.shrinkRewrite(t, c)
	l.restartSurvivor(t, ctx, r.Changes, "shrink rewrite, no watches")

	want := "--etcd-servers=https://" + l.address(l.survivor) + ":2379 "
	if args := l.runningArgs(t, ctx, l.survivor, c.APIServer.UnitName); !strings.Contains(args, want) {
		t.Errorf("the restarted apiserver does not run with %q: %s", want, args)
	}
	if got := l.observe(t, ctx, l.survivor).APIServer.Unit.Files[r.Changes[0].Path]; got != r.Changes[0].After {
		t.Errorf("unit %s does not hold the planned content", r.Changes[0].Path)
	}

	// Watches through a proxy are cut with the proxy's old workers before the restart; watches
	// straight to the apiserver (an operator's kubeconfig naming a master) stay, and
	// kube-apiserver waits for them up to --request-timeout before it exits.
	proxied, err := l.lab.WorkerRESTConfig("w1")
	if err != nil {
		t.Fatal(err)
	}
	direct, err := l.lab.RESTConfig("https://" + l.address(l.survivor) + ":6443")
	if err != nil {
		t.Fatal(err)
	}
	var events atomic.Int64
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	openWatches(t, wctx, proxied, 3, &events)
	l.restartSurvivor(t, ctx, nil, "restart with 3 watches through w1's proxy")
	wcancel()

	wctx, wcancel = context.WithCancel(ctx)
	defer wcancel()
	openWatches(t, wctx, proxied, 3, &events)
	openWatches(t, wctx, direct, 2, &events)
	l.restartSurvivor(t, ctx, nil, "restart with 3 watches through w1's proxy and 2 straight to the apiserver")
	wcancel()
	t.Logf("watches received %d events", events.Load())
}

// TestLabControlPlane runs, in one lab with the lab's short --request-timeout, the survivor's
// rolling restart of a 3-to-1 shrink with the prober, a restart whose new unit cannot start,
// and the retirement of the leaving masters' components.
func TestLabControlPlane(t *testing.T) {
	l := startLabCP(t, testenv.Options{})

	t.Run("rolling restart", func(t *testing.T) { rollingRestartScenario(t, l) })
	if t.Failed() {
		return
	}
	t.Run("new unit cannot start", func(t *testing.T) { badUnitScenario(t, l) })
	t.Run("retire leaving masters", func(t *testing.T) { retireScenario(t, l) })
}

// TestLabRollingRestartDefaultRequestTimeout is the rolling restart with kube-apiserver's
// default --request-timeout (60 s), which live watches make the apiserver wait out.
func TestLabRollingRestartDefaultRequestTimeout(t *testing.T) {
	l := startLabCP(t, testenv.Options{RequestTimeout: time.Minute})
	rollingRestartScenario(t, l)
}

func badUnitScenario(t *testing.T, l *labCP) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := l.observe(t, ctx, l.survivor)
	changes, err := c.APIServer.Unit.SetFlags(l.survivor, map[string]string{"--tls-cert-file": "/nonexistent.pem"})
	if err != nil || len(changes) != 1 {
		t.Fatalf("plan the bad flag: %d changes, %v", len(changes), err)
	}
	step := RestartStep{Host: l.hosts[l.survivor], Component: KubeAPIServer, Unit: c.APIServer.UnitName,
		Changes: changes, Probe: l.probe(c.APIServer), Deadline: ReadyDeadline(c.APIServer), Aside: l.aside()}
	proxies := l.proxyConfigs(t, ctx)
	start := time.Now()
	_, err = ApplyAndRestart(ctx, step, testWriterFor(t))
	took := time.Since(start)
	l.checkProxiesBack(t, ctx, proxies)
	var rerr *RestartError
	if !errors.As(err, &rerr) {
		t.Fatalf("want a *RestartError, got %v", err)
	}
	t.Logf("TIMING failed restart and rollback took %s; error:\n%v", took.Round(10*time.Millisecond), err)
	msg := err.Error()
	if !rerr.Restored || rerr.Host != l.survivor || !strings.Contains(msg, " on "+l.survivor+":") {
		t.Errorf("want the error to name host %s and say it is restored: %v", l.survivor, err)
	}
	if !strings.Contains(msg, "/nonexistent.pem") || !strings.Contains(strings.Join(rerr.Journal, "\n"), "/nonexistent.pem") {
		t.Errorf("the journal lines do not explain the failure (no /nonexistent.pem):\n%s", strings.Join(rerr.Journal, "\n"))
	}
	now := l.observe(t, ctx, l.survivor)
	if got := now.APIServer.Unit.Files[changes[0].Path]; got != changes[0].Before {
		t.Errorf("unit %s is not back to its old content", changes[0].Path)
	}
	if err := l.probe(now.APIServer).Check(ctx, l.hosts[l.survivor]); err != nil {
		t.Errorf("apiserver on %s not serving after the rollback: %v", l.survivor, err)
	}
	if args := l.runningArgs(t, ctx, l.survivor, c.APIServer.UnitName); strings.Contains(args, "nonexistent") {
		t.Errorf("the running apiserver has the bad flag: %s", args)
	}
	if len(rerr.Backups) != 1 {
		t.Errorf("backups %v, want the unit's", rerr.Backups)
	}
}

func retireScenario(t *testing.T, l *labCP) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	kube := l.kube(t)
	l.leadersOnLeaving(t, ctx, kube)

	var wg sync.WaitGroup
	errs := make([]error, len(l.leaving))
	start := time.Now()
	for i, name := range l.leaving {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = RetireComponents(ctx, l.hosts[name], l.paths)
		}()
	}
	wg.Wait()
	t.Logf("TIMING retire on %v took %s", l.leaving, time.Since(start).Round(10*time.Millisecond))
	for i, name := range l.leaving {
		if errs[i] != nil {
			t.Errorf("retire on %s: %v", name, errs[i])
			continue
		}
		if ok, err := Retired(ctx, l.hosts[name], l.paths); !ok || err != nil {
			t.Errorf("Retired(%s) = %v, %v", name, ok, err)
		}
		out, _ := l.lab.Exec(ctx, name, "sh", "-c", "for u in kube-apiserver kube-controller-manager kube-scheduler; do echo $u $(systemctl is-active $u) $(systemctl is-enabled $u); done")
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) != 3 || f[1] != "inactive" || f[2] != "disabled" {
				t.Errorf("%s: %q, want inactive and disabled", name, line)
			}
		}
	}

	t0 := time.Now()
	if err := WaitLeadersOnSurvivors(ctx, kube, []string{l.survivor}, 2*time.Minute, testWriterFor(t)); err != nil {
		t.Errorf("leader leases: %v", err)
	}
	t.Logf("TIMING leader leases on %s %s after the retirement", l.survivor, time.Since(t0).Round(100*time.Millisecond))
	t0 = time.Now()
	if err := WaitEndpointSlice(ctx, kube, []string{l.address(l.survivor)}, 90*time.Second); err != nil {
		t.Errorf("kubernetes EndpointSlice: %v", err)
	}
	t.Logf("TIMING kubernetes EndpointSlice lists only %s %s after the leases", l.address(l.survivor), time.Since(t0).Round(100*time.Millisecond))
}

// leadersOnLeaving makes the leaving masters hold both leader leases before the retirement,
// so that the test sees them move: while the survivor's controller-manager and scheduler are
// stopped, a leaving master takes over what the survivor held.
func (l *labCP) leadersOnLeaving(t *testing.T, ctx context.Context, kube kubernetes.Interface) {
	t.Helper()
	leases, err := LeaderLeaseHolders(ctx, kube)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != len(LeaderLeases) {
		t.Fatalf("leader leases %+v, want %v", leases, LeaderLeases)
	}
	if CheckLeaderLeases(leases, l.leaving) != nil {
		sd, err := l.hosts[l.survivor].Systemd(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer sd.Close()
		units := []string{KubeControllerManager + ".service", KubeScheduler + ".service"}
		for _, u := range units {
			if err := sd.Stop(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		err = WaitLeadersOnSurvivors(ctx, kube, l.leaving, 2*time.Minute, nil)
		for _, u := range units {
			if serr := sd.Start(ctx, u); serr != nil {
				t.Fatal(serr)
			}
		}
		if err != nil {
			t.Fatalf("move the leases to the leaving masters first: %v", err)
		}
	}
	leases, _ = LeaderLeaseHolders(ctx, kube)
	for _, ls := range leases {
		t.Logf("before the retirement: lease %s held by %s", ls.Name, ls.Holder)
	}
}

type tw struct{ t *testing.T }

func (w tw) Write(p []byte) (int, error) {
	w.t.Logf("%s %s", time.Now().Format("15:04:05.000"), strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testWriterFor(t *testing.T) tw { return tw{t} }

// execHost runs a command on the test machine itself (in a lab machine's namespace with
// ip netns exec).
func execHost(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
