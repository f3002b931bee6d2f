package apiserver

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/internal/golden"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/unitfile/unitfiletest"
)

// fixtureHost reads testdata/<dir>/root as the host's "/". It is only for file reading:
// systemd answers with canned statuses; real systemd is exercised in the lab.
func fixtureHost(dir string, statuses map[string]host.UnitStatus) *unitfiletest.DirHost {
	return &unitfiletest.DirHost{HostName: "m1", Root: filepath.Join("testdata", dir, "root"), Statuses: statuses}
}

func seed003Host() *unitfiletest.DirHost {
	st := func(active, enabled string, frag string) host.UnitStatus {
		return host.UnitStatus{LoadState: "loaded", ActiveState: active, UnitFileState: enabled, FragmentPath: frag, MainPID: 42}
	}
	return fixtureHost("seed003", map[string]host.UnitStatus{
		"kube-apiserver.service":          st("active", "enabled", "/etc/systemd/system/kube-apiserver.service"),
		"kube-controller-manager.service": st("active", "enabled", "/etc/systemd/system/kube-controller-manager.service"),
		"kube-scheduler.service":          st("failed", "disabled", "/etc/systemd/system/kube-scheduler.service"),
	})
}

func envfileHost() *unitfiletest.DirHost {
	return fixtureHost("envfile", map[string]host.UnitStatus{
		"kube-apiserver.service":          {LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled", FragmentPath: "/usr/lib/systemd/system/kube-apiserver.service"},
		"kube-controller-manager.service": {LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled", FragmentPath: "/usr/lib/systemd/system/kube-controller-manager.service"},
	})
}

func TestObserveSeed003(t *testing.T) {
	c, err := Observe(context.Background(), seed003Host(), inventory.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	a := c.APIServer
	if !a.Present || !a.Active || !a.Enabled {
		t.Errorf("apiserver state %+v", a.Status)
	}
	want := Flags{
		EtcdServers:      []string{"https://172.72.0.95:2379", "https://172.72.0.96:2379", "https://172.72.0.97:2379"},
		APIServerCount:   3,
		AdvertiseAddress: "172.72.0.95",
		BindAddress:      "172.72.0.95",
		SecurePort:       6443,
		TLSCertFile:      "/etc/kubernetes/ssl/kubernetes.pem",
		TLSPrivateKey:    "/etc/kubernetes/ssl/kubernetes-key.pem",
		ClientCAFile:     "/etc/kubernetes/ssl/ca.pem",
		EtcdCertFile:     "/etc/kubernetes/ssl/etcd.pem",
		EtcdKeyFile:      "/etc/kubernetes/ssl/etcd-key.pem",
		EtcdCAFile:       "/etc/kubernetes/ssl/ca.pem",
	}
	if !reflect.DeepEqual(a.Flags, want) {
		t.Errorf("apiserver flags\n got %+v\nwant %+v", a.Flags, want)
	}
	if got := a.ProbeAddress(); got != "172.72.0.95:6443" {
		t.Errorf("probe address %s", got)
	}
	kcm := c.ControllerManager
	if kcm.Flags.Kubeconfig != "/etc/kubernetes/cfg/kube-controller-manager.kubeconfig" || len(kcm.Kubeconfigs) != 1 {
		t.Fatalf("kcm kubeconfigs %+v", kcm.Kubeconfigs)
	}
	if s := kcm.Kubeconfigs[0].Servers; len(s) != 1 || s[0].Server != "https://172.72.0.96:6443" || s[0].Line != 5 {
		t.Errorf("kcm kubeconfig servers %+v", s)
	}
	sch := c.Scheduler
	if sch.Active || sch.Enabled || sch.Flags.Master != "https://172.72.0.96:6443" {
		t.Errorf("scheduler %+v %+v", sch.Status, sch.Flags)
	}
	if s := sch.Kubeconfigs[0].Servers; len(s) != 1 || s[0].Server != "https://127.0.0.1:8443" {
		t.Errorf("scheduler kubeconfig servers %+v", s)
	}
	if !kcm.Uses("/etc/kubernetes/ssl/ca-key.pem") || kcm.Uses("/etc/kubernetes/ssl/etcd.pem") || !a.Uses("/etc/kubernetes/ssl/etcd.pem") {
		t.Error("Uses does not follow the flags")
	}
}

func TestObserveEnvfileAndMissingUnit(t *testing.T) {
	c, err := Observe(context.Background(), envfileHost(), inventory.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Scheduler.Present {
		t.Error("scheduler unit does not exist but is Present")
	}
	if got := c.APIServer.Flags.EtcdServers; len(got) != 3 || c.APIServer.Flags.APIServerCount != 3 {
		t.Errorf("apiserver flags %+v", c.APIServer.Flags)
	}
	if got := c.APIServer.ProbeAddress(); got != "10.10.0.12:6443" {
		t.Errorf("bind 0.0.0.0 should probe the advertise address, got %s", got)
	}
	if c.ControllerManager.Flags.Master != "https://10.10.0.11:6443" {
		t.Errorf("kcm --master %q", c.ControllerManager.Flags.Master)
	}
}

func describeRewrite(r Rewrite) string {
	var b strings.Builder
	for _, c := range r.Changes {
		bl, al := strings.Split(c.Before, "\n"), strings.Split(c.After, "\n")
		fmt.Fprintf(&b, "change %s %s\n", c.Host, c.Path)
		if len(bl) != len(al) {
			fmt.Fprintf(&b, "  LINE COUNT %d -> %d\n", len(bl), len(al))
			continue
		}
		for i := range bl {
			if bl[i] != al[i] {
				fmt.Fprintf(&b, "  %d\n  -%s\n  +%s\n", i+1, bl[i], al[i])
			}
		}
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "finding %s %s %s:%d %s=%s address=%s rewritten=%v: %s\n", f.Host, f.Component, f.File, f.Line, f.Flag, f.Value, f.Address, f.Rewritten, f.Note)
	}
	fmt.Fprintf(&b, "restart %s\n", strings.Join(r.Restart, ","))
	return b.String()
}

func TestPlanRewriteSeed003(t *testing.T) {
	c, err := Observe(context.Background(), seed003Host(), inventory.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := PlanRewrite(c, "m1", []string{"https://172.72.0.95:2379"}, 1, []string{"172.72.0.96", "172.72.0.97", "m2", "m3"})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/seed003/rewrite.golden", describeRewrite(r))
	assertChangesApply(t, c, r)

	// Planning again on the result changes nothing (idempotent).
	c2 := observeRewritten(t, seed003Host(), r)
	r2, err := PlanRewrite(c2, "m1", []string{"https://172.72.0.95:2379"}, 1, []string{"172.72.0.96", "172.72.0.97", "m2", "m3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Changes) != 0 {
		t.Errorf("second plan has %d changes", len(r2.Changes))
	}
	if got := c2.APIServer.Flags.EtcdServers; len(got) != 1 || got[0] != "https://172.72.0.95:2379" {
		t.Errorf("after the rewrite etcd servers %v", got)
	}
}

func TestPlanRewriteSharedEnvironmentFile(t *testing.T) {
	c, err := Observe(context.Background(), envfileHost(), inventory.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := PlanRewrite(c, "m2", []string{"https://10.10.0.12:2379"}, 1, []string{"10.10.0.11", "10.10.0.13"})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/envfile/rewrite.golden", describeRewrite(r))
	assertChangesApply(t, c, r)
}

// assertChangesApply checks every change starts from the file as read and differs only in
// the lines that hold a rewritten value.
func assertChangesApply(t *testing.T, c Components, r Rewrite) {
	t.Helper()
	for _, ch := range r.Changes {
		var before string
		found := false
		for _, comp := range c.Each() {
			if comp.Unit != nil {
				if s, ok := comp.Unit.Files[ch.Path]; ok {
					before, found = s, true
				}
			}
			for _, kc := range comp.Kubeconfigs {
				if kc.Path == ch.Path {
					before, found = kc.Content, true
				}
			}
		}
		if !found || before != ch.Before {
			t.Errorf("%s: Before is not the file as observed", ch.Path)
		}
		if strings.Count(ch.Before, "\n") != strings.Count(ch.After, "\n") {
			t.Errorf("%s: line count changed", ch.Path)
		}
	}
}

// observeRewritten observes h again after r's changes, written to a copy of its fixture so
// testdata stays as it is.
func observeRewritten(t *testing.T, h *unitfiletest.DirHost, r Rewrite) Components {
	t.Helper()
	rewritten := *h
	rewritten.Root = t.TempDir()
	copyTree(t, h.Root, rewritten.Root)
	for _, ch := range r.Changes {
		if _, err := rewritten.WriteFile(context.Background(), ch.Path, []byte(ch.After), host.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Observe(context.Background(), &rewritten, inventory.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReadyProbe(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) <= 2 {
			http.Error(w, "[-]etcd failed: reason withheld\nreadyz check failed", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	h := fixtureHost("seed003", nil)
	p := ReadyProbe{Address: strings.TrimPrefix(srv.URL, "https://"), RootCAs: pool}

	var progress bytes.Buffer
	if err := WaitReady(context.Background(), h, p, 30*time.Second, &progress, "kube-apiserver on m1"); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d calls, want 3 (two not ready, then ok)", calls.Load())
	}

	// Wrong CA: never ready, and the error says so.
	bad := p
	bad.RootCAs = x509.NewCertPool()
	err := WaitReady(context.Background(), h, bad, 1500*time.Millisecond, nil, "kube-apiserver on m1")
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("wrong CA: %v", err)
	}
}

func TestReadyProbeUnauthorizedStopsAtOnce(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	p := ReadyProbe{Address: strings.TrimPrefix(srv.URL, "https://"), RootCAs: pool}
	err := WaitReady(context.Background(), fixtureHost("seed003", nil), p, time.Minute, nil, "kube-apiserver on m1")
	if !errors.Is(err, ErrProbeUnauthorized) || calls.Load() != 1 {
		t.Errorf("got %v after %d calls, want ErrProbeUnauthorized after 1", err, calls.Load())
	}
}

func TestHeartbeatLine(t *testing.T) {
	old := heartbeatEvery
	heartbeatEvery = 20 * time.Millisecond
	defer func() { heartbeatEvery = old }()
	var buf testenv.Buffer
	hb := startHeartbeat(&buf, "waiting for kube-apiserver on m1 /readyz")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the buffer, not waiting for state
	}
	hb.stop()
	line := strings.SplitN(buf.String(), "\n", 2)[0]
	if line != "still waiting for kube-apiserver on m1 /readyz [00m00s elapsed]" {
		t.Errorf("heartbeat line %q", line)
	}
}

func TestLeasesAndEndpointSlices(t *testing.T) {
	now := time.Now()
	lease := func(name, holder string, renewed time.Duration) coordinationv1.Lease {
		d := int32(15)
		rt := metav1.NewMicroTime(now.Add(-renewed))
		return coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &d, RenewTime: &rt}}
	}
	leases := []Lease{
		leaseFrom(lease("kube-controller-manager", "m1_0a4e7d2c-1", time.Second), now),
		leaseFrom(lease("kube-scheduler", "m3_77aa", time.Second), now),
	}
	if leases[0].Hostname != "m1" || leases[0].Expired {
		t.Errorf("lease %+v", leases[0])
	}
	if err := CheckLeaderLeases(leases, []string{"m1"}); !errors.Is(err, ErrLeaseNotOnSurvivor) || !strings.Contains(err.Error(), "kube-scheduler") {
		t.Errorf("scheduler on a leaving host: %v", err)
	}
	leases[1] = leaseFrom(lease("kube-scheduler", "m3_77aa", time.Minute), now)
	if err := CheckLeaderLeases(leases, []string{"m1"}); err != nil {
		t.Errorf("an expired lease can be taken: %v", err)
	}

	ready, notReady := true, false
	slices := []discoveryv1.EndpointSlice{{Endpoints: []discoveryv1.Endpoint{
		{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
		{Addresses: []string{"10.0.0.1"}},
		{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
	}}}
	if got := EndpointSliceAddresses(slices); !reflect.DeepEqual(got, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Errorf("addresses %v", got)
	}
}

// envguideHost is the env-file guide's master 192.168.31.71: every component's flags in one
// *_OPTS variable of /opt/kubernetes/cfg/<component>.conf.
func envguideHost() *unitfiletest.DirHost {
	st := func(frag string) host.UnitStatus {
		return host.UnitStatus{LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled", FragmentPath: frag}
	}
	return fixtureHost("envguide", map[string]host.UnitStatus{
		"kube-apiserver.service":          st("/usr/lib/systemd/system/kube-apiserver.service"),
		"kube-controller-manager.service": st("/usr/lib/systemd/system/kube-controller-manager.service"),
		"kube-scheduler.service":          st("/usr/lib/systemd/system/kube-scheduler.service"),
	})
}

func TestPlanRewriteOptsString(t *testing.T) {
	c, err := Observe(context.Background(), envguideHost(), inventory.Paths{})
	if err != nil {
		t.Fatal(err)
	}
	f := c.APIServer.Flags
	if len(f.EtcdServers) != 3 || f.EtcdCertFile != "/opt/etcd/ssl/server.pem" || f.TLSCertFile != "/opt/kubernetes/ssl/server.pem" || f.AdvertiseAddress != "192.168.31.71" {
		t.Fatalf("flags read from KUBE_APISERVER_OPTS: %+v", f)
	}
	if kc := c.Scheduler.Kubeconfigs; len(kc) != 1 || kc[0].Path != "/opt/kubernetes/cfg/kube-scheduler.kubeconfig" {
		t.Fatalf("scheduler kubeconfigs from KUBE_SCHEDULER_OPTS: %+v", kc)
	}
	r, err := PlanRewrite(c, "m1", []string{"https://192.168.31.71:2379"}, 1, []string{"192.168.31.72", "192.168.31.73"})
	if err != nil {
		t.Fatal(err)
	}
	// The --etcd-servers line inside the OPTS string changes, and the scheduler's kubeconfig
	// that named a leaving master; the kcm's names this master and stays.
	golden.Check(t, "testdata/envguide/rewrite.golden", describeRewrite(r))
	assertChangesApply(t, c, r)
	if len(r.Changes) == 0 || r.Changes[0].Path != "/opt/kubernetes/cfg/kube-apiserver.conf" {
		t.Fatalf("changes %+v, want kube-apiserver.conf first", r.Changes)
	}
	// The rewritten conf reads back with one etcd server and every other flag as it was.
	c2 := observeRewritten(t, envguideHost(), r)
	if got := c2.APIServer.Flags.EtcdServers; len(got) != 1 || got[0] != "https://192.168.31.71:2379" {
		t.Errorf("after the rewrite etcd servers %v", got)
	}
	if len(c2.APIServer.Unit.Flags) != len(c.APIServer.Unit.Flags) {
		t.Errorf("flag count %d -> %d", len(c.APIServer.Unit.Flags), len(c2.APIServer.Unit.Flags))
	}
	if r2, err := PlanRewrite(c2, "m1", []string{"https://192.168.31.71:2379"}, 1, []string{"192.168.31.72", "192.168.31.73"}); err != nil || len(r2.Changes) != 0 {
		t.Errorf("second plan: %d changes, %v", len(r2.Changes), err)
	}
}
