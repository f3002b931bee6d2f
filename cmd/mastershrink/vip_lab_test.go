package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/testenv"
)

// TestLabVIPOnLeavingMaster shrinks 3 masters to 1 where keepalived on the masters holds the
// VIP every client uses, and the VIP starts on m3, a master that leaves (the highest
// priority). The plan must move the VIP off the leaving masters before anything there stops,
// straight to m1, and take m2 and m3 out of m1's unicast peers; mastershrink itself and the
// prober reach the API only through the VIP, and no request may fail.
func TestLabVIPOnLeavingMaster(t *testing.T) {
	lab, ctx, kc := startVIPLab(t, testenv.Options{Name: "msvip"})
	m2, _ := lab.Machine("m2")
	m3, _ := lab.Machine("m3")

	path := filepath.Join(t.TempDir(), "plan.json")
	_, p := planLab(t, lab, path, "--kubeconfig", kc, "--remove", "m2,m3")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "labvrrp1") {
		t.Errorf("the plan file holds keepalived's auth_pass")
	}
	pos := map[string]int{}
	for i, s := range p.Steps {
		pos[s.ID] = i
	}
	order := []string{"vip/release/m2", "vip/release/m3", "vip/update/m1", "apiserver/update/m1", "components/retire/m2", "components/retire/m3"}
	for i, id := range order {
		stepByID(t, p, id)
		if i > 0 && pos[order[i-1]] > pos[id] {
			t.Errorf("%s comes before %s", id, order[i-1])
		}
	}
	after := fileAfter(t, stepByID(t, p, "vip/update/m1"), "/etc/keepalived/keepalived.conf")
	if strings.Contains(after, m2.Address) || strings.Contains(after, m3.Address) || !strings.Contains(after, testenv.VIPAddress) {
		t.Errorf("m1's keepalived.conf after the plan:\n%s", after)
	}
	if t.Failed() {
		t.FailNow()
	}

	prober := lab.StartProberVia(context.Background(), 20, lab.VIPFront(), "kubernetes")
	start := time.Now()
	// An operator who stops after the VIP moved and undoes: keepalived runs again on m2 and
	// m3, the VIP goes back to m3, m1's peers are restored; the whole plan then still applies.
	out, errOut, code := cli(t, lab, "apply", path, "-i", lab.Inventory, "--kubeconfig", kc, "--only", "vip/")
	if code != exitOK {
		t.Fatalf("apply --only vip/ exit %d\n%s%s", code, errOut, out)
	}
	out, errOut, code = cli(t, lab, "undo", path, "-i", lab.Inventory, "--kubeconfig", kc, "--yes")
	if code != exitOK {
		t.Fatalf("undo exit %d\n%s%s", code, errOut, out)
	}
	holder := func() string {
		for _, m := range []string{"m1", "m2", "m3"} {
			addrs, _ := lab.Exec(ctx, m, "ip", "-o", "addr", "show", "dev", "eth0")
			if strings.Contains(string(addrs), " "+testenv.VIPAddress+"/") {
				return m
			}
		}
		return ""
	}
	for deadline := time.Now().Add(20 * time.Second); holder() != "m3" && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
	}
	if h := holder(); h != "m3" {
		t.Errorf("after the undo the VIP is on %q, want m3 again", h)
	}
	if conf, _ := lab.Exec(ctx, "m1", "cat", "/etc/keepalived/keepalived.conf"); !strings.Contains(string(conf), m3.Address) {
		t.Errorf("undo did not restore m1's peers:\n%s", conf)
	}
	out, errOut, code = cli(t, lab, "apply", path, "-i", lab.Inventory, "--kubeconfig", kc)
	report := prober.Stop()
	t.Logf("apply --only vip/, undo, apply took %s; prober through the VIP: %s\n%s%s", time.Since(start).Round(time.Second), report, errOut, out)
	if code != exitOK {
		t.Fatalf("apply exit %d", code)
	}
	checkVIPProbes(t, report)

	for _, m := range []string{"m1", "m2", "m3"} {
		addrs, err := lab.Exec(ctx, m, "ip", "-o", "addr", "show", "dev", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if holds := strings.Contains(string(addrs), " "+testenv.VIPAddress+"/"); holds != (m == "m1") {
			t.Errorf("%s holds the VIP: %v, want only m1", m, holds)
		}
	}
	for _, m := range []string{"m2", "m3"} {
		st, _ := lab.Exec(ctx, m, "systemctl", "is-enabled", "keepalived.service")
		if !strings.HasPrefix(string(st), "disabled") {
			t.Errorf("keepalived on %s is %q, want disabled", m, st)
		}
	}
	conf, err := lab.Exec(ctx, "m1", "cat", "/etc/keepalived/keepalived.conf")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(conf), m2.Address) || strings.Contains(string(conf), m3.Address) {
		t.Errorf("m1's keepalived.conf still names a removed master:\n%s", conf)
	}
	// Only the keys: the members a 3-to-1 shrink leaves are TestLabApply's to check.
	m1EtcdAfterShrink(ctx, t, lab)
	m1CertsNameOnlyM1(ctx, t, lab, "/etc/kubernetes/ssl/etcd.pem", "/etc/kubernetes/ssl/kubernetes.pem")
}

// TestLabLBHostsVIP shrinks 3 masters to 1 on the env-file guides' layout with their front
// end: two LB hosts (role lb) running nginx on :16443 and a keepalived pair holding the VIP
// that mastershrink and the prober use, next to every node's own proxy. The LB hosts' nginx
// is updated like a node's, taken off m1's apiserver while it restarts, and the VIP stays
// where it is: no request through it may fail.
func TestLabLBHostsVIP(t *testing.T) {
	lab, ctx, kc := startVIPLab(t, testenv.Options{Name: "mslbvip", Layout: "envfile", LBHosts: 2})
	m2, _ := lab.Machine("m2")
	m3, _ := lab.Machine("m3")

	path := filepath.Join(t.TempDir(), "plan.json")
	// --lb-mode remove: the LB hosts' nginx must end naming no removed master at all.
	_, p := planLab(t, lab, path, "--kubeconfig", kc, "--remove", "m2,m3", "--lb-mode", "remove")
	const lbConf = "/opt/kube-nginx/conf/kube-nginx.conf"
	for _, lb := range []string{"lb1", "lb2"} {
		after := fileAfter(t, stepByID(t, p, "lb/update/"+lb), lbConf)
		if !strings.Contains(after, "listen 16443;") {
			t.Errorf("%s's nginx after the plan:\n%s", lb, after)
		}
	}
	up := stepByID(t, p, "apiserver/update/m1")
	var aside []string
	for _, f := range up.Aside {
		aside = append(aside, f.Host)
	}
	if !slices.Contains(aside, "lb1") || !slices.Contains(aside, "lb2") {
		t.Errorf("m1's restart sets aside the proxies of %v, want lb1 and lb2 among them", aside)
	}
	for _, s := range p.Steps {
		if strings.HasPrefix(s.ID, "vip/") {
			t.Errorf("step %s: the VIP is on LB hosts that stay", s.ID)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	prober := lab.StartProberVia(context.Background(), 20, lab.VIPFront(), "kubernetes")
	start := time.Now()
	out, errOut, code := cli(t, lab, "apply", path, "-i", lab.Inventory, "--kubeconfig", kc)
	report := prober.Stop()
	t.Logf("apply took %s; prober through the VIP on the LB hosts: %s\n%s%s", time.Since(start).Round(time.Second), report, errOut, out)
	if code != exitOK {
		t.Fatalf("apply exit %d", code)
	}
	checkVIPProbes(t, report)
	for _, lb := range []string{"lb1", "lb2"} {
		conf, err := lab.Exec(ctx, lb, "cat", lbConf)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(conf), m2.Address) || strings.Contains(string(conf), m3.Address) {
			t.Errorf("%s's nginx still names a removed master:\n%s", lb, conf)
		}
	}
	addrs, err := lab.Exec(ctx, "lb2", "ip", "-o", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(string(addrs), " "+testenv.VIPAddress+"/") {
		t.Errorf("the VIP left lb2: %s %v", addrs, err)
	}
	m1EtcdAfterShrink(ctx, t, lab)
	m1CertsNameOnlyM1(ctx, t, lab, "/opt/etcd/ssl/server.pem", "/opt/kubernetes/ssl/kubernetes.pem")
}

// checkVIPProbes fails the test when any request through the VIP failed, and logs every
// failure: when and from where they came tells which step moved the VIP badly.
func checkVIPProbes(t *testing.T, report testenv.ProbeReport) {
	t.Helper()
	if report.Failed > 0 {
		t.Errorf("prober: %d of %d requests through the VIP failed", report.Failed, report.Total)
		for _, f := range report.Failures {
			t.Logf("  %s %s %s", f.Worker, f.Start.Format("15:04:05.000"), f.Err)
		}
	}
}
