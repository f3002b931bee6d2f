package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
