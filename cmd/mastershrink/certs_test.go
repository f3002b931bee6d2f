package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/csr"

	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/certs/certstest"
)

// runCmd runs the mastershrink command in-process and returns stdout, stderr and the exit code.
func runCmd(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintln(&errOut, "error:", err)
	}
	return out.String(), errOut.String(), exitCode(err)
}

type pki struct {
	dir                     string
	ca, caKey, caConfig     string
	apiserver, apiserverKey string
	etcd                    string
	ca2, ca2Key             string
	caCert                  certstest.CA
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	other := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	api, apiKey := certstest.Gencert(t, ca, "kubernetes", "kubernetes", certstest.APIServerHosts, "rsa", 2048)
	etcd, etcdKey := certstest.Gencert(t, ca, "server", "etcd", []string{"172.72.0.95", "172.72.0.96", "172.72.0.97", "127.0.0.1"}, "ecdsa", 256)
	certstest.WriteFiles(t, dir, map[string][]byte{
		"ca.pem": ca.CertPEM, "ca-key.pem": ca.KeyPEM, "ca-config.json": ca.ConfigJSON,
		"ca2.pem": other.CertPEM, "ca2-key.pem": other.KeyPEM,
		"kubernetes.pem": api, "kubernetes-key.pem": apiKey,
		"etcd.pem": etcd, "etcd-key.pem": etcdKey,
		"garbage.pem": []byte("hello\n"), "truncated.pem": api[:len(api)-100],
	})
	p := func(n string) string { return filepath.Join(dir, n) }
	return pki{dir: dir, ca: p("ca.pem"), caKey: p("ca-key.pem"), caConfig: p("ca-config.json"),
		apiserver: p("kubernetes.pem"), apiserverKey: p("kubernetes-key.pem"), etcd: p("etcd.pem"),
		ca2: p("ca2.pem"), ca2Key: p("ca2-key.pem"), caCert: ca}
}

func TestCertsInspectTable(t *testing.T) {
	k := newPKI(t)
	out, errOut, code := runCmd(t, "certs", "inspect", k.apiserver, k.etcd, k.ca)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "FILE") || !strings.Contains(lines[0], "DAYS LEFT") {
		t.Fatalf("table:\n%s", out)
	}
	cells := regexp.MustCompile(`\s{2,}`)
	for i, want := range []string{"kubernetes|kubernetes|rsa 2048|kubernetes,kubernetes.default,", "etcd|kubernetes|ecdsa 256|172.72.0.95,172.72.0.96,172.72.0.97,127.0.0.1|", "kubernetes|kubernetes|rsa 2048|-|"} {
		if row := cells.ReplaceAllString(lines[i+1], "|"); !strings.Contains(row, want) {
			t.Errorf("row %d %q lacks %q", i+1, lines[i+1], want)
		}
	}
	if !strings.HasSuffix(lines[3], "CA") {
		t.Errorf("CA row not flagged: %q", lines[3])
	}
}

func TestCertRowsFlags(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	infos := []certs.Info{
		{Path: "a.pem", Subject: certs.Name{CommonName: "a"}, KeyAlgorithm: "rsa", KeySize: 2048, NotAfter: now.Add(-time.Hour)},
		{Path: "b.pem", Subject: certs.Name{CommonName: "b"}, KeyAlgorithm: "rsa", KeySize: 2048, NotAfter: now.Add(10 * 24 * time.Hour)},
		{Path: "c.pem", Subject: certs.Name{CommonName: "c"}, KeyAlgorithm: "ecdsa", KeySize: 256, NotAfter: now.Add(100 * 24 * time.Hour)},
		{Path: "c.pem", Index: 1, Subject: certs.Name{CommonName: "ca"}, KeyAlgorithm: "rsa", KeySize: 4096, NotAfter: now.Add(1000 * 24 * time.Hour), IsCA: true},
	}
	rows := certRows(infos, now, 30)
	want := [][]string{
		{"a.pem", "EXPIRED", "-1"}, {"b.pem", "EXPIRES SOON", "10"}, {"c.pem[0]", "", "100"}, {"c.pem[1]", "CA", "1000"},
	}
	for i, w := range want {
		r := rows[i+1]
		if r[0] != w[0] || r[7] != w[1] || r[6] != w[2] {
			t.Errorf("row %d = %q, want file %s flag %q days %s", i+1, r, w[0], w[1], w[2])
		}
	}
	if rows := certRows(infos[1:2], now, 5); rows[1][7] != "" {
		t.Errorf("--warn-days 5 still flags 10 days: %q", rows[1])
	}
}

func TestCertsInspectJSONAndCSR(t *testing.T) {
	k := newPKI(t)
	out, _, code := runCmd(t, "certs", "inspect", "-o", "json", k.apiserver)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var doc inspectJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if doc.FormatVersion != 1 || len(doc.Certificates) != 1 || doc.Certificates[0].KeySize != 2048 ||
		!strings.Contains(out, `"key_algorithm": "rsa"`) || !strings.Contains(out, `"ip_addresses": [`) {
		t.Errorf("json:\n%s", out)
	}

	out, _, code = runCmd(t, "certs", "inspect", "-o", "csr", k.apiserver)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	// The JSON a seed-003 operator types by hand, field for field.
	var req struct {
		CN    string
		Hosts []string
		Key   struct {
			Algo string
			Size int
		}
		Names []map[string]string
	}
	if err := json.Unmarshal([]byte(out), &req); err != nil {
		t.Fatalf("csr json: %v\n%s", err, out)
	}
	if req.CN != "kubernetes" || req.Key.Algo != "rsa" || req.Key.Size != 2048 || len(req.Hosts) != 10 ||
		fmt.Sprint(req.Names) != "[map[C:CN L:ShangHai O:k8s OU:System ST:ShangHai]]" {
		t.Errorf("csr:\n%s", out)
	}
}

func TestCertsInspectBadFiles(t *testing.T) {
	k := newPKI(t)
	out, errOut, code := runCmd(t, "certs", "inspect", k.etcd, filepath.Join(k.dir, "garbage.pem"), k.apiserverKey,
		filepath.Join(k.dir, "truncated.pem"), filepath.Join(k.dir, "missing.pem"))
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(out, "etcd") || strings.Count(strings.TrimSpace(out), "\n") != 1 {
		t.Errorf("the good file is not printed alone:\n%s", out)
	}
	for _, want := range []string{
		"garbage.pem: no certificate found",
		"kubernetes-key.pem: this is a private key, not a certificate",
		"truncated.pem: truncated or damaged PEM block",
		"missing.pem: no such file",
		"4 of 5 files",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, _, code := runCmd(t, "certs", "inspect", "-o", "xml", k.etcd); code != exitUsage {
		t.Errorf("-o xml: exit %d", code)
	}
	if _, errOut, code := runCmd(t, "certs", "inspect", "master-1:/etc/kubernetes/ssl/etcd.pem"); code != exitUsage || !strings.Contains(errOut, "-i inventory.yaml") {
		t.Errorf("HOST:PATH without inventory: exit %d, %s", code, errOut)
	}
}

func TestCertsRegen(t *testing.T) {
	k := newPKI(t)
	outDir := filepath.Join(t.TempDir(), "new")
	args := []string{"certs", "regen", k.apiserver, "--ca", k.ca, "--ca-key", k.caKey, "--ca-config", k.caConfig,
		"--remove", "172.72.0.96,172.72.0.97", "--out-dir", outDir}
	out, errOut, code := runCmd(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "removed:  172.72.0.96, 172.72.0.97") || !strings.Contains(out, "profile:  kubernetes") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(errOut, "warning: validity capped") {
		t.Errorf("stderr lacks the cap warning: %q", errOut)
	}
	for name, mode := range map[string]os.FileMode{"kubernetes.pem": 0o644, "kubernetes-key.pem": 0o600, "kubernetes.csr": 0o644} {
		fi, err := os.Stat(filepath.Join(outDir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
	}
	newPEM, _ := os.ReadFile(filepath.Join(outDir, "kubernetes.pem"))
	newKey, _ := os.ReadFile(filepath.Join(outDir, "kubernetes-key.pem"))
	ca, err := certs.LoadCA(k.caCert.CertPEM, k.caCert.KeyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster", "kubernetes.default.svc.cluster.local", "172.72.0.95", "127.0.0.1", "10.254.0.1"}
	if err := certs.Verify(newPEM, newKey, ca, want); err != nil {
		t.Errorf("written pair: %v", err)
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		o, err := exec.Command("openssl", "x509", "-noout", "-text", "-in", filepath.Join(outDir, "kubernetes.pem")).CombinedOutput()
		if err != nil || strings.Contains(string(o), "172.72.0.96") || !strings.Contains(string(o), "IP Address:172.72.0.95") {
			t.Errorf("openssl: %v\n%s", err, o)
		}
	}

	// A second run refuses to overwrite; --force keeps the old files.
	if _, errOut, code := runCmd(t, args...); code != exitUsage || !strings.Contains(errOut, "already exist") {
		t.Errorf("second run: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runCmd(t, append(args, "--force")...); code != 0 {
		t.Errorf("--force: exit %d, %s", code, errOut)
	}
	entries, _ := os.ReadDir(outDir)
	if len(entries) != 6 {
		t.Errorf("after --force: %d files, want 3 new and 3 backups", len(entries))
	}
}

func TestCertsRegenRefusals(t *testing.T) {
	k := newPKI(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"CA that did not sign it", []string{k.apiserver, "--ca", k.ca2, "--ca-key", k.ca2Key}, exitRefused, "not signed by this CA"},
		{"CA key of another CA", []string{k.apiserver, "--ca", k.ca, "--ca-key", k.ca2Key}, exitError, "does not match the CA certificate"},
		{"garbage", []string{filepath.Join(k.dir, "garbage.pem"), "--ca", k.ca, "--ca-key", k.caKey}, exitError, "no certificate found"},
		{"key instead of cert", []string{k.apiserverKey, "--ca", k.ca, "--ca-key", k.caKey}, exitError, "private key, not a certificate"},
		{"mistyped profile", []string{k.apiserver, "--ca", k.ca, "--ca-key", k.caKey, "--ca-config", k.caConfig, "--profile", "kubernets"}, exitError, "it has: kubernetes, server"},
		{"absent IP", []string{k.apiserver, "--ca", k.ca, "--ca-key", k.caKey, "--remove", "172.72.0.99"}, exitError, "cannot remove 172.72.0.99"},
		{"reuse another key", []string{k.etcd, "--ca", k.ca, "--ca-key", k.caKey, "--reuse-key", k.apiserverKey}, exitError, "does not match"},
		{"no CA", []string{k.apiserver}, exitUsage, "--ca ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outDir := filepath.Join(t.TempDir(), "out")
			_, errOut, code := runCmd(t, append([]string{"certs", "regen", "--out-dir", outDir}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.want)
			}
			if _, err := os.Stat(outDir); !os.IsNotExist(err) {
				entries, _ := os.ReadDir(outDir)
				t.Errorf("something was written: %v", entries)
			}
			for _, f := range []string{k.caKey, k.ca2Key, k.apiserverKey} {
				key, _ := os.ReadFile(f)
				if line := strings.Split(string(key), "\n")[2]; strings.Contains(errOut, line) {
					t.Errorf("stderr shows key material of %s", f)
				}
			}
		})
	}
}

func TestCertBaseName(t *testing.T) {
	for in, want := range map[string]string{"/etc/k/etcd.pem": "etcd", "m1:/etc/k/kubernetes.pem": "kubernetes", "server.crt": "server", "x": "x"} {
		if got := certBaseName(in); got != want {
			t.Errorf("certBaseName(%q) = %q, want %q", in, got, want)
		}
	}
}

// inspectFixture writes n certificate files (different serials and SANs) for the benchmarks.
func inspectFixture(b *testing.B, n int) []string {
	b.Helper()
	dir := b.TempDir()
	ca := certstest.NewCA(b, "kubernetes", "ecdsa", 256)
	csrPEM := bench2048CSR(b)
	files := make([]string, n)
	for i := range files {
		hosts := []string{"kubernetes", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), "127.0.0.1"}
		certPEM := certstest.Sign(b, ca, "kubernetes", csrPEM, hosts)
		files[i] = filepath.Join(dir, fmt.Sprintf("cert-%04d.pem", i))
		if err := os.WriteFile(files[i], certPEM, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return files
}

func bench2048CSR(b *testing.B) []byte {
	b.Helper()
	req := certs.Request(certs.Info{Subject: certs.Name{CommonName: "kubernetes", Organization: []string{"k8s"}}, KeyAlgorithm: "rsa", KeySize: 2048})
	csrPEM, _, err := csr.ParseRequest(req)
	if err != nil {
		b.Fatal(err)
	}
	return csrPEM
}

// BenchmarkInspect1000 runs `certs inspect` over 1,000 PEM files in one call.
func BenchmarkInspect1000(b *testing.B) {
	files := inspectFixture(b, 1000)
	args := append([]string{"certs", "inspect"}, files...)
	b.ResetTimer()
	for b.Loop() {
		if _, errOut, code := runCmd(b, args...); code != 0 {
			b.Fatalf("exit %d: %s", code, errOut)
		}
	}
}

func TestCertsHostPath(t *testing.T) {
	k := newPKI(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.yaml")
	// The inventory must name a kubeconfig that exists; certs inspect never uses it.
	if err := os.WriteFile(filepath.Join(dir, "admin.kubeconfig"), []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := os.WriteFile(inv, []byte(`format_version: 1
cluster: t
kubeconfig: admin.kubeconfig
layout: seed003
hosts:
  - {name: m1, address: 10.88.0.11, roles: [etcd, master], ssh: {local: true}}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCmd(t, "certs", "inspect", "-i", inv, "m1:"+k.etcd, "m9:"+k.etcd)
	if code != exitError || !strings.Contains(out, "m1:"+k.etcd) || !strings.Contains(out, "ecdsa 256") {
		t.Errorf("exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, `no host "m9" in the inventory`) {
		t.Errorf("stderr: %s", errOut)
	}
	// The CA key is read on the host holding it, into memory.
	outDir := filepath.Join(t.TempDir(), "out")
	_, errOut, code = runCmd(t, "certs", "regen", "-i", inv, "m1:"+k.etcd, "--ca", "m1:"+k.ca, "--ca-key", "m1:"+k.caKey,
		"--ca-config", "m1:"+k.caConfig, "--profile", "server", "--remove", "172.72.0.97", "--out-dir", outDir)
	if code != 0 {
		t.Fatalf("regen from host: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(outDir, "etcd-key.pem")); err != nil {
		t.Error(err)
	}
}

// TestCertsRegenGuards covers the refusals of issue 18: each exits non-zero with a message
// naming the problem and the way out, writes nothing, and echoes no key or long value.
func TestCertsRegenGuards(t *testing.T) {
	k := newPKI(t)
	ca := []string{"--ca", k.ca, "--ca-key", k.caKey, "--ca-config", k.caConfig}
	// etcd certificates are server and client at once, as the binary-deployment guides make them.
	etcdBoth, _ := certstest.Gencert(t, k.caCert, "kubernetes", "etcd", []string{"172.72.0.95", "127.0.0.1"}, "ecdsa", 256)
	selfSigned, _, err := certstest.SelfSigned("etcd", []string{"172.72.0.95"})
	if err != nil {
		t.Fatal(err)
	}
	certstest.WriteFiles(t, k.dir, map[string][]byte{"etcd-both.pem": etcdBoth, "self.pem": selfSigned})
	etcdBothPath, selfPath := filepath.Join(k.dir, "etcd-both.pem"), filepath.Join(k.dir, "self.pem")
	keyLine := strings.Split(string(k.caCert.KeyPEM), "\n")[1]

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"the CA itself, even with --force", append([]string{k.ca, "--force"}, ca...), exitRefused,
			[]string{"CA certificate", "re-sign the leaf certificates it signed instead"}},
		{"self-signed", append([]string{selfPath}, ca...), exitRefused,
			[]string{"self-signed", "issued by the cluster CA"}},
		{"invalid --add", append([]string{k.apiserver, "--add", "not a host!"}, ca...), exitUsage,
			[]string{`--add: SAN "not a host!"`, "not a valid IP address or DNS name", "give an IP address or a DNS name"}},
		{"mistyped IP in --add", append([]string{k.apiserver, "--add", "172.72.0.999"}, ca...), exitUsage,
			[]string{"not a valid IP"}},
		{"PEM in --add", append([]string{k.apiserver, "--add", string(k.caCert.KeyPEM)}, ca...), exitUsage,
			[]string{"a PEM block, not shown"}},
		{"every SAN removed", append([]string{k.etcd, "--remove", "172.72.0.95,172.72.0.96,172.72.0.97,127.0.0.1"}, ca...), exitRefused,
			[]string{"needs at least one SAN", "--add"}},
		{"profile without client auth", append([]string{etcdBothPath, "--profile", "server"}, ca...), exitRefused,
			[]string{"lacks usages", "client auth", "--profile"}},
		{"no ca-config: ten years down to one", []string{k.apiserver, "--ca", k.ca, "--ca-key", k.caKey}, exitRefused,
			[]string{"expire before the old one", "ca-config.json", "--allow-shorter-validity"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outDir := filepath.Join(t.TempDir(), "out")
			before := treeState(t, k.dir)
			_, errOut, code := runCmd(t, append([]string{"certs", "regen", "--out-dir", outDir}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if strings.Contains(errOut, "BEGIN") || strings.Contains(errOut, keyLine) {
				t.Errorf("stderr shows PEM or key material:\n%s", errOut)
			}
			if len(errOut) > 1200 {
				t.Errorf("stderr is %d bytes long:\n%s", len(errOut), errOut)
			}
			if _, err := os.Stat(outDir); !os.IsNotExist(err) {
				t.Errorf("output folder written: %v", err)
			}
			if after := treeState(t, k.dir); after != before {
				t.Errorf("the PKI folder changed")
			}
		})
	}

	// The CA's own folder as --out-dir with --force, for a leaf named like the CA: refused
	// before anything is read.
	caNamed := filepath.Join(t.TempDir(), "ca.pem")
	api, _ := os.ReadFile(k.apiserver)
	if err := os.WriteFile(caNamed, api, 0o600); err != nil {
		t.Fatal(err)
	}
	before := treeState(t, k.dir)
	_, errOut, code := runCmd(t, append([]string{"certs", "regen", caNamed, "--out-dir", k.dir, "--force"}, ca...)...)
	if code != exitUsage || !strings.Contains(errOut, "would replace the cluster's CA") || treeState(t, k.dir) != before {
		t.Errorf("leaf named ca.pem into the CA's folder: exit %d, %s", code, errOut)
	}

	// Shorter validity, allowed explicitly: written, and said on stderr.
	outDir := filepath.Join(t.TempDir(), "short")
	out, errOut, code := runCmd(t, "certs", "regen", k.apiserver, "--ca", k.ca, "--ca-key", k.caKey, "--allow-shorter-validity", "--out-dir", outDir)
	if code != 0 || !strings.Contains(errOut, "warning: shorter validity") || !strings.Contains(out, "wrote ") {
		t.Errorf("--allow-shorter-validity: exit %d\n%s\n%s", code, out, errOut)
	}
	// A wildcard and an IPv6 address are valid SANs to add.
	outDir = filepath.Join(t.TempDir(), "wild")
	out, errOut, code = runCmd(t, append([]string{"certs", "regen", k.apiserver, "--add", "*.k8s.example,fd00::5", "--out-dir", outDir}, ca...)...)
	if code != 0 || !strings.Contains(out, "added:    *.k8s.example, fd00::5") {
		t.Errorf("wildcard and IPv6: exit %d\n%s\n%s", code, out, errOut)
	}
}

// Key content pasted where a path goes ("$(cat ca-key.pem)") is refused as a usage error
// without being echoed, by regen and inspect alike.
func TestCertsPastedKey(t *testing.T) {
	k := newPKI(t)
	key := string(k.caCert.KeyPEM)
	keyLine := strings.Split(key, "\n")[1]
	long := strings.Repeat("A", 5000)
	for name, args := range map[string][]string{
		"regen CERT":      {"certs", "regen", key, "--ca", k.ca, "--ca-key", k.caKey},
		"regen --ca-key":  {"certs", "regen", k.apiserver, "--ca", k.ca, "--ca-key", key},
		"regen --out-dir": {"certs", "regen", k.apiserver, "--ca", k.ca, "--ca-key", k.caKey, "--out-dir", key},
		"inspect":         {"certs", "inspect", key},
		"inspect long":    {"certs", "inspect", long},
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := runCmd(t, args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d: %s", code, exitUsage, errOut)
			}
			if strings.Contains(errOut, "BEGIN") || strings.Contains(errOut, keyLine) || strings.Contains(errOut, long[:100]) || len(errOut) > 600 {
				t.Errorf("stderr echoes the argument (%d bytes):\n%.800s", len(errOut), errOut)
			}
			if !strings.Contains(errOut, "give the path of the file") {
				t.Errorf("stderr lacks the fix: %s", errOut)
			}
		})
	}
}
