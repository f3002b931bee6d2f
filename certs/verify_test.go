package certs

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/initca"

	"github.com/mastershrink/mastershrink/certs/certstest"
)

func certOf(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	_, cs, err := ParsePEM(pemData, "test.pem")
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

func TestVerifyChain(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	sameName := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	otherName := certstest.NewCA(t, "etcd-ca", "ecdsa", 256)
	leafPEM, _ := certstest.Gencert(t, ca, "kubernetes", "kubernetes", certstest.APIServerHosts, "rsa", 2048)
	leaf, caCert := certOf(t, leafPEM), certOf(t, ca.CertPEM)
	now := time.Now()

	if err := VerifyChain(leaf, []*x509.Certificate{caCert}, nil, now); err != nil {
		t.Errorf("leaf of the CA: %v", err)
	}
	if err := VerifyChain(caCert, []*x509.Certificate{caCert}, nil, now); err != nil {
		t.Errorf("the CA itself: %v", err)
	}
	// Expiry is not the chain's business: a leaf past its end still chains to its CA (the
	// server profile signs for a year, the CA lasts five)...
	shortPEM, _ := certstest.Gencert(t, ca, "server", "etcd", []string{"127.0.0.1"}, "ecdsa", 256)
	short := certOf(t, shortPEM)
	if err := VerifyChain(short, []*x509.Certificate{caCert}, nil, short.NotAfter.Add(24*time.Hour)); err != nil {
		t.Errorf("expired leaf of the CA: %v", err)
	}
	// ...but a CA that ends before the leaf breaks the chain at the leaf's last moment
	// (the kubernetes profile signs for ten years).
	err := VerifyChain(leaf, []*x509.Certificate{caCert}, nil, leaf.NotAfter.Add(24*time.Hour))
	if !errors.Is(err, ErrNotChained) || !strings.Contains(err.Error(), `"kubernetes" in the chain is valid from`) {
		t.Errorf("leaf outliving its CA: %v", err)
	}
	for _, tc := range []struct {
		name string
		root []byte
		want string
	}{
		{"another CA of the same name", sameName.CertPEM, `issued by a CA named "kubernetes", but not signed with the key of the CA given`},
		{"a CA of another name", otherName.CertPEM, `issued by "kubernetes", not by the CA given ("etcd-ca")`},
	} {
		err := VerifyChain(leaf, []*x509.Certificate{certOf(t, tc.root)}, nil, now)
		if !errors.Is(err, ErrNotChained) || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrNotChained naming %q", tc.name, err, tc.want)
		}
	}
	// A leaf given as the root makes nothing chain through it: a leaf signed by a leaf is no chain.
	if err := VerifyChain(leaf, nil, nil, now); !errors.Is(err, ErrNotChained) {
		t.Errorf("no roots: %v", err)
	}
}

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "0d": 0, "720h": 720 * time.Hour, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute, " 7d ": 7 * 24 * time.Hour,
	} {
		if got, err := ParseWindow(in); err != nil || got != want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"30days", "-1d", "-5h", "d", "1.5d", "soon", "", "999999999d"} {
		if _, err := ParseWindow(in); err == nil || !strings.Contains(err.Error(), "30d") {
			t.Errorf("ParseWindow(%q): %v, want an error giving 30d as the example", in, err)
		}
	}
}

func TestExpiresWithin(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		notAfter time.Time
		window   time.Duration
		want     bool
	}{
		{now.Add(31 * day), 30 * day, false},
		{now.Add(29 * day), 30 * day, true},
		{now.Add(30 * day), 30 * day, true},
		{now.Add(-time.Hour), 0, true}, // expired: always
		{now.Add(time.Hour), 0, false},
	} {
		if got := ExpiresWithin(tc.notAfter, now, tc.window); got != tc.want {
			t.Errorf("ExpiresWithin(%v, %v) = %v, want %v", tc.notAfter.Sub(now), tc.window, got, tc.want)
		}
	}
}

// A CA certificate comes back as a CA request: what cfssl gencert -initca reads, with the
// ca block that makes the same CA again.
func TestRequestOfCA(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	info := InfoOf(certOf(t, ca.CertPEM))
	req := Request(info)
	if req.CA == nil || req.CA.Expiry != "43800h" || req.CA.PathLength != 0 || req.CA.PathLenZero {
		t.Fatalf("CA request: ca block %+v, want expiry 43800h and no path length", req.CA)
	}
	data, _ := json.Marshal(req)
	if !strings.Contains(string(data), `"ca":{"pathlen":0,"pathlenzero":false,"expiry":"43800h"`) {
		t.Errorf("CA request JSON lacks cfssl's ca block: %s", data)
	}
	// Made again from the request, the CA has the same subject, key and validity.
	again, _, _, err := initca.New(req)
	if err != nil {
		t.Fatalf("initca from the request: %v", err)
	}
	got := InfoOf(certOf(t, again))
	if !got.IsCA || got.Subject.CommonName != "kubernetes" || got.KeyAlgorithm != "rsa" || got.KeySize != 2048 ||
		got.NotAfter.Sub(got.NotBefore) != info.NotAfter.Sub(info.NotBefore) {
		t.Errorf("CA made from the request: %+v", got)
	}

	// pathlen:0 survives, as pathlenzero.
	zero, _, _, err := initca.New(&csr.CertificateRequest{CN: "intermediate", KeyRequest: &csr.KeyRequest{A: "ecdsa", S: 256},
		CA: &csr.CAConfig{Expiry: "8760h", PathLenZero: true}})
	if err != nil {
		t.Fatal(err)
	}
	req = Request(InfoOf(certOf(t, zero)))
	if req.CA == nil || req.CA.PathLength != 0 || !req.CA.PathLenZero || req.CA.Expiry != "8760h" {
		t.Errorf("pathlen 0 CA: ca block %+v, want pathlen 0, pathlenzero, 8760h", req.CA)
	}

	leafPEM, _ := certstest.Gencert(t, ca, "kubernetes", "kubernetes", certstest.APIServerHosts, "rsa", 2048)
	if req := Request(InfoOf(certOf(t, leafPEM))); req.CA != nil {
		t.Errorf("leaf request has a ca block: %+v", req.CA)
	}
}
