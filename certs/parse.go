package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Errors of ParsePEM, each wrapped with the file's name and a hint.
var (
	ErrNoCertificate    = errors.New("no certificate found")
	ErrPrivateKeyGiven  = errors.New("this is a private key, not a certificate")
	ErrTruncatedPEM     = errors.New("truncated or damaged PEM block")
	ErrBadCertificate   = errors.New("certificate cannot be parsed")
	ErrCertificateGiven = errors.New("this is a certificate, not a private key")
)

// Name is a certificate subject or issuer, in the fields a cfssl CSR request can carry.
type Name struct {
	CommonName         string   `json:"common_name"`
	Country            []string `json:"country,omitempty"`
	Province           []string `json:"province,omitempty"`
	Locality           []string `json:"locality,omitempty"`
	Organization       []string `json:"organization,omitempty"`
	OrganizationalUnit []string `json:"organizational_unit,omitempty"`
	// SerialNumber is the subject's serialNumber attribute (rare), not the certificate serial.
	SerialNumber string `json:"serial_number,omitempty"`
}

// Info is the facts of one certificate; it is what `certs inspect -o json` prints.
type Info struct {
	Path string `json:"path"`
	// Index is the certificate's position in its file (0 for the first of a bundle).
	Index              int       `json:"index"`
	Subject            Name      `json:"subject"`
	Issuer             Name      `json:"issuer"`
	Serial             string    `json:"serial"`
	DNSNames           []string  `json:"dns_names"`
	IPAddresses        []string  `json:"ip_addresses"`
	URIs               []string  `json:"uris"`
	EmailAddresses     []string  `json:"email_addresses"`
	KeyAlgorithm       string    `json:"key_algorithm"`
	KeySize            int       `json:"key_size"`
	Curve              string    `json:"curve,omitempty"`
	SignatureAlgorithm string    `json:"signature_algorithm"`
	KeyUsages          []string  `json:"key_usages"`
	ExtKeyUsages       []string  `json:"ext_key_usages"`
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	DaysLeft           int       `json:"days_left"`
	IsCA               bool      `json:"is_ca"`
	// PathLen is a CA's path length constraint (0 with CA:TRUE, pathlen:0); nil when it has
	// none or is no CA.
	PathLen        *int   `json:"path_len,omitempty"`
	SubjectKeyID   string `json:"subject_key_id"`
	AuthorityKeyID string `json:"authority_key_id"`
}

// ParsePEM reads every certificate of a PEM file (one certificate, a chain or a bundle; DER is
// accepted too). Blocks that are not certificates are skipped, but a file holding only a
// private key, nothing at all, or a cut-off block is an error naming path.
func ParsePEM(data []byte, path string) ([]Info, []*x509.Certificate, error) {
	return parsePEMAt(data, path, time.Now())
}

func parsePEMAt(data []byte, path string, now time.Time) ([]Info, []*x509.Certificate, error) {
	certs, err := parseCertificates(data, path)
	if err != nil {
		return nil, nil, err
	}
	infos := make([]Info, len(certs))
	for i, c := range certs {
		infos[i] = infoAt(c, now)
		infos[i].Path = path
		infos[i].Index = i
	}
	return infos, certs, nil
}

func parseCertificates(data []byte, path string) ([]*x509.Certificate, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: %w: the file is empty; give the certificate's PEM file", path, ErrNoCertificate)
	}
	if !bytes.Contains(data, []byte("-----BEGIN ")) {
		// A DER certificate starts with an ASN.1 SEQUENCE; anything else is not one.
		if trimmed[0] == 0x30 {
			if certs, err := x509.ParseCertificates(data); err == nil && len(certs) > 0 {
				return certs, nil
			}
		}
		return nil, fmt.Errorf("%s: %w: the file holds no PEM block (\"-----BEGIN CERTIFICATE-----\"); give the certificate's PEM file", path, ErrNoCertificate)
	}

	var (
		certs    []*x509.Certificate
		keyTypes []string
		other    []string
		begins   = bytes.Count(data, []byte("-----BEGIN "))
		blocks   int
		rest     = data
	)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		blocks++
		switch {
		case block.Type == "CERTIFICATE" || block.Type == "X509 CERTIFICATE" || block.Type == "TRUSTED CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: certificate #%d: %w: %v; the file may be damaged, compare it with the copy on another host", path, len(certs)+1, ErrBadCertificate, err)
			}
			certs = append(certs, c)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			keyTypes = append(keyTypes, block.Type)
		default:
			other = append(other, block.Type)
		}
	}
	if blocks < begins {
		line := truncatedLine(data, rest)
		return nil, fmt.Errorf("%s: %w: the block at line %d has no matching END line or its base64 is damaged; copy the file again from its source", path, ErrTruncatedPEM, line)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	if len(keyTypes) > 0 {
		return nil, fmt.Errorf("%s: %w (%s); give the certificate, in cfssljson naming NAME.pem next to NAME-key.pem", path, ErrPrivateKeyGiven, keyTypes[0])
	}
	return nil, fmt.Errorf("%s: %w: the file holds only %s; give the certificate's PEM file", path, ErrNoCertificate, strings.Join(other, ", "))
}

// truncatedLine finds the line of the first BEGIN that pem.Decode did not consume.
func truncatedLine(data, rest []byte) int {
	offset := len(data) - len(rest)
	if i := bytes.Index(rest, []byte("-----BEGIN ")); i >= 0 {
		offset += i
	}
	return bytes.Count(data[:offset], []byte("\n")) + 1
}

// InfoOf returns the facts of a parsed certificate (Path and Index left empty).
func InfoOf(c *x509.Certificate) Info { return infoAt(c, time.Now()) }

func infoAt(c *x509.Certificate, now time.Time) Info {
	info := Info{
		Subject:            nameOf(c.Subject),
		Issuer:             nameOf(c.Issuer),
		Serial:             fmt.Sprintf("%x", c.SerialNumber),
		DNSNames:           nonNil(c.DNSNames),
		IPAddresses:        []string{},
		URIs:               []string{},
		EmailAddresses:     nonNil(c.EmailAddresses),
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		KeyUsages:          keyUsageNames(c.KeyUsage),
		ExtKeyUsages:       extKeyUsageNames(c),
		NotBefore:          c.NotBefore.UTC(),
		NotAfter:           c.NotAfter.UTC(),
		DaysLeft:           daysLeft(c.NotAfter, now),
		IsCA:               c.IsCA,
		SubjectKeyID:       hex.EncodeToString(c.SubjectKeyId),
		AuthorityKeyID:     hex.EncodeToString(c.AuthorityKeyId),
	}
	if c.IsCA && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
		n := max(c.MaxPathLen, 0)
		info.PathLen = &n
	}
	for _, ip := range c.IPAddresses {
		info.IPAddresses = append(info.IPAddresses, ip.String())
	}
	for _, u := range c.URIs {
		info.URIs = append(info.URIs, u.String())
	}
	info.KeyAlgorithm, info.KeySize, info.Curve = keyFacts(c.PublicKey)
	return info
}

func daysLeft(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return append([]string(nil), s...)
}

func nameOf(n pkix.Name) Name {
	return Name{
		CommonName:         n.CommonName,
		Country:            n.Country,
		Province:           n.Province,
		Locality:           n.Locality,
		Organization:       n.Organization,
		OrganizationalUnit: n.OrganizationalUnit,
		SerialNumber:       n.SerialNumber,
	}
}

// keyFacts names a public key the way a cfssl key request does: algo, size (bits, or the
// curve's size) and curve.
func keyFacts(pub any) (algo string, size int, curve string) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "rsa", k.N.BitLen(), ""
	case *ecdsa.PublicKey:
		return "ecdsa", k.Curve.Params().BitSize, k.Curve.Params().Name
	case ed25519.PublicKey:
		return "ed25519", 256, "Ed25519"
	default:
		return fmt.Sprintf("unknown (%T)", pub), 0, ""
	}
}

// keyUsageOrder lists key usages in bit order with cfssl's names ("signing" is cfssl's name
// for digital signature, the one its ca-config files use).
var keyUsageOrder = []struct {
	bit  x509.KeyUsage
	name string
}{
	{x509.KeyUsageDigitalSignature, "signing"},
	{x509.KeyUsageContentCommitment, "content commitment"},
	{x509.KeyUsageKeyEncipherment, "key encipherment"},
	{x509.KeyUsageDataEncipherment, "data encipherment"},
	{x509.KeyUsageKeyAgreement, "key agreement"},
	{x509.KeyUsageCertSign, "cert sign"},
	{x509.KeyUsageCRLSign, "crl sign"},
	{x509.KeyUsageEncipherOnly, "encipher only"},
	{x509.KeyUsageDecipherOnly, "decipher only"},
}

var extKeyUsageNamesByValue = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:                        "any",
	x509.ExtKeyUsageServerAuth:                 "server auth",
	x509.ExtKeyUsageClientAuth:                 "client auth",
	x509.ExtKeyUsageCodeSigning:                "code signing",
	x509.ExtKeyUsageEmailProtection:            "email protection",
	x509.ExtKeyUsageIPSECEndSystem:             "ipsec end system",
	x509.ExtKeyUsageIPSECTunnel:                "ipsec tunnel",
	x509.ExtKeyUsageIPSECUser:                  "ipsec user",
	x509.ExtKeyUsageTimeStamping:               "timestamping",
	x509.ExtKeyUsageOCSPSigning:                "ocsp signing",
	x509.ExtKeyUsageMicrosoftServerGatedCrypto: "microsoft sgc",
	x509.ExtKeyUsageNetscapeServerGatedCrypto:  "netscape sgc",
}

func keyUsageNames(ku x509.KeyUsage) []string {
	names := []string{}
	for _, u := range keyUsageOrder {
		if ku&u.bit != 0 {
			names = append(names, u.name)
		}
	}
	return names
}

func extKeyUsageNames(c *x509.Certificate) []string {
	names := []string{}
	for _, u := range c.ExtKeyUsage {
		if n, ok := extKeyUsageNamesByValue[u]; ok {
			names = append(names, n)
		} else {
			names = append(names, fmt.Sprintf("unknown (%d)", u))
		}
	}
	for _, oid := range c.UnknownExtKeyUsage {
		names = append(names, oid.String())
	}
	return names
}
