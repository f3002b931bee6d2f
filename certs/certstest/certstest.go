// Package certstest makes cfssl CAs and certificates for tests the way seed 003 does
// (cfssl initca, then cfssl gencert -profile=kubernetes), in-process.
package certstest

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	"github.com/cloudflare/cfssl/initca"
	"github.com/cloudflare/cfssl/selfsign"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
)

// CAConfig is a ca-config.json as the binary-deployment guides write it.
const CAConfig = `{
  "signing": {
    "default": {"expiry": "87600h"},
    "profiles": {
      "kubernetes": {
        "usages": ["signing", "key encipherment", "server auth", "client auth"],
        "expiry": "87600h"
      },
      "server": {
        "usages": ["signing", "key encipherment", "server auth"],
        "expiry": "8760h"
      }
    }
  }
}`

// Names is the subject of seed 003's certificates.
var Names = []csr.Name{{C: "CN", ST: "ShangHai", L: "ShangHai", O: "k8s", OU: "System"}}

// APIServerHosts are seed 003's kube-apiserver SANs.
var APIServerHosts = []string{
	"172.72.0.95", "172.72.0.96", "172.72.0.97", "127.0.0.1", "10.254.0.1",
	"kubernetes", "kubernetes.default", "kubernetes.default.svc",
	"kubernetes.default.svc.cluster", "kubernetes.default.svc.cluster.local",
}

// CA is a CA made by initca, as PEM.
type CA struct {
	CertPEM, KeyPEM, ConfigJSON []byte
}

// NewCA makes a CA like `cfssl gencert -initca ca-csr.json` (RSA 2048 unless algo says).
func NewCA(tb testing.TB, cn, algo string, size int) CA {
	tb.Helper()
	req := &csr.CertificateRequest{
		CN:         cn,
		Names:      Names,
		KeyRequest: &csr.KeyRequest{A: algo, S: size},
		CA:         &csr.CAConfig{Expiry: "43800h"},
	}
	cert, _, key, err := initca.New(req)
	if err != nil {
		tb.Fatalf("initca %s: %v", cn, err)
	}
	return CA{CertPEM: cert, KeyPEM: key, ConfigJSON: []byte(CAConfig)}
}

// Gencert signs a new key pair like `cfssl gencert -ca -ca-key -config -profile`.
func Gencert(tb testing.TB, ca CA, profile, cn string, hosts []string, algo string, size int) (certPEM, keyPEM []byte) {
	tb.Helper()
	req := &csr.CertificateRequest{CN: cn, Names: Names, Hosts: hosts, KeyRequest: &csr.KeyRequest{A: algo, S: size}}
	csrPEM, keyPEM, err := csr.ParseRequest(req)
	if err != nil {
		tb.Fatalf("csr %s: %v", cn, err)
	}
	return Sign(tb, ca, profile, csrPEM, hosts), keyPEM
}

// Sign signs a CSR with the CA and its ca-config profile.
func Sign(tb testing.TB, ca CA, profile string, csrPEM []byte, hosts []string) []byte {
	tb.Helper()
	cfg, err := config.LoadConfig(ca.ConfigJSON)
	if err != nil {
		tb.Fatalf("ca-config: %v", err)
	}
	caCert, err := helpers.ParseCertificatePEM(ca.CertPEM)
	if err != nil {
		tb.Fatalf("CA cert: %v", err)
	}
	caKey, err := helpers.ParsePrivateKeyPEM(ca.KeyPEM)
	if err != nil {
		tb.Fatalf("CA key: %v", err)
	}
	s, err := local.NewSigner(caKey, caCert, signer.DefaultSigAlgo(caKey), cfg.Signing)
	if err != nil {
		tb.Fatalf("signer: %v", err)
	}
	cert, err := s.Sign(signer.SignRequest{Hosts: hosts, Request: string(csrPEM), Profile: profile})
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return cert
}

// WriteFiles writes files (name to content) into dir with mode 0600 and returns dir.
func WriteFiles(tb testing.TB, dir string, files map[string][]byte) string {
	tb.Helper()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// SelfSigned makes a server certificate that signed itself, as `openssl req -x509` does:
// no CA issued it.
func SelfSigned(cn string, hosts []string) (certPEM, keyPEM []byte, err error) {
	req := &csr.CertificateRequest{CN: cn, Names: Names, Hosts: hosts, KeyRequest: &csr.KeyRequest{A: "ecdsa", S: 256}}
	csrPEM, keyPEM, err := csr.ParseRequest(req)
	if err != nil {
		return nil, nil, err
	}
	key, err := helpers.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	certPEM, err = selfsign.Sign(key, csrPEM, &config.SigningProfile{
		Usage:  []string{"signing", "key encipherment", "server auth"},
		Expiry: 24 * time.Hour,
	})
	return certPEM, keyPEM, err
}

// ServeTLS listens on loopback and serves the certificate get returns at each handshake,
// then closes the connection: a stand-in for a server whose certificate a test installs or
// replaces. It stops at the end of the test.
func ServeTLS(tb testing.TB, get func() (*tls.Certificate, error)) net.Addr {
	tb.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return get() }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return ln.Addr()
}
