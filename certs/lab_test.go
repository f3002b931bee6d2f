package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestLabResignAndInstall re-signs m1's etcd and apiserver certificates without m2's and m3's
// addresses, with the cluster CA read from m1, installs them on m1, and checks that both
// components serve them without a restart (etcd reads its files on every handshake,
// kube-apiserver watches --tls-cert-file) and that every client still connects.
func TestLabResignAndInstall(t *testing.T) {
	testenv.RequireLab(t)
	lab := testenv.StartLab(t, testenv.Options{Masters: 3, Workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inv, err := inventory.Load(lab.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	hostM1, _ := inv.Host("m1")
	p := hostM1.Paths
	m1, _ := lab.Machine("m1")
	var removed []string
	for _, name := range []string{"m2", "m3"} {
		m, _ := lab.Machine(name)
		removed = append(removed, m.Address)
	}
	h, err := host.Connect(ctx, inv, "m1", lab.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	ca, err := certs.LoadCAFrom(ctx, h, p.CACert, p.CAKey, p.CAConfig)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Config == nil {
		t.Fatalf("ca-config %s on m1 not read", p.CAConfig)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	clientCert, clientKey := readFile(t, lab.EtcdCert), readFile(t, lab.EtcdKey)

	type target struct {
		name, cert, key, unit, probe string
		clientCert, clientKey        []byte
		reloadWait                   time.Duration
	}
	targets := []target{
		// etcd serves (and presents to peers and as the apiserver's etcd client) etcd.pem.
		{"etcd", p.EtcdCert, p.EtcdKey, p.EtcdUnit, net.JoinHostPort(m1.Address, "2379"), clientCert, clientKey, 30 * time.Second},
		{"kube-apiserver", "/etc/kubernetes/ssl/kubernetes.pem", "/etc/kubernetes/ssl/kubernetes-key.pem", p.APIServerUnit,
			net.JoinHostPort(m1.Address, "6443"), nil, nil, 2 * time.Minute},
	}
	installedAt := time.Now()
	for _, tg := range targets {
		oldCert, oldKey := readHost(t, ctx, h, tg.cert), readHost(t, ctx, h, tg.key)
		certStat, keyStat := statHost(t, ctx, h, tg.cert), statHost(t, ctx, h, tg.key)
		pidBefore := mainPID(t, ctx, lab, tg.unit)
		infos, parsed, err := certs.ParsePEM(oldCert, "m1:"+tg.cert)
		if err != nil {
			t.Fatal(err)
		}
		if got := certs.Matching(infos[0], removed); len(got) != len(removed) {
			t.Fatalf("%s: the lab certificate names %v of the removed addresses %v", tg.name, got, removed)
		}
		res, err := certs.Resign(parsed[0], ca, certs.ResignOptions{RemoveHosts: removed})
		if err != nil {
			t.Fatalf("re-sign %s: %v", tg.name, err)
		}
		plan := certs.InstallPlan{
			CertPath: tg.cert, KeyPath: tg.key, CertPEM: res.CertPEM, KeyPEM: res.KeyPEM,
			Probe: tg.probe, ClientCertPEM: tg.clientCert, ClientKeyPEM: tg.clientKey,
			Unit: tg.unit, ReloadWait: tg.reloadWait, Timeout: 4 * time.Minute,
		}
		start := time.Now()
		ir, err := certs.Install(ctx, h, plan)
		if err != nil {
			t.Fatalf("install %s on m1: %v", tg.name, err)
		}
		t.Logf("%s: new certificate served %s after the install began; restarted: %v; SANs %v -> %v",
			tg.name, time.Since(start).Round(100*time.Millisecond), ir.Restarted, res.Hosts.Before, res.Hosts.After)
		if ir.Restarted {
			t.Errorf("%s was restarted: it did not pick the new certificate up by itself within %s", tg.name, tg.reloadWait)
		}
		if pid := mainPID(t, ctx, lab, tg.unit); pid != pidBefore {
			t.Errorf("%s: MainPID %s -> %s", tg.name, pidBefore, pid)
		}
		if ok, err := certs.Installed(ctx, h, plan); !ok || err != nil {
			t.Errorf("Installed(%s) = %v, %v after Install", tg.name, ok, err)
		}

		// A TLS handshake from the lab network, verified against the cluster CA: the served
		// certificate is the new one, valid for m1's address, without the removed ones.
		served := verifiedServed(t, ctx, lab, tg.probe, m1.Address, pool, tg.clientCert, tg.clientKey)
		if !served.Equal(mustParse(t, res.CertPEM)) {
			t.Errorf("%s serves serial %s, want the new certificate", tg.name, served.SerialNumber)
		}
		for _, ip := range served.IPAddresses {
			if slices.Contains(removed, ip.String()) {
				t.Errorf("%s still serves a certificate naming %s", tg.name, ip)
			}
		}

		// Backups: the old bytes, with the old owner and mode; the new files keep them too.
		if len(ir.Backups) != 2 {
			t.Fatalf("%s: backups %v, want the key's and the certificate's", tg.name, ir.Backups)
		}
		for _, b := range []struct {
			path, backup string
			old          []byte
			st           host.FileInfo
		}{{tg.key, ir.Backups[0], oldKey, keyStat}, {tg.cert, ir.Backups[1], oldCert, certStat}} {
			if !strings.HasPrefix(b.backup, b.path+".") {
				t.Errorf("backup %s is not next to %s", b.backup, b.path)
			}
			bst := statHost(t, ctx, h, b.backup)
			if bst.Mode != b.st.Mode || bst.UID != b.st.UID || bst.GID != b.st.GID {
				t.Errorf("backup %s: mode %v uid %d gid %d, original %v %d %d", b.backup, bst.Mode, bst.UID, bst.GID, b.st.Mode, b.st.UID, b.st.GID)
			}
			if got := readHost(t, ctx, h, b.backup); string(got) != string(b.old) {
				t.Errorf("backup %s does not hold the old content", b.backup)
			}
			if nst := statHost(t, ctx, h, b.path); nst.Mode != b.st.Mode || nst.UID != b.st.UID || nst.GID != b.st.GID {
				t.Errorf("%s after the install: mode %v uid %d gid %d, was %v %d %d", b.path, nst.Mode, nst.UID, nst.GID, b.st.Mode, b.st.UID, b.st.GID)
			}
		}
		if keyStat.Mode.Perm() != 0o600 {
			t.Errorf("%s had mode %v in the lab, the test expects 0600", tg.key, keyStat.Mode)
		}
	}

	// Every client still connects. etcd, with the lab's client TLS, every member healthy
	// (m2 and m3 reach m1 as peers through its new certificate).
	kv := etcdClient(t, lab, m1.Address)
	for _, ep := range lab.EtcdEndpoints() {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := kv.Status(sctx, ep)
		scancel()
		if err != nil || len(st.Errors) > 0 || st.Leader == 0 {
			t.Errorf("etcd %s after the install: %+v, %v", ep, st, err)
		}
	}
	if _, err := kv.Put(ctx, "/certs-lab/after", "x"); err != nil {
		t.Errorf("write through m1's etcd after the install: %v", err)
	}

	// kubectl on the worker through its proxy, and straight at m1 (verifying the new
	// certificate with the kubeconfig's CA).
	for _, args := range [][]string{
		{"kubectl", "get", "--raw", "/readyz"},
		{"kubectl", "--server", "https://" + m1.Address + ":6443", "get", "--raw", "/readyz"},
		{"kubectl", "--server", "https://" + m1.Address + ":6443", "get", "nodes", "-o", "name"},
	} {
		if out, err := lab.Exec(ctx, "w1", args...); err != nil {
			t.Errorf("on w1: %v", err)
		} else {
			t.Logf("w1: %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
		}
	}
	// client-go through the worker's proxy.
	cfg, err := lab.WorkerRESTConfig("w1")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		if _, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("client-go through w1's proxy: %v", err)
		}
	}
	// The controller-manager stays healthy: active, /healthz ok, and its leader lease
	// renewed after the install.
	if out, err := lab.Exec(ctx, "m1", "systemctl", "is-active", p.ControllerManagerUnit); err != nil {
		t.Errorf("controller-manager on m1: %v %s", err, out)
	}
	if out, err := lab.Exec(ctx, "m1", "curl", "-sk", "https://127.0.0.1:10257/healthz"); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("controller-manager /healthz on m1: %q %v", out, err)
	}
	direct, err := lab.RESTConfig("https://" + m1.Address + ":6443")
	if err != nil {
		t.Fatal(err)
	}
	dcs, err := kubernetes.NewForConfig(direct)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		lease, err := dcs.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
		if err == nil && lease.Spec.RenewTime != nil && lease.Spec.RenewTime.After(installedAt.Add(time.Second)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller-manager lease not renewed since the install: %v", err)
		}
		time.Sleep(time.Second)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readHost(t *testing.T, ctx context.Context, h host.Host, p string) []byte {
	t.Helper()
	b, err := h.ReadFile(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func statHost(t *testing.T, ctx context.Context, h host.Host, p string) host.FileInfo {
	t.Helper()
	st, err := h.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Mode.IsRegular() && st.Mode&fs.ModeType != 0 {
		t.Fatalf("%s is not a regular file: %v", p, st.Mode)
	}
	return st
}

func mainPID(t *testing.T, ctx context.Context, lab *testenv.Lab, unit string) string {
	t.Helper()
	out, err := lab.Exec(ctx, "m1", "systemctl", "show", "--property=MainPID", "--value", unit)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(out))
	if pid == "" || pid == "0" {
		t.Fatalf("%s on m1 is not running", unit)
	}
	return pid
}

func mustParse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	_, parsed, err := certs.ParsePEM(certPEM, "new")
	if err != nil {
		t.Fatal(err)
	}
	return parsed[0]
}

// verifiedServed does a verifying TLS handshake from the lab network as a client of m1 would.
func verifiedServed(t *testing.T, ctx context.Context, lab *testenv.Lab, addr, serverName string, roots *x509.CertPool, cert, key []byte) *x509.Certificate {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if len(cert) > 0 {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := lab.DialContext(dctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(dctx); err != nil {
		t.Fatalf("verified TLS handshake with %s as %s: %v", addr, serverName, err)
	}
	return c.ConnectionState().PeerCertificates[0]
}

func etcdClient(t *testing.T, lab *testenv.Lab, m1 string) *clientv3.Client {
	t.Helper()
	cli, err := lab.EtcdClient("https://" + m1 + ":2379")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
