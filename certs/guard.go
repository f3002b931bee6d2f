package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/config"
)

// Refusals of a re-sign: each means the new certificate would break what the old one did.
var (
	// ErrCACertificate: re-signing a CA as a leaf makes every certificate it issued stop
	// verifying once the leaf replaces it.
	ErrCACertificate = errors.New("this is a CA certificate, not a leaf")
	// ErrSelfSigned: a self-signed certificate has no issuer to re-sign it with.
	ErrSelfSigned = errors.New("this certificate is self-signed")
	// ErrUsagesNotCovered: the profile would drop an extended key usage the old certificate
	// has (an etcd certificate without client auth breaks peer and apiserver connections).
	ErrUsagesNotCovered = errors.New("the signing profile lacks usages the certificate has")
	// ErrNoSANs: a server certificate without SANs verifies for no client.
	ErrNoSANs = errors.New("a server certificate needs at least one SAN")
	// ErrShorterValidity: the new certificate would expire before the old one.
	ErrShorterValidity = errors.New("the new certificate would expire before the old one")
	// ErrBadHost: a SAN to add that is neither an IP nor a valid DNS name.
	ErrBadHost = errors.New("not a valid IP address or DNS name")
)

// validitySlack is how much earlier than the old certificate the new one may end without
// counting as shorter: cfssl rounds and backdates start times by minutes, so a re-sign with
// the profile that made the certificate can end a little before it.
const validitySlack = time.Hour

// CheckResignable says whether Resign can re-sign old with ca and the named ca-config profile
// ("" picks it as Resign does) without breaking what old does today: old is a leaf, not
// self-signed, and issued by this CA; the CA key matches the CA certificate; the profile
// exists, is usable, and its extended key usages cover old's; and the new certificate would
// not expire before old (or the CA, whichever ends first). It signs nothing and is pure, so
// the planner can refuse before any irreversible step. Every problem found is reported; each
// wraps its sentinel (ErrNotSignedByCA, ErrCAKeyMismatch, ErrUnknownProfile, ErrBadProfile,
// ErrUsagesNotCovered, ErrCACertificate, ErrSelfSigned, ErrShorterValidity).
func CheckResignable(old *x509.Certificate, ca CA, profile string) error {
	_, err := checkResignable(old, ca, profile, false, time.Now())
	return err
}

// CheckResignablePEM is CheckResignable for the first certificate of a PEM file, as the
// observer reads it from a host; path names it in errors.
func CheckResignablePEM(certPEM []byte, path string, ca CA, profile string) error {
	certs, err := parseCertificates(certPEM, path)
	if err != nil {
		return err
	}
	if err := CheckResignable(certs[0], ca, profile); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// resignCheck is what checkResignable found that the signing needs.
type resignCheck struct {
	profileName         string
	profile             *config.SigningProfile
	notBefore, notAfter time.Time
	warnings            []string
}

func checkResignable(old *x509.Certificate, ca CA, profile string, allowShorter bool, now time.Time) (resignCheck, error) {
	if profile == "" {
		ca = ca.forCert(old)
	}
	label := certLabel(infoAt(old, now))
	if ca.Cert == nil || ca.Key == nil {
		return resignCheck{}, fmt.Errorf("certificate %s: re-sign: no CA loaded", label)
	}
	var problems []error
	add := func(err error) { problems = append(problems, err) }

	// CheckSignatureFrom(old) would refuse a leaf as its own parent, so the signature is
	// checked with old's own key directly.
	selfSigned := bytes.Equal(old.RawIssuer, old.RawSubject) &&
		old.CheckSignature(old.SignatureAlgorithm, old.RawTBSCertificate, old.Signature) == nil
	switch {
	case old.IsCA:
		add(fmt.Errorf("%w (basic constraints CA:TRUE): re-signing it as a leaf would break every certificate it issued; re-sign the leaf certificates it signed instead", ErrCACertificate))
	case selfSigned:
		add(fmt.Errorf("%w: no CA issued it, so there is none to re-sign it with; replace it by hand with one issued by the cluster CA", ErrSelfSigned))
	}
	if !publicKeysEqual(ca.Cert.PublicKey, ca.Key.Public()) {
		add(fmt.Errorf("CA %s: %w; give the key file from the same pair (ca.pem with ca-key.pem)", shortValue(ca.Cert.Subject.CommonName), ErrCAKeyMismatch))
	}
	if !selfSigned {
		if err := old.CheckSignatureFrom(ca.Cert); err != nil {
			add(fmt.Errorf("%w: it was issued by %s (authority key id %x), the CA given is %s (subject key id %x); re-signing with another CA would replace it with one its clients do not trust, give the CA that issued it",
				ErrNotSignedByCA, shortValue(old.Issuer.CommonName), old.AuthorityKeyId, shortValue(ca.Cert.Subject.CommonName), ca.Cert.SubjectKeyId))
		}
	}
	var rc resignCheck
	name, p, err := ca.profile(profile)
	if err != nil {
		add(err)
	} else {
		rc.profileName, rc.profile = name, p
		_, eku, _ := p.Usages()
		if missing := missingExtKeyUsages(old.ExtKeyUsage, eku); len(missing) > 0 {
			add(fmt.Errorf("%w: profile %s gives %s, the certificate also has %s; signing it would break the connections that use them. Use --profile with a profile that has them, or add them to the ca-config",
				ErrUsagesNotCovered, profileLabel(name), orNone(ekuNames(eku)), strings.Join(ekuNames(missing), ", ")))
		}
		nb, na, warnings, err := validity(ca, p, now)
		if err != nil {
			add(err)
		} else {
			rc.notBefore, rc.notAfter, rc.warnings = nb, na, warnings
			// Validity past the CA's end is worth nothing: chains stop verifying then.
			oldEnd := old.NotAfter
			if ca.Cert.NotAfter.Before(oldEnd) {
				oldEnd = ca.Cert.NotAfter
			}
			if na.Add(validitySlack).Before(oldEnd) {
				msg := fmt.Sprintf("profile %s gives until %s, the certificate is valid until %s", profileLabel(name),
					na.UTC().Format(time.RFC3339), oldEnd.UTC().Format(time.RFC3339))
				if allowShorter {
					rc.warnings = append(rc.warnings, "shorter validity: "+msg)
				} else {
					hint := "use a profile with a longer expiry"
					if ca.Config == nil || ca.ownUsages {
						hint = "give the cluster's ca-config.json (without one, cfssl's default profile signs for one year)"
					}
					add(fmt.Errorf("%w: %s; %s, or allow it explicitly (--allow-shorter-validity)", ErrShorterValidity, msg, hint))
				}
			}
		}
	}
	if len(problems) > 0 {
		return resignCheck{}, &checkError{label: label, errs: problems}
	}
	return rc, nil
}

// checkError lists every problem of one certificate; errors.Is finds each sentinel.
type checkError struct {
	label string
	errs  []error
}

func (e *checkError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("certificate %s: %s", e.label, strings.Join(msgs, "; "))
}

func (e *checkError) Unwrap() []error { return e.errs }

// missingExtKeyUsages lists the usages of have that give lacks; "any" in give covers all.
func missingExtKeyUsages(have, give []x509.ExtKeyUsage) []x509.ExtKeyUsage {
	if slices.Contains(give, x509.ExtKeyUsageAny) {
		return nil
	}
	var missing []x509.ExtKeyUsage
	for _, u := range have {
		if !slices.Contains(give, u) && !slices.Contains(missing, u) {
			missing = append(missing, u)
		}
	}
	return missing
}

// isServerCert says whether a certificate serves TLS: it names server auth (or any usage), or
// names no extended usage at all, which TLS clients accept for a server.
func isServerCert(c *x509.Certificate) bool {
	return len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 ||
		slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// ValidateHost checks a SAN to add: an IP address, an RFC 1123 DNS name (a wildcard "*" only
// as the whole first label), an e-mail address or a URI with a scheme and host. The error
// shows at most a short prefix of the value.
func ValidateHost(h string) error {
	if h == "" {
		return fmt.Errorf("empty SAN: %w", ErrBadHost)
	}
	if net.ParseIP(h) != nil {
		return nil
	}
	if strings.Contains(h, "://") {
		u, err := url.Parse(h)
		if err == nil && u.Scheme != "" && u.Host != "" && !strings.ContainsAny(h, " \t\n") {
			return nil
		}
		return fmt.Errorf("SAN %s: %w: not a valid URI", shortValue(h), ErrBadHost)
	}
	if strings.Contains(h, "@") {
		a, err := mail.ParseAddress(h)
		if err == nil && a.Address == h && a.Name == "" {
			return nil
		}
		return fmt.Errorf("SAN %s: %w: not a valid e-mail address", shortValue(h), ErrBadHost)
	}
	if reason := dnsNameProblem(h); reason != "" {
		return fmt.Errorf("SAN %s: %w: %s; give an IP address or a DNS name of letters, digits, hyphens and dots (\"*.\" allowed first)", shortValue(h), ErrBadHost, reason)
	}
	return nil
}

// dnsNameProblem says what makes name not an RFC 1123 host name, "" when it is one.
func dnsNameProblem(name string) string {
	if len(name) > 253 {
		return "longer than 253 characters"
	}
	labels := strings.Split(name, ".")
	numeric := true
	for i, l := range labels {
		if l == "*" && i == 0 {
			if len(labels) < 2 {
				return "a wildcard needs a domain after it"
			}
			continue
		}
		if l == "" {
			return "empty label (two dots, or a dot at an end)"
		}
		if len(l) > 63 {
			return "a label longer than 63 characters"
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "a label starts or ends with a hyphen"
		}
		for _, r := range l {
			switch {
			case r >= '0' && r <= '9':
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-':
				numeric = false
			case r == '*':
				return "a wildcard is allowed only as the whole first label"
			default:
				return fmt.Sprintf("character %q is not allowed", r)
			}
		}
	}
	if numeric {
		// 172.72.0.999 is a mistyped IP, not a name anyone means.
		return "digits and dots only, but not a valid IP address"
	}
	return ""
}

// shortValue quotes at most a short prefix of a value the operator gave, and never a PEM
// block: error messages end up in terminals, CI logs and tickets.
func shortValue(s string) string {
	if strings.Contains(s, "-----BEGIN") || strings.Contains(s, "PRIVATE KEY") {
		return "(a PEM block, not shown)"
	}
	const max = 40
	if r := []rune(s); len(r) > max {
		return fmt.Sprintf("%q... (%d characters)", string(r[:max]), len(r))
	}
	return fmt.Sprintf("%q", s)
}

// clip is shortValue without quotes for values that are already short and plain, so the
// common message (an IP) reads naturally.
func clip(s string) string {
	if len(s) <= 40 && !strings.ContainsAny(s, "\n\r\"") && !strings.Contains(s, "-----BEGIN") {
		return s
	}
	return shortValue(s)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
