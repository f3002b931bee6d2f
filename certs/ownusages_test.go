package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/certs/certstest"
)

// A CA without a ca-config re-signs with the certificate's own usages, as openssl made them
// (kubespray's [ssl_client]: client and server auth, no key usage), not cfssl's default
// profile's: the new certificate does what the old one did, and nothing more.
func TestResignWithoutConfigKeepsUsages(t *testing.T) {
	ca := certstest.NewCA(t, "etcd-ca", "ecdsa", 256)
	c, err := LoadCA(ca.CertPEM, ca.KeyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "etcd-member-m1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(300 * 24 * time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "m1"},
		IPAddresses:  []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2")},
	}
	old, key := signLeaf(t, tmpl, c.Cert, c.Key)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	res, err := Resign(old, c, ResignOptions{RemoveHosts: []string{"10.0.0.2"}, ReuseKey: true, ExistingKeyPEM: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	_, got := parseOne(t, res.CertPEM)
	if got.KeyUsage != 0 || !slices.Equal(got.ExtKeyUsage, old.ExtKeyUsage) || len(res.Warnings) != 0 {
		t.Errorf("key usage %v, extended %v, warnings %q; want none, %v and no warning", got.KeyUsage, got.ExtKeyUsage, res.Warnings, old.ExtKeyUsage)
	}
	if err := CheckResignablePEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.Raw}), "member-m1.pem", c, ""); err != nil {
		t.Errorf("CheckResignablePEM: %v", err)
	}
}
