package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv"
)

// guideShrink is what one layout's 3-to-1 lab shrink must end with, besides what every layout
// must: apply exits 0 with no failed probe, m1 is etcd's only member with every seed key,
// and no certificate the plan re-signed still names a removed address.
type guideShrink struct {
	layout, lab string
	// masters is the lab's master count (3 when 0); remove the masters that leave (m2 and
	// m3 when empty); leader the one etcd's leadership is moved to before the plan.
	masters int
	remove  []string
	leader  string
	// members are the staying etcd members' names.
	members []string
	// certs must be re-signed (path -> hosts that hold it, sorted); nothing else may be.
	certs map[string][]string
	// clean are folders on the staying hosts where no file may name a removed address.
	clean []string
	// checkPlan asserts what is particular to the layout's plan.
	checkPlan func(t *testing.T, p *plan.Plan, out string)
	// checkAfter asserts what is particular to the layout after apply.
	checkAfter func(t *testing.T, ctx context.Context, lab *testenv.Lab)
	// checkReported asserts, after apply, what the plan reported and left in place.
	checkReported func(t *testing.T, ctx context.Context, lab *testenv.Lab, p *plan.Plan)
}

// runGuideShrink plans and applies the removal of g.remove on a fresh lab of the layout.
func runGuideShrink(t *testing.T, g guideShrink) {
	testenv.RequireLab(t)
	if len(g.remove) == 0 {
		g.remove = []string{"m2", "m3"}
	}
	lab := testenv.StartLab(t, testenv.Options{Name: g.lab, Layout: g.layout, Masters: g.masters})
	prepare(t, lab)
	m1, _ := lab.Machine("m1")
	var removedIPs, staying []string
	for _, m := range lab.Machines {
		if slices.Contains(g.remove, m.Name) {
			removedIPs = append(removedIPs, m.Address)
		} else {
			staying = append(staying, m.Name)
		}
	}
	if g.leader != "" {
		moveEtcdLeader(t, lab, g.leader)
	}

	path := filepath.Join(t.TempDir(), "plan.json")
	// --lb-mode remove: the proxies keep no line naming a removed master, not even "down".
	out, p := planLab(t, lab, path, "--remove", strings.Join(g.remove, ","), "--lb-mode", "remove")

	t.Run("plan", func(t *testing.T) {
		got := map[string][]string{}
		for _, s := range p.Steps {
			if s.Kind != plan.KindCertResign {
				continue
			}
			prm, err := plan.DecodeParams[plan.CertResignParams](s)
			if err != nil {
				t.Fatal(err)
			}
			hosts := slices.Clone(prm.Hosts)
			slices.Sort(hosts)
			got[prm.Path] = append(got[prm.Path], hosts...)
		}
		for path, hosts := range g.certs {
			if !slices.Equal(got[path], hosts) {
				t.Errorf("%s re-signed on %v, want %v", path, got[path], hosts)
			}
		}
		for path := range got {
			if _, ok := g.certs[path]; !ok {
				t.Errorf("%s re-signed, and the layout has no such certificate to re-sign", path)
			}
		}
		for _, w := range p.Warnings {
			if strings.Contains(w, "could not be read") {
				t.Errorf("warning about a certificate the lab made readable: %s", w)
			}
		}
		if g.checkPlan != nil {
			g.checkPlan(t, p, out)
		}
	})
	if t.Failed() {
		t.Logf("plan:\n%s", out)
		t.FailNow()
	}

	t.Run("apply", func(t *testing.T) {
		applyProbed(t, lab, path)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if names := m1EtcdAfterShrink(ctx, t, lab); !slices.Equal(names, g.members) {
			t.Errorf("etcd members %v, want %v", names, g.members)
		}
		for cert, hosts := range g.certs {
			for _, h := range hosts {
				out, err := lab.Exec(ctx, h, "openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert)
				if err != nil {
					t.Fatalf("%s:%s: %v", h, cert, err)
				}
				s := string(out) + ","
				bad := !strings.Contains(s, m1.Address)
				for i, name := range g.remove {
					bad = bad || strings.Contains(s, removedIPs[i]+",") || strings.Contains(s, removedIPs[i]+"\n") || strings.Contains(s, "DNS:"+name+",")
				}
				if bad {
					t.Errorf("%s:%s SANs: %s, want m1 and no removed master, by address or name", h, cert, s)
				}
			}
		}
		// Nothing the tool could have rewritten still names a removed master (backups aside).
		grep := "grep -rlsIE --exclude='*.bak-*'"
		for _, ip := range removedIPs {
			grep += " -e '" + strings.ReplaceAll(ip, ".", "\\.") + "([^0-9]|$)'"
		}
		grep += " " + strings.Join(g.clean, " ") + " || true"
		for _, h := range staying {
			out, err := lab.Exec(ctx, h, "sh", "-c", grep)
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Errorf("%s: files still naming a removed master:\n%s", h, s)
			}
		}
		if g.checkAfter != nil {
			g.checkAfter(t, ctx, lab)
		}
		if g.checkReported != nil {
			g.checkReported(t, ctx, lab, p)
		}
	})
}

// TestLabHardwayLayout shrinks 3 masters to 1 on "Kubernetes the hard way": etcd's flags on
// ExecStart, several written "--flag value"; members named after their hosts; one
// kubernetes.pem served by the apiserver and, copied into /etc/etcd, by etcd; no
// ca-config.json on the machines, so the CA signs with its own profile.
func TestLabHardwayLayout(t *testing.T) {
	runGuideShrink(t, guideShrink{
		layout: "hardway", lab: "mshardway", members: []string{"m1"},
		certs: map[string][]string{
			"/etc/etcd/kubernetes.pem":           {"m1"},
			"/var/lib/kubernetes/kubernetes.pem": {"m1"},
		},
		clean: []string{"/etc/systemd/system", "/etc/etcd", "/var/lib/kubernetes", "/opt/kube-nginx/conf"},
		checkPlan: func(t *testing.T, p *plan.Plan, out string) {
			unit := fileAfter(t, stepByID(t, p, "etcd/initial-cluster/m1"), "/etc/systemd/system/etcd.service")
			if !strings.Contains(unit, "--initial-cluster m1=https://10.88.0.11:2380 \\\n") {
				t.Errorf("etcd.service after the plan:\n%s", unit)
			}
		},
	})
}

// TestLabKubesprayLayout shrinks 3 masters to 1 with kubespray's etcd: flags as unquoted
// ETCD_* variables of /etc/etcd.env, etcd's own CA, and make-ssl-etcd.sh's per-host
// certificates (every host's on every etcd host, each with every etcd address). The plan
// re-signs with etcd's CA every staying host's certificate wherever it is kept, the
// apiserver's serving certificate with the cluster CA, and reports the leaving hosts' own
// certificates left on m1; after apply nothing else in /etc/ssl/etcd/ssl names a removed
// master.
func TestLabKubesprayLayout(t *testing.T) {
	const dir = "/etc/ssl/etcd/ssl/"
	runGuideShrink(t, guideShrink{
		layout: "kubespray", lab: "msspray", members: []string{"etcd1"},
		certs: map[string][]string{
			dir + "member-m1.pem":               {"m1"},
			dir + "admin-m1.pem":                {"m1"},
			dir + "node-m1.pem":                 {"m1"},
			dir + "node-w1.pem":                 {"m1", "w1"},
			dir + "node-w2.pem":                 {"m1", "w2"},
			"/etc/kubernetes/ssl/apiserver.crt": {"m1"},
		},
		clean: []string{"/etc/systemd/system", "/etc/etcd.env", "/etc/kubernetes", "/opt/kube-nginx/conf"},
		checkPlan: func(t *testing.T, p *plan.Plan, out string) {
			env := fileAfter(t, stepByID(t, p, "etcd/initial-cluster/m1"), "/etc/etcd.env")
			for _, want := range []string{"\nETCD_INITIAL_CLUSTER=etcd1=https://10.88.0.11:2380\n", "\nETCD_INITIAL_CLUSTER_STATE=existing\n"} {
				if !strings.Contains(env, want) {
					t.Errorf("/etc/etcd.env after the plan lacks %q:\n%s", want, env)
				}
			}
			checkEtcdCASigns(t, p)
		},
		checkReported: checkKubesprayReported,
	})
}

// TestLabKubespray5to3LeaderLeaves shrinks 5 masters to 3 on kubespray's etcd with etcd's
// leader on a leaving master: leadership moves to a survivor first, and every survivor's
// certificates are re-signed on every survivor that keeps a copy, etcd restarting on each in
// turn to serve its own, with no failed request.
func TestLabKubespray5to3LeaderLeaves(t *testing.T) {
	const dir = "/etc/ssl/etcd/ssl/"
	masters := []string{"m1", "m2", "m3"}
	certs := map[string][]string{"/etc/kubernetes/ssl/apiserver.crt": masters}
	for _, m := range masters {
		for _, kind := range []string{"member", "admin", "node"} {
			certs[dir+kind+"-"+m+".pem"] = masters
		}
	}
	certs[dir+"node-w1.pem"] = []string{"m1", "m2", "m3", "w1"}
	certs[dir+"node-w2.pem"] = []string{"m1", "m2", "m3", "w2"}
	runGuideShrink(t, guideShrink{
		layout: "kubespray", lab: "msspray5", masters: 5, remove: []string{"m4", "m5"}, leader: "m5",
		members: []string{"etcd1", "etcd2", "etcd3"},
		certs:   certs,
		clean:   []string{"/etc/systemd/system", "/etc/etcd.env", "/etc/kubernetes", "/opt/kube-nginx/conf"},
		checkPlan: func(t *testing.T, p *plan.Plan, out string) {
			if s := stepByID(t, p, "etcd/move-leader"); !strings.Contains(s.Summary, "etcd5") && !strings.Contains(s.Summary, "m5") {
				t.Errorf("etcd/move-leader: %q, want it to move the leadership off m5", s.Summary)
			}
			checkEtcdCASigns(t, p)
		},
		checkReported: checkKubesprayReported,
	})
}

// checkEtcdCASigns: every certificate of kubespray's etcd folder is re-signed by etcd's CA.
func checkEtcdCASigns(t *testing.T, p *plan.Plan) {
	const dir = "/etc/ssl/etcd/ssl/"
	for _, s := range p.Steps {
		if prm, err := plan.DecodeParams[plan.CertResignParams](s); err == nil && strings.HasPrefix(prm.Path, dir) &&
			(prm.CAHost != "m1" || prm.CACert != dir+"ca.pem" || prm.CAKey != dir+"ca-key.pem") {
			t.Errorf("%s is re-signed by %s:%s (key %s), want etcd's CA on m1", prm.Path, prm.CAHost, prm.CACert, prm.CAKey)
		}
	}
}

// checkKubesprayReported: after apply, the only certificates in kubespray's etcd folder on a
// staying host that still name a removed master are the leaving hosts' own, each named in
// the plan's warning for that host.
func checkKubesprayReported(t *testing.T, ctx context.Context, lab *testenv.Lab, p *plan.Plan) {
	const dir = "/etc/ssl/etcd/ssl/"
	var pattern []string
	for _, name := range p.Target.Remove {
		m, _ := lab.Machine(name)
		pattern = append(pattern, strings.ReplaceAll(m.Address, ".", "\\."))
	}
	for _, m := range lab.Machines {
		if slices.Contains(p.Target.Remove, m.Name) {
			continue
		}
		var reported string
		for _, w := range p.Warnings {
			if strings.HasPrefix(w, m.Name+" keeps the certificates of leaving hosts") {
				reported = w
			}
		}
		out, err := lab.Exec(ctx, m.Name, "sh", "-c", "for f in "+dir+"*.pem; do case $f in *-key.pem) continue;; esac; "+
			"openssl x509 -noout -ext subjectAltName -in $f 2>/dev/null | grep -qE '("+strings.Join(pattern, "|")+")([^0-9]|$)' && echo $f; done; true")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(string(out)) {
			if !strings.Contains(reported, f+",") && !strings.Contains(reported, f+")") {
				t.Errorf("%s:%s still names a removed master and the plan did not report it (warning: %q)", m.Name, f, reported)
			}
		}
		if lab.EtcdMemberName(m.Name) != "" && slices.Contains(m.Roles, "etcd") {
			for _, gone := range p.Target.Remove {
				if !strings.Contains(reported, dir+"member-"+gone+".pem") {
					t.Errorf("the plan does not report %s's certificates on %s: %q", gone, m.Name, reported)
				}
			}
		}
	}
}

// moveEtcdLeader makes the etcd on the named machine the leader, asking the current one.
func moveEtcdLeader(t *testing.T, lab *testenv.Lab, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ec := labEtcd(t, lab)
	defer ec.Close()
	members, err := ec.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var target uint64
	for _, m := range members.Members {
		if m.Name == lab.EtcdMemberName(name) {
			target = m.ID
		}
	}
	if target == 0 {
		t.Fatalf("no etcd member %s among %v", lab.EtcdMemberName(name), members.Members)
	}
	if err := waitFor(time.Minute, func() bool {
		for _, ep := range lab.EtcdEndpoints() {
			st, err := ec.Status(ctx, ep)
			if err != nil || st.Leader != st.Header.MemberId {
				continue
			}
			if st.Leader == target {
				return true
			}
			lc, err := lab.EtcdClient(ep)
			if err != nil {
				return false
			}
			_, err = lc.MoveLeader(ctx, target)
			lc.Close()
			if err != nil {
				t.Logf("move leader to %s: %v", name, err)
			}
		}
		return false
	}); err != nil {
		t.Fatalf("etcd leadership did not move to %s: %v", name, err)
	}
}
