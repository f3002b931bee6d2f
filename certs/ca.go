package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strings"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/helpers"
	cflog "github.com/cloudflare/cfssl/log"

	"github.com/mastershrink/mastershrink/host/machine"
)

func init() {
	// cfssl logs every step at Info to stderr, and logs some errors it also returns; the
	// errors reach the operator through our return values, so only its fatal messages stay.
	cflog.Level = cflog.LevelFatal
}

// Errors of the CA checks.
var (
	ErrCAKeyMismatch  = errors.New("the CA key does not match the CA certificate")
	ErrNotCA          = errors.New("not a CA certificate")
	ErrNotSignedByCA  = errors.New("the certificate was not signed by this CA")
	ErrUnknownProfile = errors.New("no such signing profile in the ca-config")
	ErrBadProfile     = errors.New("unusable signing profile")
)

// CA is the cluster's signing CA. Its String, GoString and LogValue never show the key.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	// Key is the CA private key: kept in memory only, never logged, printed or written.
	Key crypto.Signer
	// Config is the cluster's ca-config.json, nil when there is none.
	Config *config.Config
	// ownUsages marks a Config made by forCert, not given: there is still no ca-config.
	ownUsages bool
}

func (c CA) String() string {
	if c.Cert == nil {
		return "CA(none)"
	}
	return fmt.Sprintf("CA(%s, ski %x)", c.Cert.Subject.CommonName, c.Cert.SubjectKeyId)
}

// GoString keeps %#v from printing the key.
func (c CA) GoString() string { return c.String() }

// LogValue keeps slog from printing the key.
func (c CA) LogValue() slog.Value { return slog.StringValue(c.String()) }

// LoadCA parses the CA certificate, its key and, when caConfigJSON is not empty, the
// cluster's ca-config.json. It refuses a key that does not belong to the certificate.
func LoadCA(certPEM, keyPEM, caConfigJSON []byte) (CA, error) {
	certs, err := parseCertificates(certPEM, "CA certificate")
	if err != nil {
		return CA{}, err
	}
	cert := certs[0]
	if !cert.IsCA {
		return CA{}, fmt.Errorf("CA certificate %q: %w (its basic constraints say CA:FALSE); give the CA that signs the cluster's certificates (ca.pem)", cert.Subject.CommonName, ErrNotCA)
	}
	if bytes.Contains(keyPEM, []byte("-----BEGIN CERTIFICATE")) && !bytes.Contains(keyPEM, []byte("PRIVATE KEY")) {
		return CA{}, fmt.Errorf("CA key: %w; give the CA's private key (ca-key.pem)", ErrCertificateGiven)
	}
	key, err := helpers.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		// cfssl's error text does not include key material.
		return CA{}, fmt.Errorf("CA key: cannot parse the private key (PEM, PKCS#1, PKCS#8 or SEC 1 expected; encrypted keys are not supported): %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return CA{}, fmt.Errorf("CA %q: %w; give the key file from the same pair (ca.pem with ca-key.pem)", cert.Subject.CommonName, ErrCAKeyMismatch)
	}
	ca := CA{Cert: cert, CertPEM: pemOf(cert), Key: key}
	if len(bytes.TrimSpace(caConfigJSON)) > 0 {
		cfg, err := config.LoadConfig(caConfigJSON)
		if err != nil {
			return CA{}, fmt.Errorf("ca-config: %w", err)
		}
		ca.Config = cfg
	}
	return ca, nil
}

// LoadCAFrom reads the CA from the host that holds it (the key stays in memory). An empty
// configPath, or one that does not exist on the host, means no ca-config.
func LoadCAFrom(ctx context.Context, h machine.Host, certPath, keyPath, configPath string) (CA, error) {
	certPEM, err := h.ReadFile(ctx, certPath)
	if err != nil {
		return CA{}, fmt.Errorf("read CA certificate %s:%s: %w", h.Name(), certPath, err)
	}
	keyPEM, err := h.ReadFile(ctx, keyPath)
	if err != nil {
		return CA{}, fmt.Errorf("read CA key %s:%s: %w", h.Name(), keyPath, err)
	}
	var cfg []byte
	if configPath != "" {
		cfg, err = h.ReadFile(ctx, configPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return CA{}, fmt.Errorf("read ca-config %s:%s: %w", h.Name(), configPath, err)
		}
	}
	ca, err := LoadCA(certPEM, keyPEM, cfg)
	if err != nil {
		return CA{}, fmt.Errorf("CA on %s: %w", h.Name(), err)
	}
	return ca, nil
}

// profile resolves the signing profile: the one named, else "kubernetes" when the
// ca-config has it, else the default one. cfssl would silently sign a mistyped name with the
// default profile and drop unknown usages; both are refused here.
func (c CA) profile(name string) (string, *config.SigningProfile, error) {
	var signing *config.Signing
	if c.Config != nil {
		signing = c.Config.Signing
	}
	if signing == nil {
		if name != "" {
			return "", nil, fmt.Errorf("profile %q: %w: no ca-config was given; give the cluster's ca-config.json", name, ErrUnknownProfile)
		}
		return "", config.DefaultConfig(), nil
	}
	if name == "" {
		if _, ok := signing.Profiles["kubernetes"]; ok {
			name = "kubernetes"
		}
	}
	p := signing.Default
	if name != "" {
		var ok bool
		p, ok = signing.Profiles[name]
		if !ok {
			return "", nil, fmt.Errorf("profile %q: %w; it has: %s", name, ErrUnknownProfile, strings.Join(c.ProfileNames(), ", "))
		}
	}
	if p == nil {
		p = config.DefaultConfig()
	}
	ku, eku, unknown := p.Usages()
	if len(unknown) > 0 {
		return "", nil, fmt.Errorf("profile %s: %w: unknown usages %q (cfssl would drop them silently); known usages: %s",
			profileLabel(name), ErrBadProfile, unknown, strings.Join(knownUsages(), ", "))
	}
	if ku == 0 && len(eku) == 0 {
		return "", nil, fmt.Errorf("profile %s: %w: it lists no usages", profileLabel(name), ErrBadProfile)
	}
	if p.RemoteName != "" || p.RemoteServer != "" {
		return "", nil, fmt.Errorf("profile %s: %w: it signs through a remote cfssl server; mastershrink signs locally with the CA key", profileLabel(name), ErrBadProfile)
	}
	return name, p, nil
}

// forCert is the CA as it re-signs cert. Without a ca-config (a PKI made by openssl, as
// kubespray's etcd CA; a guide whose ca-config.json stays on another machine) cfssl's
// default profile would give cert cfssl's usages, not the ones it was made with: the
// default profile keeps its expiry but takes cert's own usages, where cfssl names them all.
func (c CA) forCert(cert *x509.Certificate) CA {
	if c.Config != nil && c.Config.Signing != nil {
		return c
	}
	usages := keyUsageNames(cert.KeyUsage)
	for _, u := range cert.ExtKeyUsage {
		n, ok := extKeyUsageNamesByValue[u]
		if !ok {
			return c
		}
		usages = append(usages, n)
	}
	if len(cert.UnknownExtKeyUsage) > 0 || len(usages) == 0 {
		return c
	}
	for _, u := range usages {
		_, ku := config.KeyUsage[u]
		_, eku := config.ExtKeyUsage[u]
		if !ku && !eku {
			return c
		}
	}
	p := config.DefaultConfig()
	p.Usage = usages
	c.Config = &config.Config{Signing: &config.Signing{Default: p}}
	c.ownUsages = true
	return c
}

// ProfileNames lists the ca-config's profiles, sorted.
func (c CA) ProfileNames() []string {
	var names []string
	if c.Config != nil && c.Config.Signing != nil {
		for n := range c.Config.Signing.Profiles {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return []string{"(none: only the default)"}
	}
	return names
}

func profileLabel(name string) string {
	if name == "" {
		return "(default)"
	}
	return fmt.Sprintf("%q", name)
}

func knownUsages() []string {
	var out []string
	for n := range config.KeyUsage {
		out = append(out, n)
	}
	for n := range config.ExtKeyUsage {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
