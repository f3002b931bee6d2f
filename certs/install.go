package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/mastershrink/mastershrink/host/machine"
)

// ErrNotServed is returned when the component still serves another certificate after the
// install (and the restart, if one was allowed).
var ErrNotServed = errors.New("the component does not serve the new certificate")

// ErrRestartRefused is a restart the plan's BeforeRestart check would not allow: the new
// files are in place, but the component still serves the old certificate.
var ErrRestartRefused = errors.New("restart refused")

// InstallPlan is one certificate pair to install on one host and the endpoint that serves it.
type InstallPlan struct {
	CertPath string
	KeyPath  string
	CertPEM  []byte
	// KeyPEM is written with mode 0600 when the key file is new; an existing key file keeps
	// its mode and owner.
	KeyPEM []byte
	// Probe is the address serving the certificate, as the host sees it ("127.0.0.1:2379");
	// empty skips the served-certificate check.
	Probe string
	// ServerName is sent as SNI; empty sends none.
	ServerName string
	// ClientCertPEM and ClientKeyPEM authenticate the probe where the server asks for a
	// client certificate (etcd with --client-cert-auth); the served certificate is read
	// during the handshake either way.
	ClientCertPEM []byte
	ClientKeyPEM  []byte
	// Unit is restarted when the component does not pick the new files up by itself within
	// ReloadWait; empty never restarts.
	Unit string
	// ReloadWait is how long to wait for a reload before restarting Unit. Neither lab
	// component needs a restart: etcd reads its files on every handshake, kube-apiserver
	// watches --tls-cert-file (served within a second in the lab; its periodic recheck is
	// about a minute, so allow that much).
	ReloadWait time.Duration
	// Timeout bounds the whole confirmation, restart included.
	Timeout time.Duration
	// BeforeRestart, when set, is asked right before Unit is restarted, and an error stops
	// the restart (ErrRestartRefused). For etcd it is the quorum check a membership change
	// gets: restarting one member while another is down would lose quorum.
	BeforeRestart func(ctx context.Context) error
}

// InstallResult reports what Install did.
type InstallResult struct {
	Changes   []machine.WriteResult
	Backups   []string
	Restarted bool
	// ServedSHA256 is the digest of the certificate the component serves after the install.
	ServedSHA256 string
}

// Install writes the pair atomically with timestamped backups, then confirms by a TLS
// handshake through the host that the component serves the new certificate, restarting
// plan.Unit only if it did not reload by itself. The pair is checked before anything is
// written. Files already holding the new content are left alone, so a rerun resumes.
func Install(ctx context.Context, h machine.Host, plan InstallPlan) (InstallResult, error) {
	var res InstallResult
	ok, err := KeyMatches(plan.CertPEM, plan.KeyPEM)
	if err != nil || !ok {
		return res, fmt.Errorf("install %s on %s: %w (nothing written)", plan.CertPath, h.Name(), errors.Join(ErrKeyMismatch, err))
	}
	want, err := leafSHA256(plan.CertPEM)
	if err != nil {
		return res, fmt.Errorf("install %s on %s: %w", plan.CertPath, h.Name(), err)
	}
	// The key goes first: a component reloading between the writes then sees the new key
	// with the old certificate for a moment, and fails that handshake instead of serving a
	// certificate whose key it does not have; the window is as short as the two renames.
	keyOpts := machine.WriteOptions{Backup: true}
	if _, err := h.Stat(ctx, plan.KeyPath); errors.Is(err, fs.ErrNotExist) {
		keyOpts.Mode = 0o600
	} else if err != nil {
		return res, fmt.Errorf("install: stat %s:%s: %w", h.Name(), plan.KeyPath, err)
	}
	for _, f := range []struct {
		path string
		data []byte
		opts machine.WriteOptions
	}{
		{plan.KeyPath, plan.KeyPEM, keyOpts},
		{plan.CertPath, plan.CertPEM, machine.WriteOptions{Backup: true, Mode: modeIfNew(ctx, h, plan.CertPath, 0o644)}},
	} {
		wr, err := h.WriteFile(ctx, f.path, f.data, f.opts)
		if err != nil {
			return res, fmt.Errorf("install: write %s:%s: %w%s", h.Name(), f.path, err, restoreHint(res.Backups))
		}
		res.Changes = append(res.Changes, wr)
		if wr.Backup != "" {
			res.Backups = append(res.Backups, wr.Backup)
		}
	}
	if plan.Probe == "" {
		return res, nil
	}

	timeout := plan.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := plan.ReloadWait
	if plan.Unit == "" || wait == 0 || wait > timeout {
		wait = timeout
	}
	served, err := waitServed(ctx, h, plan, want, wait)
	if err == nil {
		res.ServedSHA256 = served
		return res, nil
	}
	if plan.Unit == "" || ctx.Err() != nil {
		return res, fmt.Errorf("install %s on %s: %w%s", plan.CertPath, h.Name(), err, restoreHint(res.Backups))
	}
	if plan.BeforeRestart != nil {
		if cerr := plan.BeforeRestart(ctx); cerr != nil {
			return res, fmt.Errorf("install %s on %s: %w: %s still serves the old certificate (%v), and restarting it is not safe now: %w%s",
				plan.CertPath, h.Name(), ErrRestartRefused, plan.Unit, err, cerr, restoreHint(res.Backups))
		}
	}
	sd, err := h.Systemd(ctx)
	if err != nil {
		return res, fmt.Errorf("install %s on %s: systemd: %w%s", plan.CertPath, h.Name(), err, restoreHint(res.Backups))
	}
	defer sd.Close()
	if err := sd.Restart(ctx, plan.Unit); err != nil {
		return res, fmt.Errorf("install %s on %s: restart %s: %w%s", plan.CertPath, h.Name(), plan.Unit, err, restoreHint(res.Backups))
	}
	res.Restarted = true
	served, err = waitServed(ctx, h, plan, want, timeout)
	if err != nil {
		return res, fmt.Errorf("install %s on %s: after restarting %s: %w%s", plan.CertPath, h.Name(), plan.Unit, err, restoreHint(res.Backups))
	}
	res.ServedSHA256 = served
	return res, nil
}

// Installed says whether the plan's files already hold the new content and, with a probe,
// the component serves the new certificate: the step's postcondition.
func Installed(ctx context.Context, h machine.Host, plan InstallPlan) (bool, error) {
	for _, f := range []struct {
		path string
		data []byte
	}{{plan.CertPath, plan.CertPEM}, {plan.KeyPath, plan.KeyPEM}} {
		got, err := h.ReadFile(ctx, f.path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read %s:%s: %w", h.Name(), f.path, err)
		}
		if !bytes.Equal(got, f.data) {
			return false, nil
		}
	}
	if plan.Probe == "" {
		return true, nil
	}
	want, err := leafSHA256(plan.CertPEM)
	if err != nil {
		return false, err
	}
	served, err := ServedCertificate(ctx, h, plan.Probe, plan.ServerName, plan.ClientCertPEM, plan.ClientKeyPEM)
	if err != nil {
		return false, err
	}
	return sha256Hex(served.Raw) == want, nil
}

// ServedCertificate returns the leaf certificate a TLS server presents, connecting from the
// host's point of view. It does not judge the certificate: that is the caller's comparison.
func ServedCertificate(ctx context.Context, h machine.Host, addr, serverName string, clientCertPEM, clientKeyPEM []byte) (*x509.Certificate, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := h.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, h.Name(), err)
	}
	defer conn.Close()
	var served *x509.Certificate
	cfg := &tls.Config{
		ServerName: serverName,
		// The served certificate is compared with the expected one byte for byte, which is
		// stricter than a chain check; the callback records it before any client-auth failure.
		InsecureSkipVerify: true, //nolint:gosec // see above
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				c, err := x509.ParseCertificate(raw[0])
				if err != nil {
					return err
				}
				served = c
			}
			return nil
		},
	}
	if len(clientCertPEM) > 0 {
		pair, err := tls.X509KeyPair(clientCertPEM, clientKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("probe client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	tc := tls.Client(conn, cfg)
	herr := tc.HandshakeContext(dctx)
	if served == nil {
		return nil, fmt.Errorf("TLS handshake with %s from %s: %w", addr, h.Name(), herr)
	}
	return served, nil
}

func waitServed(ctx context.Context, h machine.Host, plan InstallPlan, want string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	var last string
	var lastErr error
	for {
		c, err := ServedCertificate(ctx, h, plan.Probe, plan.ServerName, plan.ClientCertPEM, plan.ClientKeyPEM)
		if err == nil {
			last = sha256Hex(c.Raw)
			if last == want {
				return last, nil
			}
		}
		lastErr = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			if lastErr != nil {
				return "", fmt.Errorf("%w at %s within %s: %w", ErrNotServed, plan.Probe, wait, lastErr)
			}
			return "", fmt.Errorf("%w at %s within %s: it serves sha256 %s, want %s", ErrNotServed, plan.Probe, wait, last, want)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func modeIfNew(ctx context.Context, h machine.Host, path string, mode fs.FileMode) fs.FileMode {
	if _, err := h.Stat(ctx, path); errors.Is(err, fs.ErrNotExist) {
		return mode
	}
	return 0
}

func restoreHint(backups []string) string {
	if len(backups) == 0 {
		return ""
	}
	return fmt.Sprintf(" (the old files are kept in %v: copy them back to restore)", backups)
}

func leafSHA256(certPEM []byte) (string, error) {
	certs, err := parseCertificates(certPEM, "new certificate")
	if err != nil {
		return "", err
	}
	return sha256Hex(certs[0].Raw), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
