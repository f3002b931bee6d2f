package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/certs/certstest"
	"github.com/mastershrink/mastershrink/host"
)

// dirHost is this machine (host.NewLocal: its files, its shell, loopback) with a fake
// systemd whose restart the test supplies.
type dirHost struct {
	host.Host
	restart func() error
}

func newDirHost(restart func() error) dirHost { return dirHost{host.NewLocal("local"), restart} }

func (h dirHost) Systemd(context.Context) (host.Systemd, error) { return fakeSystemd{h.restart}, nil }

type fakeSystemd struct{ restart func() error }

func (fakeSystemd) Status(context.Context, string) (host.UnitStatus, error) {
	return host.UnitStatus{}, nil
}
func (fakeSystemd) Start(context.Context, string) error     { return nil }
func (fakeSystemd) Stop(context.Context, string) error      { return nil }
func (s fakeSystemd) Restart(context.Context, string) error { return s.restart() }
func (fakeSystemd) Reload(context.Context, string) error    { return nil }
func (fakeSystemd) Enable(context.Context, string) error    { return nil }
func (fakeSystemd) Disable(context.Context, string) error   { return nil }
func (fakeSystemd) DaemonReload(context.Context) error      { return nil }
func (fakeSystemd) Close() error                            { return nil }

// tlsServer serves certPath/keyPath on loopback; with reload it rereads them on every
// handshake (as etcd does), without it only when restarted.
type tlsServer struct {
	addr              string
	certPath, keyPath string
	mu                sync.Mutex
	cached            *tls.Certificate
	restarts          int
}

func startTLS(t *testing.T, certPath, keyPath string, reload bool) *tlsServer {
	t.Helper()
	s := &tlsServer{certPath: certPath, keyPath: keyPath}
	if err := s.restart(); err != nil {
		t.Fatal(err)
	}
	s.restarts = 0
	s.addr = certstest.ServeTLS(t, func() (*tls.Certificate, error) {
		if reload {
			c, err := tls.LoadX509KeyPair(certPath, keyPath)
			return &c, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.cached, nil
	}).String()
	return s
}

func (s *tlsServer) restart() error {
	c, err := tls.LoadX509KeyPair(s.certPath, s.keyPath)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cached = &c
	s.restarts++
	return nil
}

func TestInstall(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	c := loadCA(t, ca)
	for _, reload := range []bool{true, false} {
		t.Run(fmt.Sprintf("reloads=%t", reload), func(t *testing.T) {
			dir := t.TempDir()
			certPEM, keyPEM := certstest.Gencert(t, ca, "server", "etcd", []string{"127.0.0.1", "172.72.0.96"}, "ecdsa", 256)
			certPath, keyPath := filepath.Join(dir, "etcd.pem"), filepath.Join(dir, "etcd-key.pem")
			certstest.WriteFiles(t, dir, map[string][]byte{"etcd.pem": certPEM, "etcd-key.pem": keyPEM})
			if err := os.Chmod(certPath, 0o640); err != nil {
				t.Fatal(err)
			}
			srv := startTLS(t, certPath, keyPath, reload)
			_, cert := parseOne(t, certPEM)
			res, err := Resign(cert, c, ResignOptions{RemoveHosts: []string{"172.72.0.96"}, Profile: "server"})
			if err != nil {
				t.Fatal(err)
			}
			h := newDirHost(srv.restart)
			plan := InstallPlan{CertPath: certPath, KeyPath: keyPath, CertPEM: res.CertPEM, KeyPEM: res.KeyPEM,
				Probe: srv.addr, Unit: "etcd.service", ReloadWait: 2 * time.Second, Timeout: 20 * time.Second}
			if done, err := Installed(context.Background(), h, plan); done || err != nil {
				t.Fatalf("Installed before install: %t %v", done, err)
			}
			ir, err := Install(context.Background(), h, plan)
			if err != nil {
				t.Fatalf("Install: %v", err)
			}
			if ir.Restarted == reload || (srv.restarts == 1) == reload {
				t.Errorf("restarted %t (%d restarts), component reloads %t", ir.Restarted, srv.restarts, reload)
			}
			if len(ir.Backups) != 2 {
				t.Fatalf("backups %q", ir.Backups)
			}
			for i, want := range []struct {
				data []byte
				mode fs.FileMode
			}{{keyPEM, 0o600}, {certPEM, 0o640}} {
				b, _ := os.ReadFile(ir.Backups[i])
				fi, _ := os.Stat(ir.Backups[i])
				if string(b) != string(want.data) || fi.Mode().Perm() != want.mode {
					t.Errorf("backup %s: mode %v, content kept %t", ir.Backups[i], fi.Mode().Perm(), string(b) == string(want.data))
				}
			}
			if fi, _ := os.Stat(certPath); fi.Mode().Perm() != 0o640 {
				t.Errorf("certificate mode %v, want the old 0640", fi.Mode().Perm())
			}
			served, err := ServedCertificate(context.Background(), h, srv.addr, "", nil, nil)
			if err != nil || InfoOf(served).Serial != res.Info.Serial {
				t.Errorf("served %v, %v", served, err)
			}
			if done, err := Installed(context.Background(), h, plan); !done || err != nil {
				t.Errorf("Installed after install: %t %v", done, err)
			}
		})
	}

	t.Run("restart refused by its check", func(t *testing.T) {
		dir := t.TempDir()
		certPEM, keyPEM := certstest.Gencert(t, ca, "server", "etcd", []string{"127.0.0.1", "172.72.0.96"}, "ecdsa", 256)
		certPath, keyPath := filepath.Join(dir, "etcd.pem"), filepath.Join(dir, "etcd-key.pem")
		certstest.WriteFiles(t, dir, map[string][]byte{"etcd.pem": certPEM, "etcd-key.pem": keyPEM})
		srv := startTLS(t, certPath, keyPath, false) // serves what it loaded until restarted
		_, cert := parseOne(t, certPEM)
		res, err := Resign(cert, c, ResignOptions{RemoveHosts: []string{"172.72.0.96"}, Profile: "server"})
		if err != nil {
			t.Fatal(err)
		}
		quorum := errors.New("etcd member m2 is unhealthy: restarting m1 would leave 1 of 3")
		asked := 0
		plan := InstallPlan{CertPath: certPath, KeyPath: keyPath, CertPEM: res.CertPEM, KeyPEM: res.KeyPEM,
			Probe: srv.addr, Unit: "etcd.service", ReloadWait: 300 * time.Millisecond, Timeout: 20 * time.Second,
			BeforeRestart: func(context.Context) error { asked++; return quorum }}
		ir, err := Install(context.Background(), newDirHost(srv.restart), plan)
		if !errors.Is(err, ErrRestartRefused) || !errors.Is(err, quorum) || !strings.Contains(err.Error(), "copy them back to restore") {
			t.Errorf("Install: %v", err)
		}
		if asked != 1 || ir.Restarted || srv.restarts != 0 {
			t.Errorf("check asked %d times, restarted %t (%d restarts)", asked, ir.Restarted, srv.restarts)
		}
	})

	t.Run("mismatched pair writes nothing", func(t *testing.T) {
		dir := t.TempDir()
		certPEM, _ := certstest.Gencert(t, ca, "server", "etcd", []string{"127.0.0.1"}, "ecdsa", 256)
		_, otherKey := certstest.Gencert(t, ca, "server", "etcd", []string{"127.0.0.1"}, "ecdsa", 256)
		_, err := Install(context.Background(), newDirHost(nil), InstallPlan{CertPath: filepath.Join(dir, "a.pem"), KeyPath: filepath.Join(dir, "a-key.pem"), CertPEM: certPEM, KeyPEM: otherKey})
		if !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("err %v", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("files written: %v", entries)
		}
	})
}
