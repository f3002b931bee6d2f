package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// kubesprayOpenSSLConf is kubespray's roles/etcd/templates/openssl.conf.j2 rendered for the
// lab: the [ssl_client] extensions every etcd certificate is signed with, naming every etcd
// host by inventory name and address, localhost and 127.0.0.1.
func kubesprayOpenSSLConf(etcdHosts []Machine) string {
	var b strings.Builder
	b.WriteString(`[req]
req_extensions = v3_req
distinguished_name = req_distinguished_name

[req_distinguished_name]

[ v3_req ]
basicConstraints = CA:FALSE
keyUsage = nonRepudiation, digitalSignature, keyEncipherment
subjectAltName = @alt_names

[ ssl_client ]
extendedKeyUsage = clientAuth, serverAuth
basicConstraints = CA:FALSE
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
subjectAltName = @alt_names

[alt_names]
DNS.1 = localhost
`)
	for i, m := range etcdHosts {
		fmt.Fprintf(&b, "DNS.%d = %s\n", i+2, m.Name)
	}
	for i, m := range etcdHosts {
		fmt.Fprintf(&b, "IP.%d = %s\n", i+1, m.Address)
	}
	fmt.Fprintf(&b, "IP.%d = 127.0.0.1\n", len(etcdHosts)+1)
	return b.String()
}

// makeKubesprayEtcdPKI signs etcd's certificates in dir as kubespray's make-ssl-etcd.sh does
// with openssl: etcd's own CA (CN etcd-ca), member-<host> and admin-<host> for every etcd
// host, node-<host> for every host, each with the [ssl_client] extensions.
func makeKubesprayEtcdPKI(ctx context.Context, dir string, etcdHosts, hosts []Machine) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("kubespray etcd pki: %w", err)
	}
	conf := filepath.Join(dir, "openssl.conf")
	if err := os.WriteFile(conf, []byte(kubesprayOpenSSLConf(etcdHosts)), 0o644); err != nil {
		return fmt.Errorf("kubespray etcd pki: %w", err)
	}
	run := func(args ...string) error {
		c := exec.CommandContext(ctx, "openssl", args...)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("openssl %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("genrsa", "-out", "ca-key.pem", "2048"); err != nil {
		return err
	}
	if err := run("req", "-x509", "-new", "-nodes", "-key", "ca-key.pem", "-days", "10000", "-out", "ca.pem", "-subj", "/CN=etcd-ca"); err != nil {
		return err
	}
	sign := func(kind, host string) error {
		name := kind + "-" + host
		if err := run("genrsa", "-out", name+"-key.pem", "2048"); err != nil {
			return err
		}
		if err := run("req", "-new", "-key", name+"-key.pem", "-out", name+".csr", "-subj", "/CN=etcd-"+kind+"-"+host, "-config", conf); err != nil {
			return err
		}
		return run("x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
			"-out", name+".pem", "-days", "365", "-extensions", "ssl_client", "-extfile", conf)
	}
	for _, m := range etcdHosts {
		for _, kind := range []string{"member", "admin"} {
			if err := sign(kind, m.Name); err != nil {
				return err
			}
		}
	}
	for _, m := range hosts {
		if err := sign("node", m.Name); err != nil {
			return err
		}
	}
	return nil
}

// kubesprayEtcdFiles are the files of /etc/ssl/etcd/ssl on m, as kubespray syncs them: an etcd
// host gets the CA with its key and every host's certificates, another host the CA and its
// own node certificate.
func kubesprayEtcdFiles(dir string, etcdPKI map[string][]byte, m Machine, isEtcd bool) []file {
	var fs []file
	for name, data := range etcdPKI {
		if !strings.HasSuffix(name, ".pem") {
			continue
		}
		own := name == "ca.pem" || name == "node-"+m.Name+".pem" || name == "node-"+m.Name+"-key.pem"
		if isEtcd || own {
			fs = append(fs, file{Path: dir + "/" + name, Mode: 0o640, Data: data})
		}
	}
	return fs
}

// kubesprayEtcdEnv is kubespray's /etc/etcd.env (roles/etcd/templates/etcd.env.j2): every
// flag an unquoted ETCD_* variable, then etcdctl's settings with the host's admin
// certificate.
func kubesprayEtcdEnv(flags []string, certDir, host string) string {
	var b strings.Builder
	b.WriteString("# Environment file for etcd v3.5.21\n")
	for _, f := range flags {
		name, value, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !ok {
			value = "true"
		}
		fmt.Fprintf(&b, "ETCD_%s=%s\n", strings.ToUpper(strings.ReplaceAll(name, "-", "_")), value)
	}
	fmt.Fprintf(&b, "\n# CLI settings\nETCDCTL_ENDPOINTS=https://127.0.0.1:2379\nETCDCTL_CACERT=%s/ca.pem\nETCDCTL_KEY=%s/admin-%s-key.pem\nETCDCTL_CERT=%s/admin-%s.pem\n",
		certDir, certDir, host, certDir, host)
	return b.String()
}
