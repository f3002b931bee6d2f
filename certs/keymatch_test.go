package certs

import (
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/certs/certstest"
)

func TestCheckKeyPair(t *testing.T) {
	ca := certstest.NewCA(t, "kubernetes", "rsa", 2048)
	certA, keyA := certstest.Gencert(t, ca, "kubernetes", "a", []string{"127.0.0.1"}, "ecdsa", 256)
	_, keyB := certstest.Gencert(t, ca, "kubernetes", "b", []string{"127.0.0.1"}, "ecdsa", 256)
	_, parsed, err := ParsePEM(certA, "a.pem")
	if err != nil {
		t.Fatal(err)
	}
	if !IsPrivateKeyPEM(keyA) || IsPrivateKeyPEM(certA) || IsPrivateKeyPEM(append(append([]byte{}, keyA...), certA...)) {
		t.Error("IsPrivateKeyPEM misjudges a key, a certificate or a key with a certificate")
	}
	if err := CheckKeyPair(keyA, "a-key.pem", parsed[0], "a.pem"); err != nil {
		t.Errorf("matching pair: %v", err)
	}
	err = CheckKeyPair(keyB, "a-key.pem", parsed[0], "a.pem")
	if err == nil || !strings.Contains(err.Error(), "does not match") || strings.Contains(err.Error(), "PRIVATE") {
		t.Errorf("mismatched pair: %v", err)
	}
	if got := CertPathOfKey("/ssl/etcd-key.pem"); got != "/ssl/etcd.pem" {
		t.Errorf("CertPathOfKey = %q", got)
	}
	if got := CertPathOfKey("/ssl/-key.pem"); got != "" {
		t.Errorf("CertPathOfKey(-key.pem) = %q", got)
	}
}
