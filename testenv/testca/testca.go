// Package testca is the fast test tier's CA (New, then Issue): ECDSA P-256 certificates made
// with crypto/x509 and written as PEM files, for the etcd and Kubernetes processes that
// etcdtest and kubetest start. It makes nothing a cluster would keep: certstest makes the
// cfssl certificates of seed 003 for the tests of package certs.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// validity is how long everything here is valid from an hour before it is made: longer than
// any test, short enough that nothing is worth keeping.
const validity = 48 * time.Hour

// CA signs the certificates of one test environment.
type CA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial int64
	from   time.Time
}

// New makes a CA of that subject and writes its certificate to certFile.
func New(subject pkix.Name, certFile string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	ca := &CA{key: key, serial: 1, from: time.Now().Add(-time.Hour)}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: subject,
		NotBefore: ca.from, NotAfter: ca.from.Add(validity), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return ca, WritePEM(certFile, "CERTIFICATE", der)
}

// Leaf is a certificate for Issue to sign.
type Leaf struct {
	Subject pkix.Name
	Usages  []x509.ExtKeyUsage
	IPs     []net.IP
	DNS     []string
}

// Issue signs a fresh key pair for leaf and writes the certificate and its key as PEM files.
func (ca *CA) Issue(leaf Leaf, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate %s key: %w", leaf.Subject.CommonName, err)
	}
	ca.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial), Subject: leaf.Subject,
		NotBefore: ca.from, NotAfter: ca.from.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: leaf.Usages, IPAddresses: leaf.IPs, DNSNames: leaf.DNS,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("create %s certificate: %w", leaf.Subject.CommonName, err)
	}
	if err := WritePEM(certFile, "CERTIFICATE", der); err != nil {
		return err
	}
	return WriteKey(keyFile, key)
}

// WriteKey writes an EC private key as PEM, 0600.
func WriteKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key %s: %w", path, err)
	}
	return WritePEM(path, "EC PRIVATE KEY", der)
}

// WritePEM writes one PEM block, 0600.
func WritePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
