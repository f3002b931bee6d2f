package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/csr"
	"sigs.k8s.io/yaml"

	"github.com/mastershrink/mastershrink/certs/certstest"
)

// cfsslFolder writes a cfssljson folder: ca, kubernetes and etcd, each NAME.pem and NAME-key.pem.
func cfsslFolder(t *testing.T) (string, certstest.CA) {
	t.Helper()
	dir := t.TempDir()
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	api, apiKey := certstest.Gencert(t, ca, "kubernetes", "kubernetes", certstest.APIServerHosts, "rsa", 2048)
	etcd, etcdKey := certstest.Gencert(t, ca, "server", "etcd", []string{"127.0.0.1"}, "ecdsa", 256)
	certstest.WriteFiles(t, dir, map[string][]byte{
		"ca.pem": ca.CertPEM, "ca-key.pem": ca.KeyPEM,
		"kubernetes.pem": api, "kubernetes-key.pem": apiKey,
		"etcd.pem": etcd, "etcd-key.pem": etcdKey,
	})
	return dir, ca
}

func TestCertsInspectFolderAndGlobSkipKeys(t *testing.T) {
	dir, _ := cfsslFolder(t)
	glob, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil || len(glob) != 6 {
		t.Fatalf("glob: %v %v", glob, err)
	}
	for name, args := range map[string][]string{"folder": {dir}, "glob": glob} {
		out, errOut, code := runCmd(t, append([]string{"certs", "inspect"}, args...)...)
		if code != exitOK {
			t.Errorf("%s: exit %d\n%s", name, code, errOut)
		}
		if n := strings.Count(strings.TrimSpace(out), "\n"); n != 3 {
			t.Errorf("%s: %d rows, want 3 certificates:\n%s", name, n, out)
		}
		if strings.Contains(out, "-key.pem") || strings.Contains(out+errOut, "PRIVATE KEY") {
			t.Errorf("%s: key files printed:\n%s%s", name, out, errOut)
		}
	}
}

func TestCertsInspectKeyMismatch(t *testing.T) {
	dir, _ := cfsslFolder(t)
	// etcd-key.pem now holds the kubernetes key: the pair is mixed up.
	other := filepath.Join(dir, "kubernetes-key.pem")
	certstest.WriteFiles(t, dir, map[string][]byte{"etcd-key.pem": mustRead(t, other)})
	out, errOut, code := runCmd(t, "certs", "inspect", dir)
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(errOut, "etcd-key.pem: the private key does not match the certificate "+filepath.Join(dir, "etcd.pem")) {
		t.Errorf("stderr lacks the mismatch:\n%s", errOut)
	}
	if strings.Contains(errOut, "kubernetes-key.pem:") || strings.Contains(out+errOut, "PRIVATE KEY") {
		t.Errorf("a matching pair reported, or key material printed:\n%s", errOut)
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 3 {
		t.Errorf("%d rows, want all 3 certificates still printed:\n%s", n, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCertsInspectWide(t *testing.T) {
	dir, _ := cfsslFolder(t)
	out, errOut, code := runCmd(t, "certs", "inspect", "-o", "wide", filepath.Join(dir, "etcd.pem"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "OU") || !strings.Contains(lines[0], "USAGES") {
		t.Fatalf("no wide header:\n%s", out)
	}
	for _, want := range []string{"k8s", "System", "signing,key encipherment,server auth"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("wide row lacks %q:\n%s", want, out)
		}
	}
	if out, _, _ := runCmd(t, "certs", "inspect", filepath.Join(dir, "etcd.pem")); strings.Contains(out, "USAGES") {
		t.Errorf("the plain table has wide columns:\n%s", out)
	}
}

// strayFolder is cfsslFolder plus admin.pem, signed by another CA of the same name.
func strayFolder(t *testing.T) string {
	t.Helper()
	dir, _ := cfsslFolder(t)
	other := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	admin, _ := certstest.Gencert(t, other, "kubernetes", "admin", nil, "ecdsa", 256)
	certstest.WriteFiles(t, dir, map[string][]byte{"admin.pem": admin})
	return dir
}

func TestCertsInspectCA(t *testing.T) {
	dir := strayFolder(t)
	ca := filepath.Join(dir, "ca.pem")
	out, errOut, code := runCmd(t, "certs", "inspect", dir, "--ca", ca)
	if code != exitCheck {
		t.Errorf("exit %d, want %d (a check failed)\n%s", code, exitCheck, errOut)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 5 || !strings.HasSuffix(rows[0], "CHAIN") {
		t.Fatalf("want a header with CHAIN and 4 rows:\n%s", out)
	}
	for _, r := range rows[1:] {
		want := "ok"
		if strings.Contains(r, "admin.pem") {
			want = "FAILED"
		}
		if !strings.HasSuffix(r, want) {
			t.Errorf("row %q: want CHAIN %s", r, want)
		}
	}
	wantErr := filepath.Join(dir, "admin.pem") + ` (admin): does not chain to the CA ` + ca + `: issued by a CA named "kubernetes", but not signed with the key of the CA given`
	if !strings.Contains(errOut, wantErr) || strings.Count(errOut, "does not chain") != 1 || !strings.Contains(errOut, "1 of 4 certificates do not chain") {
		t.Errorf("stderr must name admin.pem alone, with the reason:\n%s", errOut)
	}

	// The same in -o json and yaml: a chain field per certificate.
	for _, format := range []string{"json", "yaml"} {
		out, _, code = runCmd(t, "certs", "inspect", dir, "--ca", ca, "-o", format)
		if code != exitCheck {
			t.Errorf("-o %s: exit %d", format, code)
		}
		data := []byte(out)
		if format == "yaml" {
			var err error
			if data, err = yaml.YAMLToJSON(data); err != nil {
				t.Fatal(err)
			}
		}
		var doc struct {
			Certificates []struct {
				Path  string      `json:"path"`
				Chain *chainCheck `json:"chain"`
			} `json:"certificates"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("-o %s: %v\n%s", format, err, out)
		}
		failed := 0
		for _, c := range doc.Certificates {
			if c.Chain == nil || c.Chain.CA != ca {
				t.Errorf("-o %s: %s has no chain result for %s", format, c.Path, ca)
				continue
			}
			if !c.Chain.OK {
				failed++
				if filepath.Base(c.Path) != "admin.pem" || !strings.Contains(c.Chain.Reason, "not signed with the key of the CA given") {
					t.Errorf("-o %s: %s fails with %q", format, c.Path, c.Chain.Reason)
				}
			}
		}
		if len(doc.Certificates) != 4 || failed != 1 {
			t.Errorf("-o %s: %d certificates, %d failed; want 4 and 1", format, len(doc.Certificates), failed)
		}
	}

	// Every certificate of the CA: exit 0, and without --ca no chain column.
	good := filepath.Join(dir, "kubernetes.pem")
	if out, errOut, code := runCmd(t, "certs", "inspect", good, filepath.Join(dir, "etcd.pem"), "--ca", ca); code != exitOK || !strings.Contains(out, "CHAIN") {
		t.Errorf("good certificates: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, _ := runCmd(t, "certs", "inspect", good); strings.Contains(out, "CHAIN") {
		t.Errorf("CHAIN column without --ca:\n%s", out)
	}
	// A --ca that is no CA is the operator's input to fix (exit 4), before anything is read.
	if _, errOut, code := runCmd(t, "certs", "inspect", good, "--ca", good); code != exitUsage || !strings.Contains(errOut, "is no CA certificate") {
		t.Errorf("--ca of a leaf: exit %d\n%s", code, errOut)
	}
}

func TestCertsInspectFailWithin(t *testing.T) {
	dir, _ := cfsslFolder(t)
	// The server profile signs etcd.pem for a year, the CA lasts five, kubernetes.pem ten.
	etcd, api, ca := filepath.Join(dir, "etcd.pem"), filepath.Join(dir, "kubernetes.pem"), filepath.Join(dir, "ca.pem")
	cases := []struct {
		name     string
		args     []string
		code     int
		expiring []string
	}{
		{"no flag", nil, exitOK, nil},
		{"a week", []string{"--fail-within", "7d"}, exitOK, nil},
		{"two years in days", []string{"--fail-within", "730d"}, exitCheck, []string{etcd}},
		{"six years in hours", []string{"--fail-within", "52560h"}, exitCheck, []string{etcd, ca}},
		{"zero: expired only", []string{"--fail-within", "0d"}, exitOK, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCmd(t, append([]string{"certs", "inspect", dir}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, errOut)
			}
			if n := strings.Count(strings.TrimSpace(out), "\n"); n != 3 {
				t.Errorf("the table must still list the 3 certificates:\n%s", out)
			}
			if got := strings.Count(errOut, "within --fail-within"); got != len(tc.expiring) {
				t.Errorf("%d certificates listed, want %d:\n%s", got, len(tc.expiring), errOut)
			}
			for _, f := range tc.expiring {
				if !regexp.MustCompile(regexp.QuoteMeta(f) + ` \([a-z]+\): expires \d{4}-\d\d-\d\dT[0-9:]+Z \(\d+ days left\), within --fail-within`).MatchString(errOut) {
					t.Errorf("%s not listed with its expiry:\n%s", f, errOut)
				}
			}
			if strings.Contains(errOut, api+" (") {
				t.Errorf("kubernetes.pem (ten years) listed:\n%s", errOut)
			}
		})
	}

	// An expired certificate is listed whatever the window, as expired; run a year later.
	o := &certsInspectOptions{globalOptions: &globalOptions{streams: streams{Out: &strings.Builder{}, ErrOut: &strings.Builder{}}},
		Output: "table", Files: []string{etcd}, FailWithin: "0d", now: func() time.Time { return time.Now().AddDate(1, 1, 0) }}
	err := runCertsInspect(t.Context(), o)
	if exitCode(err) != exitCheck || !strings.Contains(o.ErrOut.(*strings.Builder).String(), "days ago); renew it: mastershrink certs regen "+etcd) {
		t.Errorf("expired certificate: %v\n%s", err, o.ErrOut)
	}

	// A file that cannot be read wins: exit 1, and the expiring certificate is still named.
	certstest.WriteFiles(t, dir, map[string][]byte{"broken.pem": []byte("hello\n")})
	_, errOut, code := runCmd(t, "certs", "inspect", dir, "--fail-within", "730d")
	if code != exitError || !strings.Contains(errOut, etcd+" (etcd): expires") || !strings.Contains(errOut, "broken.pem") {
		t.Errorf("bad file and expiring certificate: exit %d, want %d\n%s", code, exitError, errOut)
	}
}

func TestCertsInspectCSR(t *testing.T) {
	dir, _ := cfsslFolder(t)
	// A CA certificate: a CA request with cfssl's ca block.
	out, errOut, code := runCmd(t, "certs", "inspect", filepath.Join(dir, "ca.pem"), "-o", "csr")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var ca csr.CertificateRequest
	if err := json.Unmarshal([]byte(out), &ca); err != nil {
		t.Fatalf("one certificate must give one object: %v\n%s", err, out)
	}
	if ca.CA == nil || ca.CA.Expiry != "43800h" || ca.CN != "kubernetes" {
		t.Errorf("CA request: %+v, ca block %+v; want the ca block with expiry 43800h", ca, ca.CA)
	}
	// A bundle: one JSON array, in the file's order; the leaf has no ca block.
	bundle := filepath.Join(dir, "bundle.crt")
	certstest.WriteFiles(t, dir, map[string][]byte{"bundle.crt": append(mustRead(t, filepath.Join(dir, "etcd.pem")), mustRead(t, filepath.Join(dir, "ca.pem"))...)})
	out, errOut, code = runCmd(t, "certs", "inspect", bundle, "-o", "csr")
	if code != exitOK {
		t.Fatalf("bundle: exit %d: %s", code, errOut)
	}
	var reqs []csr.CertificateRequest
	if err := json.Unmarshal([]byte(out), &reqs); err != nil {
		t.Fatalf("a bundle must give one JSON array: %v\n%s", err, out)
	}
	if len(reqs) != 2 || reqs[0].CN != "etcd" || reqs[0].CA != nil || reqs[1].CA == nil {
		t.Errorf("bundle requests: %+v", reqs)
	}
	// A folder is several certificates too: one array.
	out, _, _ = runCmd(t, "certs", "inspect", dir, "-o", "csr")
	if err := json.Unmarshal([]byte(out), &reqs); err != nil || len(reqs) != 5 {
		t.Errorf("folder: %d requests, %v\n%s", len(reqs), err, out)
	}
}
