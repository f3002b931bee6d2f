package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/cloudflare/cfssl/helpers"
)

// IsPrivateKeyPEM says whether data is a PEM file holding private keys and no certificate,
// as cfssljson's NAME-key.pem is.
func IsPrivateKeyPEM(data []byte) bool {
	rest, keys := data, 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return false
		}
		keys++
	}
	return keys > 0 && len(bytes.TrimSpace(rest)) == 0
}

// CheckKeyPair checks that keyPEM is the private key of cert. Errors never carry key
// material: keyPath and certLabel name the two files.
func CheckKeyPair(keyPEM []byte, keyPath string, cert *x509.Certificate, certPath string) error {
	key, err := helpers.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: private key cannot be parsed (not shown); copy it again from its source", keyPath)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("%s: %w %s (%s): the pair was mixed up or one of them was replaced; regenerate the pair or put back the matching file", keyPath, ErrKeyMismatch, certPath, cert.Subject.CommonName)
	}
	return nil
}

// CertPathOfKey is the certificate file of a cfssljson key file: NAME.pem for NAME-key.pem,
// or "" when the name does not follow that naming.
func CertPathOfKey(keyPath string) string {
	if base, ok := strings.CutSuffix(keyPath, "-key.pem"); ok && base != "" && !strings.HasSuffix(base, "/") {
		return base + ".pem"
	}
	return ""
}
