package certs

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
)

// ErrVerify marks a new certificate that failed its checks; nothing built on it may be used.
var ErrVerify = errors.New("new certificate failed verification")

// ErrKeyMismatch is a private key that does not belong to the certificate.
var ErrKeyMismatch = errors.New("the private key does not match the certificate")

// ResignOptions say how Resign changes the certificate.
type ResignOptions struct {
	// RemoveHosts are SANs to drop; each must be in the certificate.
	RemoveHosts []string
	// AddHosts are SANs to add (already present ones are ignored).
	AddHosts []string
	// ReuseKey keeps the certificate's key pair: ExistingKeyPEM must be its private key.
	ReuseKey       bool
	ExistingKeyPEM []byte
	// Profile is the ca-config profile; empty means "kubernetes" when the ca-config has it,
	// else the default profile.
	Profile string
	// AllowShorterValidity lets the new certificate end before the old one (or the CA, when
	// that ends first); without it such a re-sign is refused with ErrShorterValidity.
	AllowShorterValidity bool
}

// Result is a new certificate, its key and CSR, all PEM, and its facts.
type Result struct {
	CertPEM []byte
	// KeyPEM is the new private key (or ExistingKeyPEM when the key is reused).
	KeyPEM []byte
	CSRPEM []byte
	Info   Info
	// Profile is the ca-config profile used, empty for the default.
	Profile string
	Hosts   HostsChange
	// Warnings are differences the operator should know of (validity capped at the CA's,
	// key usages that differ from the old certificate's, usages added by the profile).
	Warnings []string
}

// Resign issues a new certificate like cert (same subject, key type and size, usages of the
// profile) with the SANs changed as opts say, signed by ca, which must be the CA that
// signed cert. It refuses what CheckResignable refuses (a CA or self-signed certificate, a
// profile whose extended usages do not cover cert's, a shorter validity unless allowed),
// SANs to add that are not hosts, and a server certificate left without SANs. The result is
// verified before it is returned: chain to the CA, key pair, SANs exactly as planned,
// validity inside the CA's, usages as the profile says.
func Resign(cert *x509.Certificate, ca CA, opts ResignOptions) (Result, error) {
	return resignAt(cert, ca, opts, time.Now())
}

func resignAt(cert *x509.Certificate, ca CA, opts ResignOptions, now time.Time) (Result, error) {
	if opts.Profile == "" {
		ca = ca.forCert(cert)
	}
	info := infoAt(cert, now)
	label := certLabel(info)
	// The SAN change first: a mistyped host is the likeliest mistake, and the cheapest fix.
	change, err := PlanHosts(info, opts.RemoveHosts, opts.AddHosts)
	if err != nil {
		return Result{}, err
	}
	check, err := checkResignable(cert, ca, opts.Profile, opts.AllowShorterValidity, now)
	if err != nil {
		return Result{}, err
	}
	profileName, profile := check.profileName, check.profile
	notBefore, notAfter, warnings := check.notBefore, check.notAfter, check.warnings
	if len(change.After) == 0 && isServerCert(cert) {
		return Result{}, fmt.Errorf("certificate %s: %w: removing %s leaves none, and no client could verify it; keep one of them or --add the names it is reached by",
			label, ErrNoSANs, strings.Join(change.Removed, ", "))
	}

	req := Request(info)
	req.Hosts = change.After
	var csrPEM, keyPEM []byte
	if opts.ReuseKey {
		if len(opts.ExistingKeyPEM) == 0 {
			return Result{}, fmt.Errorf("certificate %s: reusing the key needs the existing private key", label)
		}
		key, err := helpers.ParsePrivateKeyPEM(opts.ExistingKeyPEM)
		if err != nil {
			return Result{}, fmt.Errorf("certificate %s: existing key: %w", label, err)
		}
		if !publicKeysEqual(cert.PublicKey, key.Public()) {
			return Result{}, fmt.Errorf("certificate %s: existing key: %w; give the key of the same pair (NAME-key.pem next to NAME.pem)", label, ErrKeyMismatch)
		}
		csrPEM, err = csr.Generate(key, req)
		if err != nil {
			return Result{}, fmt.Errorf("certificate %s: make CSR: %w", label, err)
		}
		keyPEM = opts.ExistingKeyPEM
	} else {
		csrPEM, keyPEM, err = csr.ParseRequest(req)
		if err != nil {
			return Result{}, fmt.Errorf("certificate %s: make key (%s %d) and CSR: %w", label, info.KeyAlgorithm, info.KeySize, err)
		}
	}

	var policy *config.Signing
	if ca.Config != nil {
		policy = ca.Config.Signing
	}
	s, err := local.NewSigner(ca.Key, ca.Cert, signer.DefaultSigAlgo(ca.Key), policy)
	if err != nil {
		return Result{}, fmt.Errorf("certificate %s: CA signer: %w", label, err)
	}
	hosts := change.After
	if hosts == nil {
		hosts = []string{} // nil would let the CSR's hosts through
	}
	certPEM, err := s.Sign(signer.SignRequest{
		Hosts:     hosts,
		Request:   string(csrPEM),
		Profile:   profileName,
		NotBefore: notBefore,
		NotAfter:  notAfter,
	})
	if err != nil {
		return Result{}, fmt.Errorf("certificate %s: sign with profile %s: %w", label, profileLabel(profileName), err)
	}

	if err := Verify(certPEM, keyPEM, ca, change.After); err != nil {
		return Result{}, fmt.Errorf("certificate %s: %w", label, err)
	}
	newCert, err := helpers.ParseCertificatePEM(certPEM)
	if err != nil {
		return Result{}, fmt.Errorf("certificate %s: parse new certificate: %w", label, err)
	}
	newInfo := infoAt(newCert, now)
	var problems []string
	if a, b := info.Subject, newInfo.Subject; newCert.Subject.String() != cert.Subject.String() {
		problems = append(problems, fmt.Sprintf("subject: want %q, got %q (%v vs %v)", cert.Subject, newCert.Subject, a, b))
	}
	if info.KeyAlgorithm != newInfo.KeyAlgorithm || info.KeySize != newInfo.KeySize || info.Curve != newInfo.Curve {
		problems = append(problems, fmt.Sprintf("key: want %s %d, got %s %d", info.KeyAlgorithm, info.KeySize, newInfo.KeyAlgorithm, newInfo.KeySize))
	}
	wantKU, wantEKU, _ := profile.Usages()
	if newCert.KeyUsage != wantKU || !slices.Equal(newCert.ExtKeyUsage, wantEKU) {
		problems = append(problems, fmt.Sprintf("usages: the profile says %s, the certificate has %s",
			strings.Join(append(keyUsageNames(wantKU), ekuNames(wantEKU)...), ", "),
			strings.Join(append(newInfo.KeyUsages, newInfo.ExtKeyUsages...), ", ")))
	}
	if len(problems) > 0 {
		return Result{}, fmt.Errorf("certificate %s: %w: %s", label, ErrVerify, strings.Join(problems, "; "))
	}
	if !sameSet(info.KeyUsages, newInfo.KeyUsages) || !sameSet(info.ExtKeyUsages, newInfo.ExtKeyUsages) {
		warnings = append(warnings, fmt.Sprintf("usages differ from the old certificate's: old %s, new %s (profile %s); use --profile to pick the profile it was made with",
			strings.Join(append(info.KeyUsages, info.ExtKeyUsages...), ", "),
			strings.Join(append(newInfo.KeyUsages, newInfo.ExtKeyUsages...), ", "), profileLabel(profileName)))
	}
	if info.IsCA != newInfo.IsCA {
		warnings = append(warnings, fmt.Sprintf("the old certificate had CA:%t, the new one CA:%t", info.IsCA, newInfo.IsCA))
	}
	return Result{
		CertPEM:  certPEM,
		KeyPEM:   keyPEM,
		CSRPEM:   csrPEM,
		Info:     newInfo,
		Profile:  profileName,
		Hosts:    change,
		Warnings: warnings,
	}, nil
}

// validity picks the new certificate's dates as cfssl would (backdated, the profile's
// expiry), but inside the CA's own validity, which cfssl does not enforce.
func validity(ca CA, p *config.SigningProfile, now time.Time) (notBefore, notAfter time.Time, warnings []string, err error) {
	if !now.Before(ca.Cert.NotAfter) {
		return time.Time{}, time.Time{}, nil, fmt.Errorf("the CA %q expired on %s; renew the CA first", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	backdate := p.Backdate
	if backdate == 0 {
		backdate = 5 * time.Minute
	}
	notBefore = now.Round(time.Minute).Add(-backdate)
	if !p.NotBefore.IsZero() {
		notBefore = p.NotBefore
	}
	if notBefore.Before(ca.Cert.NotBefore) {
		notBefore = ca.Cert.NotBefore
	}
	expiry := p.Expiry
	if expiry == 0 {
		expiry = config.DefaultConfig().Expiry
	}
	notAfter = notBefore.Add(expiry)
	if !p.NotAfter.IsZero() {
		notAfter = p.NotAfter
	}
	if notAfter.After(ca.Cert.NotAfter) {
		warnings = append(warnings, fmt.Sprintf("validity capped at the CA's end %s (the profile asks for %s)",
			ca.Cert.NotAfter.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339)))
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return time.Time{}, time.Time{}, nil, fmt.Errorf("the profile's validity ends %s, in the past", notAfter.UTC().Format(time.RFC3339))
	}
	return notBefore.UTC(), notAfter.UTC(), warnings, nil
}

// Verify checks a certificate and key before they are installed: the key pair matches, the
// certificate chains to the CA, its SANs are exactly wantHosts (any order), and its validity
// lies inside the CA's and includes now. Every problem found is listed.
func Verify(certPEM, keyPEM []byte, ca CA, wantHosts []string) error {
	return verifyAt(certPEM, keyPEM, ca, wantHosts, time.Now())
}

func verifyAt(certPEM, keyPEM []byte, ca CA, wantHosts []string, now time.Time) error {
	certs, err := parseCertificates(certPEM, "new certificate")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVerify, err)
	}
	cert := certs[0]
	var problems []string
	key, err := helpers.ParsePrivateKeyPEM(keyPEM)
	switch {
	case err != nil:
		problems = append(problems, fmt.Sprintf("key: cannot parse: %v", err))
	case !publicKeysEqual(cert.PublicKey, key.Public()):
		problems = append(problems, ErrKeyMismatch.Error())
	}
	if ca.Cert == nil {
		problems = append(problems, "no CA to verify the chain against")
	} else {
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		at := now
		if at.Before(cert.NotBefore) {
			at = cert.NotBefore
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			problems = append(problems, fmt.Sprintf("chain to CA %q: %v", ca.Cert.Subject.CommonName, err))
		}
		if cert.NotBefore.Before(ca.Cert.NotBefore) {
			problems = append(problems, fmt.Sprintf("valid from %s, before the CA (%s)", cert.NotBefore.UTC().Format(time.RFC3339), ca.Cert.NotBefore.UTC().Format(time.RFC3339)))
		}
		if cert.NotAfter.After(ca.Cert.NotAfter) {
			problems = append(problems, fmt.Sprintf("valid until %s, after the CA (%s)", cert.NotAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	if now.Before(cert.NotBefore.Add(-10*time.Minute)) || now.After(cert.NotAfter) {
		problems = append(problems, fmt.Sprintf("not valid now (%s to %s)", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	got := Hosts(infoAt(cert, now))
	if missing, extra := hostDiff(wantHosts, got); len(missing) > 0 || len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("SANs: missing %q, unexpected %q", missing, extra))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrVerify, strings.Join(problems, "; "))
	}
	return nil
}

// hostDiff compares SAN lists as multisets, IPs by value.
func hostDiff(want, got []string) (missing, extra []string) {
	rest := append([]string(nil), got...)
	for _, w := range want {
		if i := indexHost(rest, w); i >= 0 {
			rest = append(rest[:i], rest[i+1:]...)
		} else {
			missing = append(missing, w)
		}
	}
	return missing, rest
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func ekuNames(ekus []x509.ExtKeyUsage) []string {
	return extKeyUsageNames(&x509.Certificate{ExtKeyUsage: ekus})
}

// KeyMatches says whether keyPEM is the private key of the certificate in certPEM.
func KeyMatches(certPEM, keyPEM []byte) (bool, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return false, ErrNoCertificate
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false, err
	}
	key, err := helpers.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return false, err
	}
	return publicKeysEqual(cert.PublicKey, key.Public()), nil
}
