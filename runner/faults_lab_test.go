package runner

import (
	"strings"
	"testing"
	"time"
)

// The fault suite (make faults): each test brings up its own lab, writes keys, plans the
// 3-to-1 shrink of seed 003, breaks something a real cluster breaks, and applies. Each ends
// with the API serving through the proxies and every key still in etcd. The crash of
// mastershrink itself at every step boundary is TestLabApplyCrashResume in cmd/mastershrink.

const faultKeys = 1000

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
	f.resume(path, "rerun after the fix")
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
		f.resume(path, "rerun after the cut")
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
