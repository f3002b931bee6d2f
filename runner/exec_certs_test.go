package runner

import (
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/certs/certstest"
	"github.com/mastershrink/mastershrink/host/hosttest"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

const (
	// certCAPath is the CA that signs the certificates (the apiservers' probes use caPath).
	certCAPath   = "/etc/kubernetes/ssl/ca-signer.pem"
	etcdCertPath = "/etc/kubernetes/ssl/etcd.pem"
	etcdKeyPath  = "/etc/kubernetes/ssl/etcd-key.pem"
)

// certWorld is a cluster CA on m1 (cert, key, ca-config) and etcd's serving certificate,
// naming 192.0.2.3, on the given hosts: the facts and the certs/resign step that takes
// 192.0.2.3 out of it.
func certWorld(t *testing.T, p *plan.Plan, hosts map[string]*hosttest.Host, on ...string) plan.Step {
	t.Helper()
	ca := certstest.NewCA(t, "kubernetes", "ecdsa", 256)
	cert, key := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"127.0.0.1", "192.0.2.1", "192.0.2.2", "192.0.2.3"}, "ecdsa", 256)
	m1 := hosts["m1"]
	m1.SetFile(certCAPath, string(ca.CertPEM))
	m1.SetFile("/etc/kubernetes/ssl/ca-key.pem", string(ca.KeyPEM))
	m1.SetFile("/etc/kubernetes/ssl/ca-config.json", string(ca.ConfigJSON))
	p.Facts.CA = plan.CA{Host: "m1", CertPath: certCAPath, KeyPath: "/etc/kubernetes/ssl/ca-key.pem", ConfigPath: "/etc/kubernetes/ssl/ca-config.json", KeyPresent: true, ConfigPresent: true}
	for _, name := range on {
		hosts[name].SetFile(etcdCertPath, string(cert))
		hosts[name].SetFile(etcdKeyPath, string(key))
	}
	st := mkStep(plan.KindCertResign, on[0], plan.CertResignParams{Path: etcdCertPath, KeyPath: etcdKeyPath, Hosts: on,
		Remove: []string{"192.0.2.3"}, UsedBy: []string{"etcd.service --cert-file"}})
	st.ID = plan.KindCertResign + "/etcd"
	p.Steps = append(p.Steps, st)
	return st
}

// certServer serves, on loopback, the certificate and key files its host holds now (read at
// every handshake, as etcd does), or the pair it was frozen on (a process that did not reload).
type certServer struct {
	h      *hosttest.Host
	port   int
	frozen atomic.Pointer[tls.Certificate]
}

func serveCert(t *testing.T, h *hosttest.Host) *certServer {
	t.Helper()
	s := &certServer{h: h}
	addr := certstest.ServeTLS(t, func() (*tls.Certificate, error) {
		if c := s.frozen.Load(); c != nil {
			return c, nil
		}
		return s.pair()
	})
	s.port = addr.(*net.TCPAddr).Port
	return s
}

func (s *certServer) pair() (*tls.Certificate, error) {
	c, _ := s.h.File(etcdCertPath)
	k, _ := s.h.File(etcdKeyPath)
	pair, err := tls.X509KeyPair([]byte(c), []byte(k))
	return &pair, err
}

// freeze makes it serve what the files hold now, whatever they hold later.
func (s *certServer) freeze(t *testing.T) {
	t.Helper()
	pair, err := s.pair()
	if err != nil {
		t.Fatal(err)
	}
	s.frozen.Store(pair)
}

// certFixture is m1 and m2 (on loopback), each with an etcd serving the certificate it holds.
func certFixture(t *testing.T) (*run, *fakeCluster, plan.Step, map[string]*certServer) {
	fc, p := newFakes(nil, nil, plan.Host{Name: "m1", Address: "127.0.0.1"}, plan.Host{Name: "m2", Address: "127.0.0.1"})
	servers := map[string]*certServer{}
	for i := range p.Facts.Hosts {
		fh := &p.Facts.Hosts[i]
		servers[fh.Name] = serveCert(t, fc.hosts[fh.Name])
		fh.Paths = inventory.Paths{EtcdClientPort: servers[fh.Name].port}
		fc.hosts[fh.Name].SetUnit("etcd.service", unitRunning)
	}
	st := certWorld(t, p, fc.hosts, "m1", "m2")
	return hostRun(fc, p), fc, st, servers
}

func sans(t *testing.T, pemText string) []string {
	t.Helper()
	infos, _, err := certs.ParsePEM([]byte(pemText), "cert")
	if err != nil {
		t.Fatal(err)
	}
	return infos[0].IPAddresses
}

// certs/resign: not done while the certificate names a leaving address; re-signed with the
// same key, installed on every host and served there; done after.
func TestExecutorCertResign(t *testing.T) {
	r, fc, st, _ := certFixture(t)
	m1, m2 := fc.hosts["m1"], fc.hosts["m2"]
	oldCert, _ := m1.File(etcdCertPath)
	key, _ := m1.File(etcdKeyPath)
	if doneOf(t, r, st) {
		t.Fatal("done while the certificate names 192.0.2.3")
	}
	out, err := apply(t, r, st)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := m1.File(etcdCertPath)
	c2, _ := m2.File(etcdCertPath)
	if c1 == oldCert || c1 != c2 || slices.Contains(sans(t, c1), "192.0.2.3") || !slices.Contains(sans(t, c1), "192.0.2.2") {
		t.Errorf("m1's certificate %v, m2's the same: %v", sans(t, c1), c1 == c2)
	}
	for _, h := range []*hosttest.Host{m1, m2} {
		if k, _ := h.File(etcdKeyPath); k != key {
			t.Errorf("%s: the key changed", h.Name())
		}
	}
	if n := len(out.changes); n != 2 || out.changes[0].Action != "install-certificate" || !strings.Contains(out.note, "serial") {
		t.Errorf("outcome %+v", out)
	}
	if len(out.backups) == 0 {
		t.Error("no backups of the old certificate")
	}
	if !doneOf(t, r, st) {
		t.Error("not done after it ran")
	}

	// An earlier run installed on m1 only: m2 gets m1's certificate, not another one.
	m2.SetFile(etcdCertPath, oldCert)
	if doneOf(t, r, st) {
		t.Fatal("done with m2 on the old certificate")
	}
	out, err = apply(t, r, st)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m2.File(etcdCertPath); got != c1 {
		t.Error("the resumed step signed a second certificate instead of installing m1's")
	}
	if len(out.changes) != 1 || out.changes[0].Host != "m2" {
		t.Errorf("changes of the resumed step %+v", out.changes)
	}
}

// certs/resign refused: no CA key (nothing written); a served certificate other than the
// file is not done; an etcd that does not pick the new files up is restarted only once the
// quorum is proven, and here it cannot be (no etcd to ask): refused, saying so.
func TestExecutorCertResignFailures(t *testing.T) {
	t.Parallel() // mostly waits: for a reload that does not come, or on its own etcd
	r, fc, st, servers := certFixture(t)
	m1, m2 := fc.hosts["m1"], fc.hosts["m2"]
	oldCert, _ := m1.File(etcdCertPath)
	caKey, _ := m1.File("/etc/kubernetes/ssl/ca-key.pem")
	m1.Remove("/etc/kubernetes/ssl/ca-key.pem")
	if _, err := apply(t, r, st); err == nil || !strings.Contains(err.Error(), "CA key") {
		t.Errorf("no CA key: %v", err)
	}
	for _, h := range fc.hosts {
		if got, _ := h.File(etcdCertPath); got != oldCert {
			t.Errorf("%s: a failed re-sign wrote the certificate", h.Name())
		}
	}
	m1.SetFile("/etc/kubernetes/ssl/ca-key.pem", caKey)

	servers["m2"].freeze(t)
	_, err := apply(t, r, st)
	if !errors.Is(err, certs.ErrRestartRefused) || !strings.Contains(err.Error(), "no etcd") || !strings.Contains(err.Error(), "m2") {
		t.Errorf("etcd on m2 not reloading, quorum unknown: %v", err)
	}
	if slices.Contains(m2.Log(), "restart etcd.service") {
		t.Errorf("etcd restarted without its quorum proven: %v", m2.Log())
	}
	if got, _ := m2.File(etcdCertPath); got == oldCert {
		t.Error("the new certificate is not on m2 (the refusal is about the restart only)")
	}
	if doneOf(t, r, st) {
		t.Error("done while m2 serves the old certificate")
	}
}

// A copy on another host that is no longer the certificate the plan saw (re-issued since)
// stops the step before anything is written anywhere.
func TestExecutorCertResignCopyChanged(t *testing.T) {
	r, fc, st, _ := certFixture(t)
	m1, m2 := fc.hosts["m1"], fc.hosts["m2"]
	oldCert, _ := m1.File(etcdCertPath)
	infos, _, err := certs.ParsePEM([]byte(oldCert), etcdCertPath)
	if err != nil {
		t.Fatal(err)
	}
	st.Params["serial"] = infos[0].Serial
	r.p.Steps[len(r.p.Steps)-1] = st
	ca := certstest.NewCA(t, "other", "ecdsa", 256)
	other, otherKey := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"192.0.2.2", "192.0.2.3"}, "ecdsa", 256)
	m2.SetFile(etcdCertPath, string(other))
	m2.SetFile(etcdKeyPath, string(otherKey))
	if _, err := apply(t, r, st); !errors.Is(err, ErrCertChanged) || !strings.Contains(err.Error(), "m2:") {
		t.Fatalf("a copy re-issued since the plan: %v", err)
	}
	if got, _ := m1.File(etcdCertPath); got != oldCert {
		t.Error("m1's certificate was rewritten before m2's copy was proven")
	}
	if got, _ := m2.File(etcdCertPath); got != string(other) {
		t.Error("m2's re-issued certificate was overwritten")
	}
}
