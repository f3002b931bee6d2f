package plan

import (
	"slices"
	"strings"
	"testing"
)

// kubesprayFacts turns seed 003's facts into kubespray's etcd certificates: etcd serves
// member-m1.pem, every etcd host keeps a copy of every host's (member-m2.pem of leaving m2,
// node-w1.pem also on w1 itself), all signed by etcd's own CA.
func kubesprayFacts(t *testing.T) Facts {
	f := seed003.facts(t)
	var tmpl Cert
	var rest []Cert
	for _, c := range f.Certs {
		if c.Info.Subject.CommonName == "etcd" && tmpl.Path == "" {
			tmpl = c
		}
		if c.Info.Subject.CommonName != "etcd" {
			rest = append(rest, c)
		}
	}
	if tmpl.Path == "" {
		t.Fatal("seed003 facts have no etcd certificate")
	}
	// make-ssl-etcd.sh names every etcd host by its inventory name too.
	tmpl.Info.DNSNames = []string{"localhost", "m1", "m2", "m3"}
	const dir = "/etc/ssl/etcd/ssl/"
	mk := func(host, name, serial string, usedBy ...string) Cert {
		c := tmpl
		c.Host, c.Path, c.KeyPath, c.UsedBy, c.SignedBy = host, dir+name+".pem", dir+name+"-key.pem", usedBy, "etcd"
		c.Info.Serial = serial
		return c
	}
	f.Certs = append(rest,
		mk("m1", "member-m1", "a1", "etcd --cert-file", "etcd --peer-cert-file"),
		mk("m1", "member-m2", "b2"),
		mk("m1", "admin-m2", "b3"),
		mk("m1", "node-w1", "c1"),
		mk("w1", "node-w1", "c1"),
		mk("m2", "member-m2", "b2", "etcd --cert-file"),
	)
	f.EtcdCA = &CA{Host: "m1", CertPath: dir + "ca.pem", KeyPath: dir + "ca-key.pem", KeyPresent: true}
	return f
}

// Certificates etcd's own CA signed are re-signed with it, one step per (serial, path) on
// every staying host that holds it, copies no unit names included; a leaving host's own
// certificates left on a staying host are reported, not re-signed.
func TestKubesprayCertificates(t *testing.T) {
	p := Build(kubesprayFacts(t), Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
	if len(p.Refusals) > 0 {
		t.Fatalf("refused: %+v", p.Refusals)
	}
	got := map[string]CertResignParams{}
	for _, s := range p.Steps {
		if s.Kind != KindCertResign {
			continue
		}
		prm, err := DecodeParams[CertResignParams](s)
		if err != nil {
			t.Fatal(err)
		}
		got[prm.Path] = prm
	}
	for path, hosts := range map[string][]string{"/etc/ssl/etcd/ssl/member-m1.pem": {"m1"}, "/etc/ssl/etcd/ssl/node-w1.pem": {"m1", "w1"}} {
		prm, ok := got[path]
		if !ok {
			t.Errorf("no re-sign of %s; steps %v", path, got)
			continue
		}
		if !slices.Contains(prm.Remove, "m2") || !slices.Contains(prm.Remove, "m3") || slices.Contains(prm.Remove, "m1") || slices.Contains(prm.Remove, "localhost") {
			t.Errorf("%s: removes %v, want the leaving hosts' addresses and names only", path, prm.Remove)
		}
		if !slices.Equal(prm.Hosts, hosts) || prm.CAHost != "m1" || prm.CACert != "/etc/ssl/etcd/ssl/ca.pem" || prm.CAKey != "/etc/ssl/etcd/ssl/ca-key.pem" {
			t.Errorf("%s: hosts %v, CA %s:%s key %s; want %v and etcd's CA on m1", path, prm.Hosts, prm.CAHost, prm.CACert, prm.CAKey, hosts)
		}
	}
	for _, path := range []string{"/etc/ssl/etcd/ssl/member-m2.pem", "/etc/ssl/etcd/ssl/admin-m2.pem"} {
		if _, ok := got[path]; ok {
			t.Errorf("%s, leaving m2's own certificate, is re-signed", path)
		}
	}
	var stale []string
	for _, w := range p.Warnings {
		if strings.Contains(w, "certificates of leaving hosts") {
			stale = append(stale, w)
		}
	}
	if len(stale) != 1 || !strings.HasPrefix(stale[0], "m1 ") || !strings.Contains(stale[0], "/etc/ssl/etcd/ssl/member-m2.pem") ||
		!strings.Contains(stale[0], "/etc/ssl/etcd/ssl/admin-m2-key.pem") {
		t.Errorf("warnings %q, want one for m1 naming member-m2.pem and admin-m2-key.pem", p.Warnings)
	}
	// The cluster CA's certificates keep their plan: no CA params.
	for path, prm := range got {
		if !strings.HasPrefix(path, "/etc/ssl/etcd/") && (prm.CACert != "" || prm.CAHost != "") {
			t.Errorf("%s, signed by the cluster CA, names CA %s:%s", path, prm.CAHost, prm.CACert)
		}
	}
}

// Without etcd's CA key on a staying host, certificates it signed cannot be re-signed: the
// plan refuses, naming the key and where kubespray leaves it, or the leaving hosts that hold it.
func TestKubesprayEtcdCAKeyRefusals(t *testing.T) {
	cases := []struct {
		name string
		edit func(f *Facts)
		code string
	}{
		{"missing", func(f *Facts) { f.EtcdCA.KeyPresent = false }, "etcd-ca-key-missing"},
		{"only on leaving", func(f *Facts) {
			f.EtcdCA.KeyPresent = false
			f.EtcdCA.KeyOnLeaving = []string{"m2:/etc/ssl/etcd/ssl/ca-key.pem"}
		}, "etcd-ca-key-only-on-leaving"},
		{"no etcd CA", func(f *Facts) { f.EtcdCA = nil }, "etcd-ca-missing"},
		{"not resignable", func(f *Facts) {
			for i := range f.Certs {
				if f.Certs[i].Path == "/etc/ssl/etcd/ssl/member-m1.pem" {
					f.Certs[i].ResignProblem = "the default profile lacks server auth"
				}
			}
		}, "cert-not-resignable"},
	}
	for _, tc := range cases {
		f := kubesprayFacts(t)
		tc.edit(&f)
		p := Build(f, Target{Remove: []string{"m2", "m3"}}, "test", observedAt)
		if !slices.Contains(refusalCodes(p), tc.code) || len(p.Steps) != 0 {
			t.Errorf("%s: refusals %v, want %s and no step", tc.name, refusalCodes(p), tc.code)
		}
	}
}

func TestPerHostOwner(t *testing.T) {
	for p, want := range map[string]string{
		"/etc/ssl/etcd/ssl/member-node1.pem":    "node1",
		"/etc/ssl/etcd/ssl/admin-m2.pem":        "m2",
		"/etc/ssl/etcd/ssl/node-w1.example.pem": "w1.example",
		"/etc/ssl/etcd/ssl/node-w1-key.pem":     "",
		"/etc/ssl/etcd/ssl/ca.pem":              "",
		"/etc/kubernetes/ssl/admin.pem":         "",
	} {
		if got := perHostOwner(p); got != want {
			t.Errorf("perHostOwner(%s) = %q, want %q", p, got, want)
		}
	}
}
