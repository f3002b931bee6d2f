package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"path/filepath"

	"github.com/mastershrink/mastershrink/testenv/testca"
)

// pki holds the paths of the files generated for one control plane.
type pki struct {
	CACert, ServingCert, ServingKey, SAPub, SAKey, AdminCert, AdminKey string
}

// generatePKI writes a CA, the apiserver's serving pair, the service-account key pair and an
// admin client pair (O=system:masters) into dir.
func generatePKI(dir string) (pki, error) {
	p := pki{
		CACert: filepath.Join(dir, "ca.crt"), ServingCert: filepath.Join(dir, "apiserver.crt"),
		ServingKey: filepath.Join(dir, "apiserver.key"), SAPub: filepath.Join(dir, "sa.pub"),
		SAKey: filepath.Join(dir, "sa.key"), AdminCert: filepath.Join(dir, "admin.crt"),
		AdminKey: filepath.Join(dir, "admin.key"),
	}
	ca, err := testca.New(pkix.Name{CommonName: "kubetest-ca"}, p.CACert)
	if err != nil {
		return p, err
	}
	if err := ca.Issue(testca.Leaf{
		Subject: pkix.Name{CommonName: "kube-apiserver"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		DNS: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}, p.ServingCert, p.ServingKey); err != nil {
		return p, err
	}
	if err := ca.Issue(testca.Leaf{
		Subject: pkix.Name{CommonName: "kubetest-admin", Organization: []string{"system:masters"}},
		Usages:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.AdminCert, p.AdminKey); err != nil {
		return p, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	if err := testca.WriteKey(p.SAKey, saKey); err != nil {
		return p, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return p, err
	}
	return p, testca.WritePEM(p.SAPub, "PUBLIC KEY", pub)
}
