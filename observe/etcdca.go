package observe

import (
	"bytes"
	"context"
	"crypto/x509"
	"path"
	"regexp"
	"strings"

	"github.com/mastershrink/mastershrink/certs"
	host "github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/host/machine"
	"github.com/mastershrink/mastershrink/inventory"
	"github.com/mastershrink/mastershrink/plan"
)

// perHostCertRE matches the per-host certificates kubespray's make-ssl-etcd.sh signs
// (member-<host>.pem, admin-<host>.pem, node-<host>.pem); their keys end in -key.pem.
var perHostCertRE = regexp.MustCompile(`^(member|admin|node)-.+\.pem$`)

// perHostCertRefs lists the per-host certificates in the folder of etcd's CA certificate on
// h. Kubespray syncs every host's to every etcd host, where no unit names most of them, yet
// each holds every etcd address: a shrink must re-sign the staying hosts' and report the
// leaving hosts'. They carry no "unit --flag" use; a unit that names one adds its own.
func perHostCertRefs(ctx context.Context, h host.Host, ih *inventory.Host) []certRef {
	if ih.Paths.EtcdCACert == "" {
		return nil
	}
	dir := path.Dir(ih.Paths.EtcdCACert)
	res, err := h.Run(ctx, certListCmd(ih))
	if err != nil {
		return nil
	}
	var refs []certRef
	for _, n := range strings.Split(string(res.Stdout), "\n") {
		n = strings.TrimSpace(n)
		if !perHostCertRE.MatchString(n) || strings.HasSuffix(n, "-key.pem") {
			continue
		}
		p := path.Join(dir, n)
		refs = append(refs, certRef{host: ih.Name, path: p, key: strings.TrimSuffix(p, ".pem") + "-key.pem"})
	}
	return refs
}

// certListCmd lists the folder of etcd's CA on a host, where perHostCertRefs looks for the
// host's own certificates.
func certListCmd(ih *inventory.Host) string {
	if ih.Paths.EtcdCACert == "" {
		return ""
	}
	return "ls -1 -- " + machine.Quote(path.Dir(ih.Paths.EtcdCACert)) + " 2>/dev/null || true"
}

// caKeyPath is where a CA's key sits beside its certificate, as cfssl, openssl scripts
// (kubespray's make-ssl-etcd.sh) and kubeadm name them: ca.pem's ca-key.pem, ca.crt's ca.key.
func caKeyPath(certPath string) string {
	if s, ok := strings.CutSuffix(certPath, ".crt"); ok {
		return s + ".key"
	}
	return strings.TrimSuffix(certPath, ".pem") + "-key.pem"
}

// findEtcdCA looks for etcd's own CA: the certificate the inventory names as etcd's CA
// (etcd_ca_cert) on the staying etcd hosts when it is not the cluster CA, with its key
// beside it (caKeyPath). nil when etcd trusts the cluster CA.
func findEtcdCA(ctx context.Context, c *Cluster, leaving map[string]bool, cluster plan.CA) *plan.CA {
	var clusterCert *x509.Certificate
	if h, err := c.Host(ctx, cluster.Host); err == nil {
		if data, err := h.ReadFile(ctx, cluster.CertPath); err == nil {
			clusterCert = firstCert(data)
		}
	}
	var ca *plan.CA
	var onLeaving []string
	for _, ih := range c.Inv.HostsWithRole(inventory.RoleEtcd) {
		h, err := c.Host(ctx, ih.Name)
		if err != nil || ih.Paths.EtcdCACert == "" {
			continue
		}
		keyPath := caKeyPath(ih.Paths.EtcdCACert)
		if leaving[ih.Name] {
			if _, err := h.Stat(ctx, keyPath); err == nil {
				onLeaving = append(onLeaving, ih.Name+":"+keyPath)
			}
			continue
		}
		data, err := h.ReadFile(ctx, ih.Paths.EtcdCACert)
		if err != nil {
			continue
		}
		cert := firstCert(data)
		if cert == nil || (clusterCert != nil && bytes.Equal(cert.Raw, clusterCert.Raw)) {
			return nil
		}
		cand := plan.CA{Host: ih.Name, CertPath: ih.Paths.EtcdCACert, KeyPath: keyPath}
		_, kerr := h.Stat(ctx, keyPath)
		cand.KeyPresent = kerr == nil
		if ca == nil || (cand.KeyPresent && !ca.KeyPresent) {
			ca = &cand
		}
	}
	if ca != nil {
		ca.KeyOnLeaving = onLeaving
	}
	return ca
}

func firstCert(data []byte) *x509.Certificate {
	_, cs, err := certs.ParsePEM(data, "")
	if err != nil || len(cs) == 0 {
		return nil
	}
	return cs[0]
}
