package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/runner"
	"github.com/mastershrink/mastershrink/testenv"
	"github.com/mastershrink/mastershrink/testenv/seed"
)

// buildFaultBinary builds mastershrink with the fault-injection points compiled in.
func buildFaultBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mastershrink")
	if out, err := exec.Command("go", "build", "-tags", "faultinject", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// etcdctlM1 is etcdctl on m1 against its own client address (TLS on every layout).
func etcdctlM1(lab *testenv.Lab) string {
	m1, _ := lab.Machine("m1")
	return "ETCDCTL_API=3 etcdctl --cacert /etc/kubernetes/ssl/ca.pem --cert /etc/kubernetes/ssl/etcd.pem --key /etc/kubernetes/ssl/etcd-key.pem --endpoints https://" + m1.Address + ":2379"
}

// etcdIntact asserts that etcd has every member healthy with a quorum and that every key
// written before is there.
func etcdIntact(t *testing.T, lab *testenv.Lab, members int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ec := labEtcd(t, lab)
	defer ec.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := lab.Exec(ctx, "m1", "sh", "-c", etcdctlM1(lab)+" endpoint health --cluster 2>&1")
		healthy := strings.Count(string(out), "is healthy")
		if err == nil && healthy == members {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd: %d of %d members healthy: %v\n%s", healthy, members, err, out)
		}
		time.Sleep(time.Second)
	}
	if err := seed.CheckKeys(ctx, ec, "/seed/", seedKeys); err != nil {
		t.Errorf("seed keys: %v", err)
	}
}

// setEtcdName restarts host's etcd with --name set to name, and waits for the cluster to be
// whole again: the member list then shows the new name.
func setEtcdName(t *testing.T, lab *testenv.Lab, host, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := lab.Exec(ctx, host, "sh", "-c", "sed -i 's/--name=[^ ]*/--name="+name+"/' /etc/systemd/system/kube-etcd.service && systemctl daemon-reload && systemctl restart kube-etcd"); err != nil {
		t.Fatalf("rename etcd on %s: %v\n%s", host, err, out)
	}
	etcdIntact(t, lab, 3)
}

// TestLabSafety runs, in one lab with the prober on, what an operator or a cluster unlike our
// lab does that used to lose quorum or stop the wrong etcd: each is refused or handled, and
// afterwards etcd has its quorum and every key, and the API answered through every proxy.
func TestLabSafety(t *testing.T) {
	testenv.RequireLab(t)
	bin := buildFaultBinary(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "mssafe"})
	prepare(t, lab)
	prober := lab.StartProber(context.Background(), 20)
	defer func() {
		report := prober.Stop()
		t.Logf("prober: %s", report)
		checkProbes(t, report)
	}()
	netns := filepath.Base(lab.NetNS)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	t.Run("selections that would stop a voting member", func(t *testing.T) {
		path, _ := makeLabPlan(t, lab, t.TempDir())
		before := labState(t, lab)
		for _, sel := range [][]string{{"--skip", "etcd/remove-member"}, {"--only", "etcd/stop"}} {
			_, errOut, code := cli(t, lab, append([]string{"apply", path, "-i", lab.Inventory}, sel...)...)
			if code != exitRefused || !strings.Contains(errOut, "etcd/stop/m2 needs etcd/remove-member/m2") {
				t.Errorf("apply %v: exit %d, want %d naming the missing removal:\n%s", sel, code, exitRefused, errOut)
			}
		}
		sameState(t, before, labState(t, lab))
		etcdIntact(t, lab, 3)
	})

	t.Run("offline for a live host", func(t *testing.T) {
		out, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--remove", "m3", "--offline", "m3")
		if code != exitRefused || !strings.Contains(out+errOut, "m3 answers SSH") {
			t.Errorf("plan --offline m3: exit %d, want %d naming the live host:\n%s%s", code, exitRefused, out, errOut)
		}
	})

	t.Run("drain of a surviving master", func(t *testing.T) {
		out, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--drain", "m1")
		if code != exitRefused || !strings.Contains(out+errOut, "m1") || !strings.Contains(out+errOut, "--remove") {
			t.Errorf("plan --drain m1: exit %d, want %d pointing at --remove:\n%s%s", code, exitRefused, out, errOut)
		}
	})

	t.Run("kubeconfig pointing at a leaving master", func(t *testing.T) {
		m2, _ := lab.Machine("m2")
		dir := t.TempDir()
		kc, err := os.ReadFile(lab.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		kc = regexp.MustCompile(`server: .*`).ReplaceAll(kc, []byte("server: https://"+m2.Address+":6443"))
		os.WriteFile(filepath.Join(dir, "m2.kubeconfig"), kc, 0o600)
		inv, _ := os.ReadFile(lab.Inventory)
		inv = regexp.MustCompile(`(?m)^kubeconfig: .*$`).ReplaceAll(inv, []byte("kubeconfig: "+filepath.Join(dir, "m2.kubeconfig")))
		invPath := filepath.Join(filepath.Dir(lab.Inventory), "inventory-m2kc.yaml")
		os.WriteFile(invPath, inv, 0o600)
		out, errOut, code := cli(t, lab, "plan", "-i", invPath, "--remove", "m2")
		if code != exitRefused || !strings.Contains(out, "the kubeconfig's server https://"+m2.Address+":6443 is m2, which leaves") {
			t.Errorf("plan with the kubeconfig on m2: exit %d, want %d naming it:\n%s%s", code, exitRefused, out, errOut)
		}
	})

	t.Run("ca-config profile without client auth", func(t *testing.T) {
		const conf = "/opt/k8s/work/ca-config.json"
		if out, err := lab.Exec(ctx, "m1", "sh", "-c", "cp -p "+conf+" "+conf+".orig && sed -i '/\"client auth\"/d; s/\"server auth\",/\"server auth\"/' "+conf); err != nil {
			t.Fatalf("edit %s: %v\n%s", conf, err, out)
		}
		defer lab.Exec(ctx, "m1", "mv", conf+".orig", conf)
		out, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--remove", "m3")
		if code != exitRefused || !strings.Contains(out, "cannot be re-signed by the cluster CA") || !strings.Contains(out, "client auth") {
			t.Errorf("plan with a profile lacking client auth: exit %d, want %d naming it:\n%s%s", code, exitRefused, out, errOut)
		}
	})

	t.Run("a worker whose proxy is envoy", func(t *testing.T) {
		// The running nginx keeps its loaded config (the prober goes on through it); the file
		// the inventory names is gone and an envoy config stands where its package puts it.
		// (haproxy there would be read and edited: TestLabHAProxyLayout. Debian's default
		// haproxy.cfg, fronting nothing, stays in the rootfs and is rightly not named.)
		inv, err := inventory.Load(lab.Inventory)
		if err != nil {
			t.Fatal(err)
		}
		w1, _ := inv.Host("w1")
		conf := w1.Paths.NginxConfig
		if out, err := lab.Exec(ctx, "w1", "sh", "-c", "mv "+conf+" "+conf+".away && mkdir -p /etc/envoy && printf 'static_resources: {}\\n' > /etc/envoy/envoy.yaml"); err != nil {
			t.Fatalf("envoy on w1: %v\n%s", err, out)
		}
		defer lab.Exec(ctx, "w1", "sh", "-c", "mv "+conf+".away "+conf+" && rm -rf /etc/envoy")
		out, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--remove", "m3")
		if code != exitRefused || !strings.Contains(out, "w1 has no nginx config at "+conf+" but another apiserver proxy (/etc/envoy/envoy.yaml)") {
			t.Errorf("plan with envoy on w1: exit %d, want %d naming it:\n%s%s", code, exitRefused, out, errOut)
		}
	})

	t.Run("a leaving master holding a VIP no staying master serves", func(t *testing.T) {
		conf := "vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  virtual_ipaddress {\n    10.88.0.100/24\n  }\n}\n"
		if out, err := lab.Exec(ctx, "m3", "sh", "-c", "mkdir -p /etc/keepalived && printf '"+conf+"' > /etc/keepalived/keepalived.conf && systemctl start keepalived"); err != nil {
			t.Fatalf("keepalived on m3: %v\n%s", err, out)
		}
		defer lab.Exec(ctx, "m3", "sh", "-c", "systemctl stop keepalived; rm -rf /etc/keepalived")
		out, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--remove", "m3")
		if code != exitRefused || !strings.Contains(out, "VIP 10.88.0.100 on the leaving m3 has no staying host running keepalived for it") || !strings.Contains(out, "on a staying master") {
			t.Errorf("plan --remove m3 with the only keepalived on m3: exit %d, want %d naming it:\n%s%s", code, exitRefused, out, errOut)
		}
	})

	t.Run("an inventory naming the wrong etcd unit", func(t *testing.T) {
		// The inventory says etcd.service, Debian's packaged unit, there but inactive; the
		// hosts run kube-etcd.service: refused, naming the field and the unit to set.
		inv, _ := os.ReadFile(lab.Inventory)
		inv = regexp.MustCompile(`(?m)^hosts:$`).ReplaceAll(inv, []byte("paths:\n  etcd_unit: etcd.service\nhosts:"))
		invPath := filepath.Join(filepath.Dir(lab.Inventory), "inventory-etcdunit.yaml")
		if err := os.WriteFile(invPath, inv, 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := cli(t, lab, "plan", "-i", invPath, "--remove", "m3")
		for _, want := range []string{
			"m1: the inventory's etcd_unit is etcd.service, which is inactive there, but etcd runs there as kube-etcd.service",
			"set etcd_unit: kube-etcd.service for m1 in the inventory",
		} {
			if code != exitRefused || !strings.Contains(out, want) {
				t.Errorf("plan with etcd_unit: etcd.service: exit %d, want %d with %q:\n%s%s", code, exitRefused, want, out, errOut)
			}
		}
	})

	t.Run("member names swapped", func(t *testing.T) {
		m2, _ := lab.Machine("m2")
		m3, _ := lab.Machine("m3")
		setEtcdName(t, lab, "m2", "swap")
		setEtcdName(t, lab, "m3", m2.Address)
		setEtcdName(t, lab, "m2", m3.Address)
		before := labState(t, lab)
		out, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--remove", "m2")
		if code != exitRefused || !strings.Contains(out, "has the peer address of m2, but its name is that of m3") {
			t.Errorf("plan --remove m2 with swapped names: exit %d, want %d naming the conflict:\n%s%s", code, exitRefused, out, errOut)
		}
		sameState(t, before, labState(t, lab))
		setEtcdName(t, lab, "m2", "swap")
		setEtcdName(t, lab, "m3", m3.Address)
		setEtcdName(t, lab, "m2", m2.Address)
	})

	t.Run("two applies on two machines, then the lock deleted mid-run", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "drain.json")
		if out, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--drain", "w2", "--out", path); code != exitOK {
			t.Fatalf("plan: exit %d\n%s%s", code, out, errOut)
		}
		pause := filepath.Join(dir, "pause")
		os.WriteFile(pause, nil, 0o600)
		first := exec.CommandContext(ctx, "ip", "netns", "exec", netns, bin, "apply", path, "-i", lab.Inventory)
		first.Env = append(os.Environ(), "MASTERSHRINK_PAUSE_AFTER=preflight", "MASTERSHRINK_PAUSE_FILE="+pause)
		var firstOut testenv.Buffer
		first.Stdout, first.Stderr = &firstOut, &firstOut
		if err := first.Start(); err != nil {
			t.Fatal(err)
		}
		journal := strings.TrimSuffix(path, ".json") + ".journal.jsonl"
		if err := waitFor(2*time.Minute, func() bool {
			h, _ := runner.ReadJournal(journal, readChecksum(t, path))
			return h.Ended["preflight"]
		}); err != nil {
			first.Process.Kill()
			t.Fatalf("first apply never ended preflight:\n%s", firstOut.String())
		}
		ec := labEtcd(t, lab)
		defer ec.Close()
		holder, err := runner.ReadLock(ctx, ec)
		if err != nil || holder == nil {
			t.Fatalf("lock while the first apply runs: %+v, %v", holder, err)
		}
		// The second apply runs on "another machine": another network namespace (m1's) and
		// another PID namespace, where the first run's PID means nothing.
		copyPath := filepath.Join(t.TempDir(), "drain.json")
		data, _ := os.ReadFile(path)
		os.WriteFile(copyPath, data, 0o600)
		second := exec.CommandContext(ctx, "unshare", "--pid", "--fork", "--mount-proc", "ip", "netns", "exec", netns+"-m1", bin, "apply", copyPath, "-i", lab.Inventory)
		out, err := second.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "holds the cluster lock") || !strings.Contains(string(out), fmt.Sprintf("pid %d", holder.PID)) ||
			!strings.Contains(string(out), "which is alive") {
			t.Errorf("second apply: %v, want a refusal naming the live holder (pid %d):\n%s", err, holder.PID, out)
		}
		if _, err := ec.Delete(ctx, runner.LockKey); err != nil {
			t.Fatal(err)
		}
		os.Remove(pause)
		err = first.Wait()
		if err == nil || !strings.Contains(firstOut.String(), "was deleted while this run held it") {
			t.Errorf("first apply after its lock was deleted: %v, want it stopped naming the deletion:\n%s", err, firstOut.String())
		}
		if h, _ := runner.ReadJournal(journal, readChecksum(t, path)); h.Started["nodes/drain/w2"] {
			t.Errorf("the first apply started nodes/drain/w2 after losing its lock")
		}
		etcdIntact(t, lab, 3)
	})

	t.Run("member replaced after a crash", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "plan.json")
		_, p := planLab(t, lab, path, "--remove", "m3")
		var oldID string
		for _, s := range p.Steps {
			if s.Kind == plan.KindRemoveMember {
				oldID = s.Params["member_id"]
			}
		}
		apply := exec.CommandContext(ctx, "ip", "netns", "exec", netns, bin, "apply", path, "-i", lab.Inventory)
		apply.Env = append(os.Environ(), "MASTERSHRINK_CRASH_AFTER=apiserver/update/m1")
		if out, err := apply.CombinedOutput(); err == nil || !strings.Contains(string(out), "apiserver/update/m1") {
			t.Fatalf("apply crashed after apiserver/update/m1: %v\n%s", err, out)
		}
		// The operator replaces m3's member by hand: same host, same address, new member ID.
		m3, _ := lab.Machine("m3")
		for _, c := range []struct{ host, cmd string }{
			{"m1", etcdctlM1(lab) + " member remove " + oldID},
			{"m3", "systemctl stop kube-etcd && d=$(systemctl cat kube-etcd | grep -o -- '--data-dir=[^ ]*' | cut -d= -f2) && rm -rf \"$d\"/member"},
			{"m1", etcdctlM1(lab) + " member add " + m3.Address + " --peer-urls=https://" + m3.Address + ":2380"},
			{"m3", "sed -i 's/--initial-cluster-state=new/--initial-cluster-state=existing/' /etc/systemd/system/kube-etcd.service && systemctl daemon-reload && systemctl start kube-etcd"},
		} {
			if out, err := lab.Exec(ctx, c.host, "sh", "-c", c.cmd); err != nil {
				t.Fatalf("on %s: %s: %v\n%s", c.host, c.cmd, err, out)
			}
		}
		etcdIntact(t, lab, 3)
		before := labState(t, lab)
		rerun := exec.CommandContext(ctx, "ip", "netns", "exec", netns, bin, "apply", path, "-i", lab.Inventory)
		out, err := rerun.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "it was replaced since the plan was made") || !strings.Contains(string(out), oldID) {
			t.Errorf("rerun after the member was replaced: %v, want a refusal naming it:\n%s", err, out)
		}
		sameState(t, before, labState(t, lab))
		etcdIntact(t, lab, 3)
	})
}

func readChecksum(t *testing.T, path string) string { return readPlan(t, path).Checksum }

func waitFor(d time.Duration, ok func() bool) error {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if ok() {
			return nil
		}
	}
	return fmt.Errorf("not within %s", d)
}

// TestLabFingerprintStable5to3: a 5-to-3 shrink on the kubeasz layout, where two survivors
// hold the same certificates, planned 50 times: one fingerprint, and apply accepts the plan.
func TestLabFingerprintStable5to3(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "msfive", Masters: 5, Workers: 2, Layout: "kubeasz"})
	prepare(t, lab)
	prober := lab.StartProber(context.Background(), 20)
	dir := t.TempDir()
	seen := map[string]int{}
	var path string
	for i := 0; i < 50; i++ {
		path = filepath.Join(dir, fmt.Sprintf("plan-%d.json", i))
		out, errOut, code := cli(t, lab, "plan", "-i", lab.Inventory, "--remove", "m4,m5", "--out", path)
		if code != exitOK {
			t.Fatalf("plan %d: exit %d\n%s%s", i, code, out, errOut)
		}
		seen[readPlan(t, path).Fingerprint]++
	}
	if len(seen) != 1 {
		t.Fatalf("50 plans of one cluster gave %d fingerprints: %v", len(seen), seen)
	}
	_, errOut, code := cli(t, lab, "apply", path, "-i", lab.Inventory, "--only", "preflight,etcd/snapshot")
	if code != exitOK {
		t.Errorf("apply of a fresh plan: exit %d, want it accepted:\n%s", code, errOut)
	}
	checkProbes(t, prober.Stop())
	etcdIntact(t, lab, 5)
}

// TestLabPeerURLsByName: etcd peers that know each other by host name (resolved by
// /etc/hosts) are matched to their hosts, and the 3-to-1 shrink goes through.
func TestLabPeerURLsByName(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "mspeer", EtcdPeersByName: true, UpstreamsByName: true})
	kube := prepare(t, lab)
	// The leaving hosts are also wiped of the keys and etcd data they keep.
	path := filepath.Join(t.TempDir(), "plan.json")
	_, p := planLab(t, lab, path, "--remove", "m2,m3", "--drain", "w2", "--wipe-leaving", "move")
	for _, host := range []string{"m2", "m3"} {
		st, ok := p.Step("etcd/remove-member/" + host)
		if !ok || st.Params["peer_urls"] != "https://"+host+":2380" {
			t.Fatalf("removal of %s: %+v, want its member at https://%s:2380", host, st, host)
		}
		// The proxies name m2 and m3 by host name: resolved on each node, marked down.
		m, _ := lab.Machine(host)
		lbStep, ok := p.Step("lb/update/w1")
		if !ok || !slices.Contains(lbStep.Details, "upstream server "+host+" is "+m.Address+" on w1") ||
			len(lbStep.Files) != 1 || !strings.Contains(lbStep.Files[0].After, "server "+host+":6443") ||
			!regexp.MustCompile(`server `+host+`:6443 [^;]*down;`).MatchString(lbStep.Files[0].After) {
			t.Fatalf("lb/update/w1 does not mark %s down by its name: %+v", host, lbStep)
		}
	}
	applyProbed(t, lab, path)
	checkShrunk(t, lab, kube, []string{"m2", "m3"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, h := range []string{"m2", "m3"} {
		keys, _ := lab.Exec(ctx, h, "sh", "-c", "grep -rlE -e 'PRIVATE KEY' -e 'client-key-data:' /etc/kubernetes /opt/k8s/work 2>/dev/null; true")
		if k := strings.TrimSpace(string(keys)); k != "" {
			t.Errorf("%s still holds keys after --wipe-leaving:\n%s", h, k)
		}
		aside, err := lab.Exec(ctx, h, "sh", "-c", "stat -c '%a %n' /var/backups/mastershrink/left-*; ls /var/backups/mastershrink/left-*/; test ! -e /approot/data/k8s/etcd/data")
		if err != nil || !strings.Contains(string(aside), "700 /var/backups/mastershrink/left-") || !strings.Contains(string(aside), "approot_data_k8s_etcd_data") {
			t.Errorf("%s: etcd data not moved aside into a 0700 folder: %v\n%s", h, err, aside)
		}
	}
}
