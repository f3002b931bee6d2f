package certs

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/csr"
)

// ErrHostNotInCert is returned when a host to remove is not among the certificate's SANs,
// most often a typo; the planner asks Matching first.
var ErrHostNotInCert = errors.New("not among the certificate's SANs")

// Request is the cfssl CSR request that regenerates a certificate equivalent to info: CN,
// names, hosts (DNS names, then IPs, then emails and URIs, each in the original order) and
// the key algorithm and size, which csr.ExtractCertificateRequest leaves at its defaults.
// A CA certificate gives a CA request (cfssl gencert -initca): its "ca" block carries the
// validity as the expiry and the path length constraint.
func Request(info Info) *csr.CertificateRequest {
	req := &csr.CertificateRequest{
		CN:           info.Subject.CommonName,
		Names:        names(info.Subject),
		Hosts:        Hosts(info),
		KeyRequest:   &csr.KeyRequest{A: info.KeyAlgorithm, S: info.KeySize},
		SerialNumber: info.Subject.SerialNumber,
	}
	if info.KeyAlgorithm == "ed25519" {
		req.KeyRequest.S = 0
	}
	if info.IsCA {
		req.CA = &csr.CAConfig{Expiry: expiryOf(info.NotAfter.Sub(info.NotBefore))}
		if info.PathLen != nil {
			req.CA.PathLength = *info.PathLen
			req.CA.PathLenZero = *info.PathLen == 0
		}
	}
	return req
}

// expiryOf writes a validity as cfssl's expiry strings are written: whole hours as "43800h".
func expiryOf(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// names pairs the subject's attribute lists into cfssl Names the way cfssl itself does
// (the i-th Country with the i-th Organization, and so on), so the subject comes back with
// every value in its order.
func names(n Name) []csr.Name {
	count := max(len(n.Country), len(n.Province), len(n.Locality), len(n.Organization), len(n.OrganizationalUnit))
	out := make([]csr.Name, count)
	at := func(s []string, i int) string {
		if i < len(s) {
			return s[i]
		}
		return ""
	}
	for i := range out {
		out[i] = csr.Name{
			C:  at(n.Country, i),
			ST: at(n.Province, i),
			L:  at(n.Locality, i),
			O:  at(n.Organization, i),
			OU: at(n.OrganizationalUnit, i),
		}
	}
	return out
}

// Hosts lists the certificate's SANs as cfssl "hosts": DNS names, IPs, emails, URIs.
func Hosts(info Info) []string {
	hosts := make([]string, 0, len(info.DNSNames)+len(info.IPAddresses)+len(info.EmailAddresses)+len(info.URIs))
	hosts = append(hosts, info.DNSNames...)
	hosts = append(hosts, info.IPAddresses...)
	hosts = append(hosts, info.EmailAddresses...)
	hosts = append(hosts, info.URIs...)
	return hosts
}

// HostsChange is a certificate's SAN list before and after a re-sign, for the plan.
type HostsChange struct {
	Before  []string `json:"before"`
	After   []string `json:"after"`
	Removed []string `json:"removed"`
	Added   []string `json:"added"`
}

// Changed says whether the SAN list changes.
func (c HostsChange) Changed() bool { return len(c.Removed) > 0 || len(c.Added) > 0 }

// PlanHosts computes the SAN list without remove and with add. Every host to remove must be
// in the certificate (ErrHostNotInCert otherwise); a host to add must pass ValidateHost
// (ErrBadHost otherwise) and is left alone when already there. IPs compare by value, DNS names without case.
func PlanHosts(info Info, remove, add []string) (HostsChange, error) {
	before := Hosts(info)
	change := HostsChange{Before: before, After: []string{}, Removed: []string{}, Added: []string{}}
	var missing []string
	for _, r := range remove {
		if indexHost(before, r) < 0 {
			missing = append(missing, clip(r))
		}
	}
	if len(missing) > 0 {
		return HostsChange{}, fmt.Errorf("certificate %s: cannot remove %s: %w; its SANs are: %s",
			certLabel(info), strings.Join(missing, ", "), ErrHostNotInCert, strings.Join(before, ", "))
	}
	for _, h := range before {
		if indexHost(remove, h) >= 0 {
			change.Removed = append(change.Removed, h)
			continue
		}
		change.After = append(change.After, h)
	}
	for _, a := range add {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if err := ValidateHost(a); err != nil {
			return HostsChange{}, fmt.Errorf("certificate %s: cannot add: %w", certLabel(info), err)
		}
		if indexHost(change.After, a) >= 0 {
			continue
		}
		change.After = append(change.After, a)
		change.Added = append(change.Added, a)
	}
	// Keep cfssl's host order (DNS, then IPs) for the added ones too.
	change.After = orderHosts(change.After)
	return change, nil
}

// Matching returns the hosts among candidates that the certificate names, in the
// certificate's own spelling; the planner uses it to pick the certificates to re-sign.
func Matching(info Info, candidates []string) []string {
	var out []string
	for _, h := range Hosts(info) {
		if indexHost(candidates, h) >= 0 {
			out = append(out, h)
		}
	}
	return out
}

func orderHosts(hosts []string) []string {
	var dns, ips, rest []string
	for _, h := range hosts {
		switch {
		case net.ParseIP(h) != nil:
			ips = append(ips, h)
		case strings.Contains(h, "@") || strings.Contains(h, "://"):
			rest = append(rest, h)
		default:
			dns = append(dns, h)
		}
	}
	out := append(append(dns, ips...), rest...)
	if out == nil {
		return []string{}
	}
	return out
}

func indexHost(list []string, h string) int {
	for i, x := range list {
		if sameHost(x, h) {
			return i
		}
	}
	return -1
}

func sameHost(a, b string) bool {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	ia, ib := net.ParseIP(a), net.ParseIP(b)
	if ia != nil || ib != nil {
		return ia != nil && ib != nil && ia.Equal(ib)
	}
	return strings.EqualFold(a, b)
}

func certLabel(info Info) string {
	label := info.Subject.CommonName
	if label == "" {
		label = "serial " + info.Serial
	}
	if info.Path != "" {
		label = info.Path + " (" + label + ")"
	}
	return label
}
