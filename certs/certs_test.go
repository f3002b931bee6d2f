package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/helpers"

	"github.com/mastershrink/mastershrink/certs/certstest"
)

func loadCA(t *testing.T, ca certstest.CA) CA {
	t.Helper()
	c, err := LoadCA(ca.CertPEM, ca.KeyPEM, ca.ConfigJSON)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	return c
}

func parseOne(t *testing.T, certPEM []byte) (Info, *x509.Certificate) {
	t.Helper()
	infos, certs, err := ParsePEM(certPEM, "test.pem")
	if err != nil {
		t.Fatalf("ParsePEM: %v", err)
	}
	if len(infos) != 1 || len(certs) != 1 {
		t.Fatalf("ParsePEM: %d infos, %d certs, want 1", len(infos), len(certs))
	}
	return infos[0], certs[0]
}

// signLeaf signs tmpl for a new P-256 key, with parentKey under parent, or by that key itself
// when parent is nil: the certificates cfssl does not make, as openssl does.
func signLeaf(t *testing.T, tmpl, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// opensslFacts is what `openssl x509 -noout -text` says of a certificate.
type opensslFacts struct {
	Subject, KeyAlgo, SAN, KeyUsage, ExtKeyUsage string
	KeyBits                                      int
}

func openssl(t *testing.T, certPEM []byte) opensslFacts {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed (apt-get install openssl)")
	}
	path := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "x509", "-noout", "-text", "-in", path).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	return parseOpenSSL(t, string(out))
}

func parseOpenSSL(t *testing.T, text string) opensslFacts {
	t.Helper()
	var f opensslFacts
	lines := strings.Split(text, "\n")
	next := func(i int) string {
		if i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
		return ""
	}
	for i, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "Subject:"):
			f.Subject = strings.TrimSpace(strings.TrimPrefix(l, "Subject:"))
		case strings.HasPrefix(l, "Public Key Algorithm:"):
			f.KeyAlgo = strings.TrimSpace(strings.TrimPrefix(l, "Public Key Algorithm:"))
		case strings.HasPrefix(l, "Public-Key:"):
			m := regexp.MustCompile(`\((\d+) bit\)`).FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("openssl key size line %q", l)
			}
			fmt.Sscan(m[1], &f.KeyBits)
		case strings.HasPrefix(l, "X509v3 Subject Alternative Name:"):
			f.SAN = next(i)
		case strings.HasPrefix(l, "X509v3 Key Usage:"):
			f.KeyUsage = next(i)
		case strings.HasPrefix(l, "X509v3 Extended Key Usage:"):
			f.ExtKeyUsage = next(i)
		}
	}
	return f
}

// opensslSANs turns "DNS:a, IP Address:1.2.3.4" into cfssl hosts.
func opensslSANs(san string) []string {
	var hosts []string
	for _, part := range strings.Split(san, ", ") {
		if _, v, ok := strings.Cut(part, ":"); ok {
			hosts = append(hosts, v)
		}
	}
	return hosts
}

var opensslKeyUsage = map[string]string{
	"Digital Signature": "signing", "Key Encipherment": "key encipherment", "Certificate Sign": "cert sign",
	"CRL Sign": "crl sign", "TLS Web Server Authentication": "server auth", "TLS Web Client Authentication": "client auth",
}

func opensslUsages(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ", ") {
		if u != "" {
			out = append(out, opensslKeyUsage[u])
		}
	}
	return out
}

// crossCheck compares our facts with openssl's reading of the same certificate.
func crossCheck(t *testing.T, certPEM []byte, info Info) {
	t.Helper()
	o := openssl(t, certPEM)
	if o.KeyBits != info.KeySize {
		t.Errorf("key size: openssl says %d bit, Info %d", o.KeyBits, info.KeySize)
	}
	wantAlgo := map[string]string{"rsaEncryption": "rsa", "id-ecPublicKey": "ecdsa", "ED25519": "ed25519"}[o.KeyAlgo]
	if wantAlgo != info.KeyAlgorithm {
		t.Errorf("key algorithm: openssl says %q, Info %q", o.KeyAlgo, info.KeyAlgorithm)
	}
	if got := opensslSANs(o.SAN); !slices.Equal(got, Hosts(info)) {
		t.Errorf("SANs: openssl says %q, Info %q", got, Hosts(info))
	}
	if got := opensslUsages(o.KeyUsage); !slices.Equal(got, info.KeyUsages) {
		t.Errorf("key usages: openssl says %q, Info %q", got, info.KeyUsages)
	}
	if got := opensslUsages(o.ExtKeyUsage); !slices.Equal(got, info.ExtKeyUsages) {
		t.Errorf("ext key usages: openssl says %q, Info %q", got, info.ExtKeyUsages)
	}
	s := info.Subject
	want := fmt.Sprintf("C = %s, ST = %s, L = %s, O = %s, OU = %s, CN = %s", s.Country[0], s.Province[0], s.Locality[0], s.Organization[0], s.OrganizationalUnit[0], s.CommonName)
	if o.Subject != want {
		t.Errorf("subject: openssl says %q, from Info %q", o.Subject, want)
	}
}

func TestRoundTrip(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	c := loadCA(t, ca)
	for _, tc := range []struct {
		algo  string
		size  int
		curve string
		reuse bool
	}{
		{"rsa", 2048, "", false},
		{"rsa", 4096, "", false},
		{"ecdsa", 256, "P-256", false},
		{"ecdsa", 256, "P-256", true},
	} {
		name := fmt.Sprintf("%s%d", tc.algo, tc.size)
		if tc.reuse {
			name += "-reuse-key"
		}
		t.Run(name, func(t *testing.T) {
			certPEM, keyPEM := certstest.Gencert(t, ca, "kubernetes", "kubernetes", certstest.APIServerHosts, tc.algo, tc.size)
			info, cert := parseOne(t, certPEM)

			// Inspect: the facts are those of the cfssl request that made it.
			if info.KeyAlgorithm != tc.algo || info.KeySize != tc.size || info.Curve != tc.curve {
				t.Errorf("key: got %s %d %q, want %s %d %q", info.KeyAlgorithm, info.KeySize, info.Curve, tc.algo, tc.size, tc.curve)
			}
			if info.Subject.CommonName != "kubernetes" || !slices.Equal(info.Subject.Organization, []string{"k8s"}) ||
				!slices.Equal(info.Subject.Province, []string{"ShangHai"}) || !slices.Equal(info.Subject.OrganizationalUnit, []string{"System"}) {
				t.Errorf("subject: %+v", info.Subject)
			}
			if info.Issuer.CommonName != "kubernetes" || info.IsCA {
				t.Errorf("issuer %q, is CA %t", info.Issuer.CommonName, info.IsCA)
			}
			if !slices.Equal(info.KeyUsages, []string{"signing", "key encipherment"}) || !slices.Equal(info.ExtKeyUsages, []string{"server auth", "client auth"}) {
				t.Errorf("usages %q %q", info.KeyUsages, info.ExtKeyUsages)
			}
			if !sameSet(Hosts(info), certstest.APIServerHosts) {
				t.Errorf("hosts %q, want %q", Hosts(info), certstest.APIServerHosts)
			}
			if info.DaysLeft < 3000 || info.SubjectKeyID == "" || info.Serial == "" {
				t.Errorf("days left %d, ski %q, serial %q", info.DaysLeft, info.SubjectKeyID, info.Serial)
			}
			crossCheck(t, certPEM, info)

			// Request: what seed 003 typed by hand.
			req := Request(info)
			if req.CN != "kubernetes" || req.KeyRequest.A != tc.algo || req.KeyRequest.S != tc.size ||
				fmt.Sprint(req.Names) != fmt.Sprint(certstest.Names) || !sameSet(req.Hosts, certstest.APIServerHosts) {
				t.Errorf("request %+v key %+v", req, req.KeyRequest)
			}
			if !slices.Equal(req.Hosts[:5], certstest.APIServerHosts[5:]) {
				t.Errorf("request hosts start %q, want the DNS names first", req.Hosts[:5])
			}
			// The request alone regenerates an equivalent certificate, as `cfssl gencert` would.
			regenPEM, _ := certstest.Gencert(t, ca, "kubernetes", req.CN, req.Hosts, req.KeyRequest.A, req.KeyRequest.S)
			regen, _ := parseOne(t, regenPEM)
			if !sameFacts(info, regen) {
				t.Errorf("regenerated from Request:\n got %+v\nwant %+v", regen, info)
			}

			// Resign without one master's IP.
			opts := ResignOptions{RemoveHosts: []string{"172.72.0.96"}}
			if tc.reuse {
				opts.ReuseKey, opts.ExistingKeyPEM = true, keyPEM
			}
			res, err := Resign(cert, c, opts)
			if err != nil {
				t.Fatalf("Resign: %v", err)
			}
			got, _ := parseOne(t, res.CertPEM)
			want := info
			want.IPAddresses = slices.DeleteFunc(slices.Clone(info.IPAddresses), func(s string) bool { return s == "172.72.0.96" })
			if !sameFacts(want, got) {
				t.Errorf("re-signed:\n got %+v\nwant %+v", got, want)
			}
			if slices.Contains(Hosts(got), "172.72.0.96") || len(Hosts(got)) != len(certstest.APIServerHosts)-1 {
				t.Errorf("re-signed hosts %q", Hosts(got))
			}
			if !slices.Equal(res.Hosts.Removed, []string{"172.72.0.96"}) || len(res.Hosts.Added) != 0 {
				t.Errorf("hosts change %+v", res.Hosts)
			}
			if got.Serial == info.Serial {
				t.Error("re-signed certificate kept the serial")
			}
			if same, _ := KeyMatches(res.CertPEM, keyPEM); same != tc.reuse {
				t.Errorf("new certificate matches the old key: %t, want %t", same, tc.reuse)
			}
			if ok, err := KeyMatches(res.CertPEM, res.KeyPEM); !ok || err != nil {
				t.Errorf("result key does not match result cert: %v", err)
			}
			crossCheck(t, res.CertPEM, got)
			if o := openssl(t, res.CertPEM); strings.Contains(o.SAN, "172.72.0.96") {
				t.Errorf("openssl still sees the removed IP: %s", o.SAN)
			}
			if err := Verify(res.CertPEM, res.KeyPEM, c, res.Hosts.After); err != nil {
				t.Errorf("Verify: %v", err)
			}
			csrReq, err := helpers.ParseCSRPEM(res.CSRPEM)
			if err != nil || csrReq.Subject.CommonName != "kubernetes" {
				t.Errorf("CSR: %v %v", err, csrReq)
			}
			// The CA is valid 5 years and the profile asks for 10: capped, and said so.
			if !got.NotAfter.Equal(c.Cert.NotAfter) || !hasWarning(res.Warnings, "capped") {
				t.Errorf("not after %s (CA %s), warnings %q", got.NotAfter, c.Cert.NotAfter, res.Warnings)
			}
		})
	}
}

// sameFacts compares what a re-sign must keep: subject, issuer, key, usages, SANs.
func sameFacts(a, b Info) bool {
	return fmt.Sprint(a.Subject) == fmt.Sprint(b.Subject) && fmt.Sprint(a.Issuer) == fmt.Sprint(b.Issuer) &&
		a.KeyAlgorithm == b.KeyAlgorithm && a.KeySize == b.KeySize && a.Curve == b.Curve &&
		slices.Equal(a.KeyUsages, b.KeyUsages) && slices.Equal(a.ExtKeyUsages, b.ExtKeyUsages) &&
		slices.Equal(a.DNSNames, b.DNSNames) && slices.Equal(a.IPAddresses, b.IPAddresses) &&
		slices.Equal(a.URIs, b.URIs) && slices.Equal(a.EmailAddresses, b.EmailAddresses) &&
		a.IsCA == b.IsCA && a.AuthorityKeyID == b.AuthorityKeyID
}

func hasWarning(ws []string, sub string) bool {
	return slices.ContainsFunc(ws, func(w string) bool { return strings.Contains(w, sub) })
}

func TestParsePEMErrors(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	certPEM, keyPEM := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"127.0.0.1"}, "ecdsa", 256)
	cut := certPEM[:len(certPEM)/2]
	damaged := bytes.Replace(certPEM, []byte("\n"), []byte("\n!!!"), 3)
	for _, tc := range []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"garbage", []byte("this is not a certificate\n"), ErrNoCertificate, "no PEM block"},
		{"empty", nil, ErrNoCertificate, "empty"},
		{"binary", []byte{0x00, 0xff, 0x30, 0x01}, ErrNoCertificate, "no PEM block"},
		{"private key", keyPEM, ErrPrivateKeyGiven, "this is a private key, not a certificate"},
		{"truncated", cut, ErrTruncatedPEM, "line 1"},
		{"truncated second", append(slices.Clone(certPEM), cut...), ErrTruncatedPEM, "line "},
		{"damaged base64", damaged, ErrTruncatedPEM, "damaged"},
		{"csr only", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}}), ErrNoCertificate, "CERTIFICATE REQUEST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParsePEM(tc.data, "/etc/k/x.pem")
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "/etc/k/x.pem") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("message %q lacks the file or %q", err, tc.msg)
			}
			if bytes.Contains([]byte(err.Error()), keyPEM[30:60]) {
				t.Error("the message shows key material")
			}
		})
	}

	t.Run("bundle and key", func(t *testing.T) {
		data := append(append(slices.Clone(certPEM), ca.CertPEM...), keyPEM...)
		infos, _, err := ParsePEM(data, "bundle.pem")
		if err != nil || len(infos) != 2 || infos[1].Index != 1 || !infos[1].IsCA || infos[1].Path != "bundle.pem" {
			t.Fatalf("bundle: %v %+v", err, infos)
		}
	})
	t.Run("der", func(t *testing.T) {
		block, _ := pem.Decode(certPEM)
		infos, _, err := ParsePEM(block.Bytes, "etcd.der")
		if err != nil || infos[0].Subject.CommonName != "etcd" {
			t.Fatalf("DER: %v", err)
		}
	})
}

func TestDaysLeftAndExpiry(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	certPEM, _ := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"127.0.0.1"}, "ecdsa", 256)
	_, cert := parseOne(t, certPEM)
	infos, _, err := parsePEMAt(certPEM, "x", cert.NotAfter.Add(36*time.Hour))
	if err != nil || infos[0].DaysLeft != -2 {
		t.Errorf("expired 1.5 days ago: days left %d, %v", infos[0].DaysLeft, err)
	}
	infos, _, _ = parsePEMAt(certPEM, "x", cert.NotAfter.Add(-36*time.Hour))
	if infos[0].DaysLeft != 1 {
		t.Errorf("1.5 days left: days left %d", infos[0].DaysLeft)
	}
}

func TestLoadCAErrors(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	other := certstest.NewCA(t, "other", "ecdsa", 256)
	leaf, _ := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"127.0.0.1"}, "ecdsa", 256)

	if _, err := LoadCA(ca.CertPEM, other.KeyPEM, nil); !errors.Is(err, ErrCAKeyMismatch) || !strings.Contains(err.Error(), `"kubernetes"`) {
		t.Errorf("key of another CA: %v", err)
	}
	if _, err := LoadCA(leaf, ca.KeyPEM, nil); !errors.Is(err, ErrNotCA) {
		t.Errorf("leaf as CA: %v", err)
	}
	if _, err := LoadCA(ca.CertPEM, ca.CertPEM, nil); !errors.Is(err, ErrCertificateGiven) {
		t.Errorf("certificate as CA key: %v", err)
	}
	if _, err := LoadCA(ca.KeyPEM, ca.KeyPEM, nil); !errors.Is(err, ErrPrivateKeyGiven) {
		t.Errorf("key as CA certificate: %v", err)
	}
	if _, err := LoadCA(ca.CertPEM, ca.KeyPEM, []byte(`{"signing":`)); err == nil || !strings.Contains(err.Error(), "ca-config") {
		t.Errorf("broken ca-config: %v", err)
	}
	c := loadCA(t, ca)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", &c)} {
		if strings.Contains(s, "PRIVATE") || len(s) > 200 {
			t.Errorf("printing the CA shows more than its name: %.300s", s)
		}
	}
}

func TestResignRefusals(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	other := certstest.NewCA(t, "kubernetes", "rsa", 2048) // same name, different key
	certPEM, keyPEM := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"172.72.0.95", "172.72.0.96", "127.0.0.1"}, "rsa", 2048)
	_, cert := parseOne(t, certPEM)
	c := loadCA(t, ca)

	if _, err := Resign(cert, loadCA(t, other), ResignOptions{}); !errors.Is(err, ErrNotSignedByCA) || !strings.Contains(err.Error(), "give the CA that issued it") {
		t.Errorf("foreign CA: %v", err)
	}
	if _, err := Resign(cert, c, ResignOptions{Profile: "kubernets"}); !errors.Is(err, ErrUnknownProfile) || !strings.Contains(err.Error(), "kubernetes, server") {
		t.Errorf("mistyped profile: %v", err)
	}
	bad := certstest.CA{CertPEM: ca.CertPEM, KeyPEM: ca.KeyPEM, ConfigJSON: []byte(`{"signing":{"profiles":{"kubernetes":{"usages":["signing","server auth","cleint auth"],"expiry":"8760h"}}}}`)}
	if _, err := Resign(cert, loadCA(t, bad), ResignOptions{}); !errors.Is(err, ErrBadProfile) || !strings.Contains(err.Error(), "cleint auth") {
		t.Errorf("unknown usage: %v", err)
	}
	if _, err := Resign(cert, c, ResignOptions{RemoveHosts: []string{"172.72.0.99"}}); !errors.Is(err, ErrHostNotInCert) || !strings.Contains(err.Error(), "172.72.0.99") {
		t.Errorf("remove absent host: %v", err)
	}
	_, otherKey := certstest.Gencert(t, ca, "kubernetes", "etcd", []string{"127.0.0.1"}, "rsa", 2048)
	if _, err := Resign(cert, c, ResignOptions{ReuseKey: true, ExistingKeyPEM: otherKey}); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("reuse a key of another pair: %v", err)
	}
	noCfg, err := LoadCA(ca.CertPEM, ca.KeyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Resign(cert, noCfg, ResignOptions{Profile: "kubernetes"}); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("profile without ca-config: %v", err)
	}

	// A profile that drops client auth from a server+client certificate is refused, not
	// warned about: the etcd certificate would break peer and apiserver connections.
	if res, err := Resign(cert, c, ResignOptions{Profile: "server", ReuseKey: true, ExistingKeyPEM: keyPEM}); !errors.Is(err, ErrUsagesNotCovered) || res.CertPEM != nil {
		t.Errorf("server profile on a server+client certificate: %v", err)
	}

	// Another profile with the usages the certificate has, and more: signed as it says, and
	// the difference is reported.
	serverPEM, serverKey := certstest.Gencert(t, ca, "server", "etcd", []string{"172.72.0.95", "172.72.0.96", "127.0.0.1"}, "rsa", 2048)
	_, serverCert := parseOne(t, serverPEM)
	res, err := Resign(serverCert, c, ResignOptions{Profile: "kubernetes", AddHosts: []string{"etcd.local", "127.0.0.1"}, ReuseKey: true, ExistingKeyPEM: serverKey})
	if err != nil {
		t.Fatalf("kubernetes profile on a server certificate: %v", err)
	}
	if !slices.Equal(res.Info.ExtKeyUsages, []string{"server auth", "client auth"}) || !hasWarning(res.Warnings, "usages differ") {
		t.Errorf("kubernetes profile: usages %q warnings %q", res.Info.ExtKeyUsages, res.Warnings)
	}
	if !slices.Equal(res.Hosts.After, []string{"etcd.local", "172.72.0.95", "172.72.0.96", "127.0.0.1"}) || !slices.Equal(res.Hosts.Added, []string{"etcd.local"}) {
		t.Errorf("hosts %+v", res.Hosts)
	}
	// The same profile that made it: one year inside a five-year CA, not capped, not shorter.
	res, err = Resign(serverCert, c, ResignOptions{Profile: "server"})
	if err != nil {
		t.Fatalf("server profile on a server certificate: %v", err)
	}
	if hasWarning(res.Warnings, "capped") || hasWarning(res.Warnings, "shorter") {
		t.Errorf("one-year profile inside a five-year CA: %q", res.Warnings)
	}
}

func TestVerify(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "ecdsa", 256)
	other := certstest.NewCA(t, "kubernetes", "ecdsa", 256)
	hosts := []string{"172.72.0.95", "127.0.0.1"}
	certPEM, keyPEM := certstest.Gencert(t, ca, "server", "etcd", hosts, "ecdsa", 256)
	_, otherKey := certstest.Gencert(t, ca, "server", "etcd", hosts, "ecdsa", 256)
	// cfssl itself signs past the CA's end: 10 years asked, 5 years of CA left.
	longPEM, longKey := certstest.Gencert(t, ca, "kubernetes", "etcd", hosts, "ecdsa", 256)
	c := loadCA(t, ca)
	if err := Verify(longPEM, longKey, c, hosts); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "after the CA") {
		t.Errorf("certificate outliving its CA: %v", err)
	}
	if err := Verify(certPEM, keyPEM, c, []string{"127.0.0.1", "172.72.0.95"}); err != nil {
		t.Errorf("good pair: %v", err)
	}
	for name, tc := range map[string]struct {
		key   []byte
		ca    CA
		hosts []string
		want  string
	}{
		"wrong key":   {otherKey, c, hosts, "does not match"},
		"other CA":    {keyPEM, loadCA(t, other), hosts, "chain to CA"},
		"extra SAN":   {keyPEM, c, hosts[:1], `unexpected ["127.0.0.1"]`},
		"missing SAN": {keyPEM, c, append(slices.Clone(hosts), "10.0.0.1"), `missing ["10.0.0.1"]`},
	} {
		err := Verify(certPEM, tc.key, tc.ca, tc.hosts)
		if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestPlanHostsAndMatching(t *testing.T) {
	info := Info{DNSNames: []string{"kubernetes"}, IPAddresses: []string{"172.72.0.95", "172.72.0.96", "::1"}}
	ch, err := PlanHosts(info, []string{"172.72.0.96", "0:0::1"}, []string{"10.0.0.5", "KUBERNETES", "k.local"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.After, []string{"kubernetes", "k.local", "172.72.0.95", "10.0.0.5"}) ||
		!slices.Equal(ch.Removed, []string{"172.72.0.96", "::1"}) || !slices.Equal(ch.Added, []string{"10.0.0.5", "k.local"}) || !ch.Changed() {
		t.Errorf("%+v", ch)
	}
	if got := Matching(info, []string{"172.72.0.97", "172.72.0.96"}); !slices.Equal(got, []string{"172.72.0.96"}) {
		t.Errorf("Matching: %q", got)
	}
}
