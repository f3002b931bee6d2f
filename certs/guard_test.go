package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mastershrink/mastershrink/certs/certstest"
)

// selfSignedLeaf is a server certificate that signed itself, as `openssl req -x509` makes.
func selfSignedLeaf(t *testing.T) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "etcd"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  nil,
		DNSNames:     []string{"etcd.local"},
	}
	c, _ := signLeaf(t, tmpl, nil, nil)
	return c
}

func TestCheckResignable(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	other := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	c := loadCA(t, ca)
	// etcd certificates are used both ways: server for clients and peers, client to peers.
	etcdPEM, _ := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"172.72.0.95", "127.0.0.1"}, "ecdsa", 256)
	_, etcdCert := parseOne(t, etcdPEM)
	serverPEM, _ := certstest.Gencert(t, ca, "server", "etcd", []string{"172.72.0.95"}, "ecdsa", 256)
	_, serverCert := parseOne(t, serverPEM)
	_, caCert := parseOne(t, ca.CertPEM)
	noConfig, err := LoadCA(ca.CertPEM, ca.KeyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A CA value built by hand (not through LoadCA) with another CA's key.
	mismatched := c
	mismatched.Key = loadCA(t, other).Key

	for _, tc := range []struct {
		name    string
		cert    *x509.Certificate
		ca      CA
		profile string
		want    []error
		hint    string
	}{
		{"etcd cert, kubernetes profile", etcdCert, c, "", nil, ""},
		{"server cert, server profile", serverCert, c, "server", nil, ""},
		{"server cert, kubernetes profile (adds client auth)", serverCert, c, "kubernetes", nil, ""},
		{"etcd cert, profile without client auth", etcdCert, c, "server", []error{ErrUsagesNotCovered}, "certificate also has client auth"},
		{"the CA itself", caCert, c, "", []error{ErrCACertificate}, "re-sign the leaf certificates it signed instead"},
		{"self-signed leaf", selfSignedLeaf(t), c, "", []error{ErrSelfSigned}, "issued by the cluster CA"},
		{"another CA", etcdCert, loadCA(t, other), "", []error{ErrNotSignedByCA}, "give the CA that issued it"},
		{"CA key of another CA", etcdCert, mismatched, "", []error{ErrCAKeyMismatch}, "same pair"},
		{"mistyped profile", etcdCert, c, "kubernets", []error{ErrUnknownProfile}, "kubernetes, server"},
		{"no ca-config: one year instead of ten", etcdCert, noConfig, "", []error{ErrShorterValidity}, "give the cluster's ca-config.json"},
		{"several problems at once", etcdCert, loadCA(t, other), "server", []error{ErrNotSignedByCA, ErrUsagesNotCovered, ErrShorterValidity}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckResignable(tc.cert, tc.ca, tc.profile)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckResignable: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckResignable accepted it, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not wrap %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), tc.hint) || strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error %q lacks hint %q (or shows a key)", err, tc.hint)
			}
			// Resign refuses the same, with an error, before signing anything.
			res, rerr := Resign(tc.cert, tc.ca, ResignOptions{Profile: tc.profile})
			if res.CertPEM != nil || !errors.Is(rerr, tc.want[0]) {
				t.Errorf("Resign: %v (cert returned: %t), want %v", rerr, res.CertPEM != nil, tc.want[0])
			}
		})
	}
}

func TestCheckResignablePEM(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	c := loadCA(t, ca)
	etcdPEM, _ := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"172.72.0.95"}, "ecdsa", 256)
	if err := CheckResignablePEM(etcdPEM, "/etc/etcd/ssl/etcd.pem", c, ""); err != nil {
		t.Errorf("good certificate: %v", err)
	}
	err := CheckResignablePEM(etcdPEM, "/etc/etcd/ssl/etcd.pem", c, "server")
	if !errors.Is(err, ErrUsagesNotCovered) || !strings.HasPrefix(err.Error(), "/etc/etcd/ssl/etcd.pem: ") {
		t.Errorf("profile without client auth: %v", err)
	}
	if err := CheckResignablePEM(ca.KeyPEM, "/etc/etcd/ssl/etcd-key.pem", c, ""); !errors.Is(err, ErrPrivateKeyGiven) || strings.Contains(err.Error(), "BEGIN") {
		t.Errorf("a key given: %v", err)
	}
}

func TestResignValidity(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	certPEM, _ := certstest.Gencert(t, ca, "kubernetes", "kubernetes", certstest.APIServerHosts, "ecdsa", 256)
	_, cert := parseOne(t, certPEM)
	noConfig, err := LoadCA(ca.CertPEM, ca.KeyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Resign(cert, noConfig, ResignOptions{}); !errors.Is(err, ErrShorterValidity) {
		t.Fatalf("default profile (1 year) for a 10-year certificate: %v", err)
	}
	res, err := Resign(cert, noConfig, ResignOptions{AllowShorterValidity: true})
	if err != nil {
		t.Fatalf("allowed shorter validity: %v", err)
	}
	got, _ := parseOne(t, res.CertPEM)
	if d := got.NotAfter.Sub(got.NotBefore); d < 364*24*time.Hour || d > 366*24*time.Hour || !hasWarning(res.Warnings, "shorter validity") {
		t.Errorf("validity %s, warnings %q: want one year and a warning", d, res.Warnings)
	}

	// A CA that ends before the old certificate: its end is the old validity that counts, so
	// a re-sign capped at the CA's end is not shorter.
	c := loadCA(t, ca)
	if !cert.NotAfter.After(c.Cert.NotAfter) {
		t.Fatalf("fixture: the certificate (%s) should outlive its CA (%s)", cert.NotAfter, c.Cert.NotAfter)
	}
	if _, err := Resign(cert, c, ResignOptions{}); err != nil {
		t.Errorf("ten-year profile capped at the CA's end: %v", err)
	}
}

func TestResignNoSANs(t *testing.T) {
	cfg := `{"signing":{"profiles":{
		"server":{"usages":["signing","key encipherment","server auth"],"expiry":"8760h"},
		"client":{"usages":["signing","key encipherment","client auth"],"expiry":"8760h"}}}}`
	ca := certstest.NewCA(t, "kubernetes", "ecdsa", 256)
	ca.ConfigJSON = []byte(cfg)
	c := loadCA(t, ca)
	hosts := []string{"172.72.0.95", "172.72.0.96"}

	serverPEM, _ := certstest.Gencert(t, ca, "server", "etcd", hosts, "ecdsa", 256)
	_, server := parseOne(t, serverPEM)
	_, err := Resign(server, c, ResignOptions{Profile: "server", RemoveHosts: hosts})
	if !errors.Is(err, ErrNoSANs) || !strings.Contains(err.Error(), "172.72.0.95, 172.72.0.96") {
		t.Errorf("server certificate without SANs: %v", err)
	}
	if _, err := Resign(server, c, ResignOptions{Profile: "server", RemoveHosts: hosts, AddHosts: []string{"etcd.local"}}); err != nil {
		t.Errorf("every SAN replaced by another: %v", err)
	}

	// A client certificate needs no SAN: the server checks its subject, not a name.
	clientPEM, _ := certstest.Gencert(t, ca, "client", "admin", hosts[:1], "ecdsa", 256)
	_, client := parseOne(t, clientPEM)
	res, err := Resign(client, c, ResignOptions{Profile: "client", RemoveHosts: hosts[:1]})
	if err != nil || len(res.Hosts.After) != 0 {
		t.Errorf("client certificate without SANs: %v, hosts %q", err, res.Hosts.After)
	}
}

func TestValidateHost(t *testing.T) {
	for _, h := range []string{
		"10.0.0.1", "::1", "fd00::5", "kubernetes", "kubernetes.default.svc.cluster.local",
		"*.example.com", "etcd-1.k8s.local", "a", "xn--bcher-kva.example", "1a.example",
		"admin@example.com", "spiffe://cluster.local/ns/default/sa/x",
	} {
		if err := ValidateHost(h); err != nil {
			t.Errorf("ValidateHost(%q): %v", h, err)
		}
	}
	for h, why := range map[string]string{
		"not a host!":           "character ' '",
		"":                      "empty",
		"a..b":                  "empty label",
		"example.com.":          "empty label",
		"-a.example":            "hyphen",
		"a-.example":            "hyphen",
		"*":                     "wildcard needs a domain",
		"a.*.example":           "whole first label",
		"*a.example":            "whole first label",
		"172.72.0.999":          "not a valid IP",
		"under_score.example":   "character '_'",
		strings.Repeat("a", 64): "longer than 63",
		"x@":                    "e-mail",
		"http://":               "URI",
	} {
		err := ValidateHost(h)
		if !errors.Is(err, ErrBadHost) || !strings.Contains(err.Error(), why) {
			t.Errorf("ValidateHost(%q): %v, want %q", h, err, why)
		}
	}

	// The value is echoed only as a short prefix, and a PEM never.
	long := strings.Repeat("abc!", 100)
	if err := ValidateHost(long); err == nil || strings.Contains(err.Error(), long[:60]) || !strings.Contains(err.Error(), "400 characters") {
		t.Errorf("long value: %v", err)
	}
	ca := certstest.NewCA(t, "kubernetes", "ecdsa", 256)
	pemKey := string(ca.KeyPEM)
	err := ValidateHost(pemKey)
	if err == nil || strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), strings.Split(pemKey, "\n")[1][:20]) {
		t.Errorf("PEM value: %v", err)
	}
	if _, err := PlanHosts(Info{IPAddresses: []string{"10.0.0.1"}}, nil, []string{"ok.example", "not a host!"}); !errors.Is(err, ErrBadHost) {
		t.Errorf("PlanHosts with a bad host to add: %v", err)
	}
	if b, _ := pem.Decode(ca.KeyPEM); b == nil {
		t.Fatal("fixture: the CA key is not PEM")
	}
}
