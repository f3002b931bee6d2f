package main

import (
	"context"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/testenv"
)

// stepByID returns the plan's step with that ID.
func stepByID(t *testing.T, p *plan.Plan, id string) plan.Step {
	t.Helper()
	for _, s := range p.Steps {
		if s.ID == id {
			return s
		}
	}
	var ids []string
	for _, s := range p.Steps {
		ids = append(ids, s.ID)
	}
	t.Fatalf("no step %s in the plan; steps: %s", id, strings.Join(ids, ", "))
	return plan.Step{}
}

// fileAfter returns what a step writes into path, failing when it does not rewrite it.
func fileAfter(t *testing.T, s plan.Step, path string) string {
	t.Helper()
	for _, f := range s.Files {
		if f.Path == path {
			return f.After
		}
	}
	t.Fatalf("step %s does not rewrite %s", s.ID, path)
	return ""
}

// TestLabEnvFileLayout shrinks 3 masters to 1 on the env-file guides' layout, the one that
// breaks the seed 003 lab's assumptions: etcd's flags and certificates only as ETCD_*
// variables of /opt/etcd/cfg/etcd.conf (its ExecStart is the bare binary), the apiserver's
// flags in one KUBE_APISERVER_OPTS string, certificates in /opt/etcd/ssl and
// /opt/kubernetes/ssl. The plan must rewrite the values where they live and re-sign the
// certificates it only knows through ETCD_*_FILE; apply must keep every request and key.
func TestLabEnvFileLayout(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "mslayout", Layout: "envfile"})
	prepare(t, lab)
	m1, _ := lab.Machine("m1")

	path := filepath.Join(t.TempDir(), "plan.json")
	out, p := planLab(t, lab, path, "--remove", "m2,m3")

	t.Run("plan", func(t *testing.T) {
		// --etcd-servers inside KUBE_APISERVER_OPTS, on its own continuation line.
		conf := fileAfter(t, stepByID(t, p, "apiserver/update/m1"), "/opt/kubernetes/cfg/kube-apiserver.conf")
		if !strings.Contains(conf, "\n--etcd-servers=https://"+m1.Address+":2379 \\\n") || strings.Contains(conf, "10.88.0.12") {
			t.Errorf("kube-apiserver.conf after the plan:\n%s", conf)
		}
		if !strings.HasPrefix(conf, "KUBE_APISERVER_OPTS=\"") {
			t.Errorf("kube-apiserver.conf lost its variable:\n%s", conf)
		}
		// ETCD_INITIAL_CLUSTER in etcd.conf, not a flag the unit does not have.
		ec := fileAfter(t, stepByID(t, p, "etcd/initial-cluster/m1"), "/opt/etcd/cfg/etcd.conf")
		for _, want := range []string{
			"\nETCD_INITIAL_CLUSTER=\"etcd-" + m1.Address + "=https://" + m1.Address + ":2380\"\n",
			"\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
		} {
			if !strings.Contains(ec, want) {
				t.Errorf("etcd.conf after the plan lacks %q:\n%s", want, ec)
			}
		}
		// The certificate etcd names only as ETCD_CERT_FILE is re-signed, with its users.
		var resigned []string
		for _, s := range p.Steps {
			if s.Kind != plan.KindCertResign {
				continue
			}
			resigned = append(resigned, s.Params["path"])
			if s.Params["path"] == "/opt/etcd/ssl/server.pem" {
				for _, u := range []string{"etcd --cert-file", "etcd --peer-cert-file", "kube-apiserver --etcd-certfile"} {
					if !strings.Contains(s.Params["used_by"], u) {
						t.Errorf("server.pem used by %q, lacks %s", s.Params["used_by"], u)
					}
				}
			}
		}
		sort.Strings(resigned)
		if strings.Join(resigned, ",") != "/opt/etcd/ssl/server.pem,/opt/kubernetes/ssl/kubernetes.pem" {
			t.Errorf("re-signed %v, want etcd's server.pem and the apiserver's kubernetes.pem", resigned)
		}
		for _, w := range p.Warnings {
			if strings.Contains(w, "could not be read") {
				t.Errorf("warning about a certificate the lab made readable: %s", w)
			}
		}
		// The human plan shows the diff of the files where the values live.
		for _, f := range []string{"/opt/kubernetes/cfg/kube-apiserver.conf", "/opt/etcd/cfg/etcd.conf"} {
			if !strings.Contains(out, "+++ b"+f) {
				t.Errorf("plan output has no diff of %s", f)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("apply", func(t *testing.T) {
		applyProbed(t, lab, path)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if members := m1EtcdAfterShrink(ctx, t, lab); !slices.Equal(members, []string{"etcd-" + m1.Address}) {
			t.Errorf("etcd members %v, want only etcd-%s", members, m1.Address)
		}
		m1CertsNameOnlyM1(ctx, t, lab, "/opt/etcd/ssl/server.pem", "/opt/kubernetes/ssl/kubernetes.pem")
		for file, want := range map[string]string{
			"/opt/etcd/cfg/etcd.conf":                 "ETCD_INITIAL_CLUSTER=\"etcd-" + m1.Address + "=https://" + m1.Address + ":2380\"",
			"/opt/kubernetes/cfg/kube-apiserver.conf": "--etcd-servers=https://" + m1.Address + ":2379 \\",
		} {
			out, err := lab.Exec(ctx, "m1", "cat", file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), want) {
				t.Errorf("m1:%s lacks %q:\n%s", file, want, out)
			}
		}
	})
}

// TestLabHAProxyLayout shrinks 3 masters to 1 on the hard way's layout with Debian's haproxy
// on every node instead of nginx: the inventory names an nginx config no node has, so
// mastershrink must find haproxy there, rewrite /etc/haproxy/haproxy.cfg (haproxy -c,
// systemctl reload, the new worker proven running, old workers cut on the workers), take each
// survivor's apiserver out of every haproxy for its restart, and stop haproxy on the leaving
// masters. --lb-mode remove: no haproxy config keeps a line naming a removed master.
func TestLabHAProxyLayout(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "mshaproxy", Layout: "hardway", Proxy: testenv.ProxyHAProxy})
	prepare(t, lab)
	m1, _ := lab.Machine("m1")
	path := filepath.Join(t.TempDir(), "plan.json")
	out, p := planLab(t, lab, path, "--remove", "m2,m3", "--lb-mode", "remove")
	for _, node := range []string{"m1", "w1", "w2"} {
		s := stepByID(t, p, "lb/update/"+node)
		if after := fileAfter(t, s, "/etc/haproxy/haproxy.cfg"); strings.Contains(after, "10.88.0.12:") || !strings.Contains(after, "server m1 "+m1.Address+":6443 check\n") {
			t.Errorf("%s: haproxy.cfg after the plan:\n%s", node, after)
		}
		if !strings.Contains(s.Summary, "haproxy -c") {
			t.Errorf("%s: summary %q", node, s.Summary)
		}
	}
	if !strings.Contains(out, "+++ b/etc/haproxy/haproxy.cfg") || !strings.Contains(out, "stop and disable haproxy on the leaving host") {
		t.Errorf("plan output lacks the haproxy diff or the leaving haproxy's stop")
	}
	if t.Failed() {
		t.Fatalf("plan:\n%s", out)
	}

	applyProbed(t, lab, path)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if members := m1EtcdAfterShrink(ctx, t, lab); !slices.Equal(members, []string{"m1"}) {
		t.Errorf("etcd members %v, want only m1", members)
	}
	// No haproxy config (backups aside) names a removed master, on any host that stays; the
	// leaving ones have theirs stopped. Every staying haproxy runs and accepts its config.
	grep := "grep -rlsIE --exclude='*.bak-*' -e '10\\.88\\.0\\.1[23]([^0-9]|$)' /etc/haproxy || true"
	for h, want := range map[string]string{"m1": "active", "w1": "active", "w2": "active", "m2": "inactive", "m3": "inactive"} {
		out, _ := lab.Exec(ctx, h, "systemctl", "is-active", "haproxy")
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s: haproxy %s, want %s", h, got, want)
		}
		if want != "active" {
			continue
		}
		out, err := lab.Exec(ctx, h, "sh", "-c", grep+"; haproxy -c -f /etc/haproxy/haproxy.cfg >/dev/null")
		if err != nil {
			t.Errorf("%s: haproxy -c: %v\n%s", h, err, out)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("%s: haproxy config still naming a removed master:\n%s", h, s)
		}
	}
}

// TestLabHAProxyMixedFleet shrinks 3 masters to 1 on seed 003's layout where one worker, w2,
// has moved from nginx to Debian's haproxy (its nginx config gone, as on a node rebuilt from
// another guide): each node's proxy is edited as what it is, nginx's lines marked down and
// haproxy's servers disabled, with no failed request.
func TestLabHAProxyMixedFleet(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Name: "msmixed"})
	prepare(t, lab)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lay, _ := testenv.LookupLayout("seed003")
	conf := "global\n\tdaemon\n\ndefaults\n\tmode tcp\n\ttimeout connect 1s\n\ttimeout client 3m\n\ttimeout server 3m\n\n" +
		"frontend kube-apiserver\n\tbind *:8443\n\tdefault_backend kube-apiserver\n\nbackend kube-apiserver\n\tbalance roundrobin\n" +
		"\tserver m1 10.88.0.11:6443 check\n\tserver m2 10.88.0.12:6443 check\n\tserver m3 10.88.0.13:6443 check\n"
	swap := "systemctl disable --now " + lay.Paths.NginxUnit + " && mv " + lay.Paths.NginxConfig + " " + lay.Paths.NginxConfig + ".gone && " +
		"printf '" + strings.ReplaceAll(conf, "\n", `\n`) + "' > /etc/haproxy/haproxy.cfg && systemctl enable --now haproxy"
	if out, err := lab.Exec(ctx, "w2", "sh", "-c", swap); err != nil {
		t.Fatalf("haproxy on w2: %v\n%s", err, out)
	}
	w2, _ := lab.Machine("w2")
	hc, err := lab.HTTPClient(testenv.DialerIn(w2.NetNS))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := hc.Get("https://" + lay.Paths.NginxListen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("w2's haproxy does not reach the apiservers: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	path := filepath.Join(t.TempDir(), "plan.json")
	_, p := planLab(t, lab, path, "--remove", "m2,m3")
	if s := fileAfter(t, stepByID(t, p, "lb/update/w2"), "/etc/haproxy/haproxy.cfg"); !strings.Contains(s, "server m2 10.88.0.12:6443 check disabled\n") {
		t.Errorf("w2's haproxy.cfg after the plan:\n%s", s)
	}
	if s := fileAfter(t, stepByID(t, p, "lb/update/w1"), lay.Paths.NginxConfig); !strings.Contains(s, "10.88.0.12:6443 max_fails=3 fail_timeout=30s down;") {
		t.Errorf("w1's nginx config after the plan:\n%s", s)
	}

	applyProbed(t, lab, path)
	if got, _ := lab.Exec(ctx, "w2", "sh", "-c", "grep -c 'disabled$' /etc/haproxy/haproxy.cfg; systemctl is-active haproxy"); string(got) != "2\nactive\n" {
		t.Errorf("w2 after apply: %q, want m2 and m3 disabled and haproxy active", got)
	}
	if members := m1EtcdAfterShrink(ctx, t, lab); len(members) != 1 {
		t.Errorf("etcd members %v, want only m1", members)
	}
}
