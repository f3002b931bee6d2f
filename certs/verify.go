package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrNotChained is the error of VerifyChain: the certificate does not chain to the CA given.
var ErrNotChained = errors.New("does not chain to the CA")

// VerifyChain checks that c chains to one of roots through intermediates (the other CA
// certificates the operator gave), for any key usage, as crypto/x509 verifies it. It checks
// the chain, not the certificate's own expiry: an expired or not yet valid certificate is
// verified at the nearest moment of its validity (expiry is ExpiresWithin's question), while
// a CA that does not cover that moment still breaks the chain. The error wraps ErrNotChained
// with the reason.
func VerifyChain(c *x509.Certificate, roots, intermediates []*x509.Certificate, now time.Time) error {
	if len(roots) == 0 {
		return fmt.Errorf("%w: no CA certificate given", ErrNotChained)
	}
	at := now
	if at.After(c.NotAfter) {
		at = c.NotAfter
	}
	if at.Before(c.NotBefore) {
		at = c.NotBefore
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, i := range intermediates {
		opts.Intermediates.AddCert(i)
	}
	if _, err := c.Verify(opts); err != nil {
		return fmt.Errorf("%w: %s", ErrNotChained, chainReason(c, roots, at, err))
	}
	return nil
}

// chainReason says why verification failed in the operator's terms: who signed the
// certificate, against the CA given.
func chainReason(c *x509.Certificate, roots []*x509.Certificate, at time.Time, err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		for _, r := range roots {
			if bytes.Equal(r.RawSubject, c.RawIssuer) {
				return fmt.Sprintf("issued by a CA named %q, but not signed with the key of the CA given (another CA of the same name)", c.Issuer.CommonName)
			}
		}
		var names []string
		for _, r := range roots {
			names = append(names, strconv.Quote(r.Subject.CommonName))
		}
		return fmt.Sprintf("issued by %q, not by the CA given (%s)", c.Issuer.CommonName, strings.Join(names, ", "))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired && invalid.Cert != nil:
		v := invalid.Cert
		return fmt.Sprintf("%q in the chain is valid from %s to %s, not at %s", v.Subject.CommonName,
			v.NotBefore.UTC().Format(time.RFC3339), v.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	case errors.As(err, &invalid) && invalid.Reason == x509.NotAuthorizedToSign:
		return "a certificate of the chain is not a CA (" + strings.TrimPrefix(invalid.Error(), "x509: ") + ")"
	}
	return strings.TrimPrefix(err.Error(), "x509: ")
}

// ExpiresWithin says whether c has expired at now or expires within window after it.
func ExpiresWithin(notAfter, now time.Time, window time.Duration) bool {
	return !notAfter.After(now.Add(window))
}

// maxWindowDays keeps a window in days inside time.Duration (about 292 years).
const maxWindowDays = 100000

// ParseWindow reads a --fail-within value: a Go duration (720h, 90m) or a whole number of
// days with a d suffix (30d), as cron jobs say it.
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > maxWindowDays {
			return 0, fmt.Errorf("%q: want a whole number of days such as 30d, or a duration such as 720h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration such as 30d (days), 720h or 90m", s)
	}
	return d, nil
}
