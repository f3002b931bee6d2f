package etcdtest

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"path/filepath"

	"github.com/mastershrink/mastershrink/testenv/testca"
)

// TLSPaths are the client's TLS files of a test cluster.
type TLSPaths struct {
	CA   string
	Cert string
	Key  string
}

// pki is the material of one test cluster: a CA, one server certificate shared by every
// member (as seed 003's etcd.pem is), one peer certificate, and a client certificate.
type pki struct {
	dir                 string
	ca                  string
	serverCert, serverK string
	peerCert, peerK     string
	client              TLSPaths
}

func writePKI(dir string, ips []net.IP) (*pki, error) {
	p := &pki{dir: dir, ca: filepath.Join(dir, "ca.pem")}
	ca, err := testca.New(pkix.Name{CommonName: "etcdtest CA", Organization: []string{"mastershrink"}}, p.ca)
	if err != nil {
		return nil, err
	}
	hostIPs := append([]net.IP{net.ParseIP("127.0.0.1")}, ips...)
	issue := func(name, cn string, usages []x509.ExtKeyUsage, sans bool) (string, string, error) {
		leaf := testca.Leaf{Subject: pkix.Name{CommonName: cn, Organization: []string{"mastershrink"}}, Usages: usages}
		if sans {
			leaf.IPs, leaf.DNS = hostIPs, []string{"localhost"}
		}
		certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		return certPath, keyPath, ca.Issue(leaf, certPath, keyPath)
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if p.serverCert, p.serverK, err = issue("server", "etcd", both, true); err != nil {
		return nil, err
	}
	if p.peerCert, p.peerK, err = issue("peer", "etcd-peer", both, true); err != nil {
		return nil, err
	}
	p.client.CA = p.ca
	if p.client.Cert, p.client.Key, err = issue("client", "root", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false); err != nil {
		return nil, err
	}
	return p, nil
}
