package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/certs"
)

type certsInspectOptions struct {
	*globalOptions
	Output   string
	WarnDays int
	Files    []string
	// CA is --ca: the CA file every certificate must chain to.
	CA string
	// FailWithin is --fail-within as given: a duration or a number of days ("30d").
	FailWithin string
	// window is FailWithin parsed.
	window time.Duration
	// now is the clock of the EXPIRED flags; tests set it.
	now func() time.Time
}

func newCertsInspectCmd(g *globalOptions, runF func(*certsInspectOptions) error) *cobra.Command {
	o := &certsInspectOptions{globalOptions: g, now: time.Now}
	cmd := &cobra.Command{
		Use:   "inspect FILE|HOST:PATH...",
		Short: "Print the facts of certificates (PEM, chains, bundles), flag expiring ones, or emit cfssl CSR JSON",
		Long: `Print one row per certificate: subject and issuer CN, key, SANs, expiry. A file that holds
no certificate, a private key, or a cut-off PEM block is reported with what to do, and the
others are still printed (exit 1 when any file failed).

A folder stands for its .pem, .crt and .cer files. Private key files (cfssljson's
NAME-key.pem, given or found in a folder) are not printed: each is checked to be the key of
NAME.pem, and a key that does not match is reported (exit 1); no key material is ever shown.
A key given without its certificate is reported as such.

HOST:PATH reads the file on a host of the inventory (-i).

--ca FILE verifies that each certificate chains to that CA (crypto/x509 verification with
the CA as the root, the other CA certificates given as intermediates, any key usage): a
CHAIN column (ok or FAILED) in the table, a "chain" field in -o json|yaml, and one error
line with the reason for each certificate that does not chain. The chain is checked, not the
certificate's own expiry: that is --fail-within's.

--fail-within DURATION (30d, 720h) is for cron jobs: each certificate that has expired or
expires within that window gets an error line with its expiry. Without it, expiry is only
flagged in the table and does not change the exit code.

-o csr prints, per certificate, the cfssl CSR JSON that regenerates it (CN, names, hosts,
key algo and size), ready for 'cfssl gencert'; a CA certificate gives a CA request with
its "ca" block (expiry, pathlen, pathlenzero), ready for 'cfssl gencert -initca'. Several
certificates (a bundle, a folder) print as one JSON array.

Exit codes: 0 all good; 1 a file could not be read or parsed, or a key does not match its
certificate; 4 bad flags or arguments (a --ca that holds no CA certificate among them); 5 a
check failed: a certificate expires within --fail-within (or has expired), or does not
chain to --ca. 1 wins over 5 when both happen: every problem is still listed.`,
		Example: `  mastershrink certs inspect /etc/kubernetes/ssl/*.pem
  mastershrink certs inspect /etc/kubernetes/ssl
  mastershrink certs inspect -i inventory.yaml master-1:/etc/kubernetes/ssl/etcd.pem -o json
  mastershrink certs inspect kubernetes.pem -o csr > kubernetes-csr.json
  mastershrink certs inspect /etc/kubernetes/ssl --ca /etc/kubernetes/ssl/ca.pem --fail-within 30d`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Files = args
			return runOrHook(cmd.Context(), o, runF, runCertsInspect)
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "table, wide (adds O, OU and usages), json, yaml, or csr (cfssl CSR JSON)")
	cmd.Flags().IntVar(&o.WarnDays, "warn-days", 30, "flag certificates expiring within this many days")
	cmd.Flags().StringVar(&o.CA, "ca", "", "verify that each certificate chains to this CA certificate (FILE or HOST:PATH)")
	cmd.Flags().StringVar(&o.FailWithin, "fail-within", "", "exit 5 when a certificate expires within this window or has expired (30d, 720h)")
	completeOutput(cmd, "table", "wide", "json", "yaml", "csr")
	return cmd
}

// inspectJSON is the -o json|yaml document.
type inspectJSON struct {
	FormatVersion int             `json:"format_version"`
	Certificates  []inspectedCert `json:"certificates"`
	Errors        []fileError     `json:"errors"`
}

// inspectedCert is a certificate's facts with the result of --ca.
type inspectedCert struct {
	certs.Info
	Chain *chainCheck `json:"chain,omitempty"`
}

// chainCheck is whether a certificate chains to the --ca file, and why not.
type chainCheck struct {
	CA     string `json:"ca"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

type fileError struct {
	File  string `json:"file"`
	Error string `json:"error"`
}

// errSomeFiles is the summary error when some inputs could not be read or parsed.
var errSomeFiles = errors.New("some files could not be inspected")

func (o *certsInspectOptions) validate() error {
	if err := validOutput(o.Output, "table", "wide", "json", "yaml", "csr"); err != nil {
		return err
	}
	if o.WarnDays < 0 {
		return usageError{fmt.Errorf("--warn-days %d: want 0 or more", o.WarnDays)}
	}
	if o.FailWithin != "" {
		var err error
		if o.window, err = certs.ParseWindow(o.FailWithin); err != nil {
			return usageError{fmt.Errorf("--fail-within %w", err)}
		}
	}
	return nil
}

func runCertsInspect(ctx context.Context, o *certsInspectOptions) error {
	r := newInputReader(o.globalOptions)
	defer r.Close()
	var roots []*x509.Certificate
	if o.CA != "" {
		var err error
		if roots, err = readCA(ctx, r, o.CA); err != nil {
			return err
		}
	}

	var infos []certs.Info
	var parsedCerts []*x509.Certificate // parsedCerts[i] is the certificate of infos[i]
	var failed []fileError
	var firstErr error
	fail := func(file string, err error) {
		if firstErr == nil {
			firstErr = err
		}
		failed = append(failed, fileError{File: file, Error: err.Error()})
		fmt.Fprintln(o.ErrOut, "error:", err)
	}
	files, err := expandInspectArgs(o.Files)
	if err != nil {
		return err
	}
	parsed := map[string][]*x509.Certificate{}
	var keyFiles []string
	keys := map[string][]byte{}
	for _, arg := range files {
		data, err := r.read(ctx, arg)
		if err == nil && certs.IsPrivateKeyPEM(data) {
			// Key files are checked against their certificate below, never printed.
			keyFiles = append(keyFiles, arg)
			keys[arg] = data
			continue
		}
		if err == nil {
			var got []certs.Info
			var cs []*x509.Certificate
			got, cs, err = certs.ParsePEM(data, arg)
			infos = append(infos, got...)
			parsedCerts = append(parsedCerts, cs...)
			parsed[arg] = cs
		}
		if err != nil {
			fail(arg, err)
		}
	}
	for _, k := range keyFiles {
		certPath := certs.CertPathOfKey(k)
		cs, ok := parsed[certPath]
		if !ok || len(cs) == 0 {
			// A key alone is most often given by mistake for its certificate.
			_, _, err := certs.ParsePEM(keys[k], k)
			fail(k, err)
			continue
		}
		if err := certs.CheckKeyPair(keys[k], k, cs[0], certPath); err != nil {
			fail(k, err)
		}
	}

	now := o.now()
	checked := make([]inspectedCert, len(infos))
	var notChained, expiring int
	for i, info := range infos {
		checked[i].Info = info
		if roots != nil {
			check := &chainCheck{CA: o.CA, OK: true}
			if err := certs.VerifyChain(parsedCerts[i], roots, caCerts(parsedCerts), now); err != nil {
				check.OK, check.Reason = false, strings.TrimPrefix(err.Error(), certs.ErrNotChained.Error()+": ")
				notChained++
				fmt.Fprintf(o.ErrOut, "error: %s: does not chain to the CA %s: %s; re-sign it with that CA (mastershrink certs regen), or give the CA that issued it with --ca\n",
					inspectLabel(infos, i), o.CA, check.Reason)
			}
			checked[i].Chain = check
		}
		if o.FailWithin != "" && certs.ExpiresWithin(info.NotAfter, now, o.window) {
			expiring++
			fmt.Fprintf(o.ErrOut, "error: %s: %s; renew it: %s\n", inspectLabel(infos, i), expiryPhrase(info.NotAfter, now, o.FailWithin), renewHint(info, o.CA))
		}
	}

	switch o.Output {
	case "table", "wide":
		if len(infos) > 0 {
			err = writeCertTable(o.Out, checked, now, o.WarnDays, o.Output == "wide")
		}
	case "json", "yaml":
		doc := inspectJSON{FormatVersion: 1, Certificates: checked, Errors: failed}
		if doc.Errors == nil {
			doc.Errors = []fileError{}
		}
		err = writeData(o.Out, doc, o.Output)
	case "csr":
		err = writeRequests(o.Out, infos)
	}
	if err != nil {
		return err
	}
	var usage usageError
	if errors.As(firstErr, &usage) {
		return usageError{fmt.Errorf("%d of %d files: %w (see above)", len(failed), len(files), errSomeFiles)}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d files: %w (see above)", len(failed), len(files), errSomeFiles)
	}
	if notChained+expiring > 0 {
		return checkFailedError{checkSummary(notChained, expiring, len(infos), o.CA, o.FailWithin)}
	}
	return nil
}

// readCA reads the --ca file: its CA certificates are the roots. A file without one is the
// operator's mistake (exit 4), named with the fix.
func readCA(ctx context.Context, r *inputReader, path string) ([]*x509.Certificate, error) {
	data, err := r.read(ctx, path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--ca: %w; give the cluster CA's certificate (ca.pem)", err)}
	}
	_, cs, err := certs.ParsePEM(data, path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--ca: %w", err)}
	}
	roots := caCerts(cs)
	if len(roots) == 0 {
		return nil, usageError{fmt.Errorf("--ca %s: %q is no CA certificate (no CA:TRUE); give the CA that signs the cluster's certificates (ca.pem)", path, cs[0].Subject.CommonName)}
	}
	return roots, nil
}

// caCerts are the CA certificates among cs.
func caCerts(cs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range cs {
		if c.IsCA {
			out = append(out, c)
		}
	}
	return out
}

// inspectLabel names a certificate in a message: FILE (CN), or FILE[i] (CN) in a bundle.
func inspectLabel(infos []certs.Info, i int) string {
	in := infos[i]
	file := in.Path
	if in.Index > 0 || (i+1 < len(infos) && infos[i+1].Path == in.Path) {
		file = fmt.Sprintf("%s[%d]", in.Path, in.Index)
	}
	return fmt.Sprintf("%s (%s)", file, orDash(in.Subject.CommonName))
}

// renewHint is the command that makes a new certificate: a CA is made again from its
// request, a leaf re-signed by the CA (--ca when given).
func renewHint(info certs.Info, ca string) string {
	if info.IsCA {
		return "make a new CA from its cfssl request (mastershrink certs inspect " + info.Path + " -o csr) and re-sign every certificate it issued"
	}
	if ca == "" {
		ca = "ca.pem"
	}
	return fmt.Sprintf("mastershrink certs regen %s --ca %s --ca-key %s", info.Path, ca, strings.TrimSuffix(ca, ".pem")+"-key.pem")
}

// expiryPhrase says when a certificate expired or expires, against the window.
func expiryPhrase(notAfter, now time.Time, window string) string {
	at := notAfter.UTC().Format(time.RFC3339)
	days := certsDaysLeft(notAfter, now)
	if !now.Before(notAfter) {
		return fmt.Sprintf("expired %s (%d days ago)", at, -days)
	}
	return fmt.Sprintf("expires %s (%d days left), within --fail-within %s", at, days, window)
}

// checkSummary is the last error line of a failed check, pointing up to the lines above.
func checkSummary(notChained, expiring, total int, ca, window string) error {
	var parts []string
	if expiring > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d certificates expire within %s or have expired", expiring, total, window))
	}
	if notChained > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d certificates do not chain to %s", notChained, total, ca))
	}
	return fmt.Errorf("%s (see above)", strings.Join(parts, "; "))
}

// writeRequests prints the cfssl CSR requests: one object for one certificate, one JSON
// array for several, so the output is always one JSON document.
func writeRequests(w io.Writer, infos []certs.Info) error {
	switch len(infos) {
	case 0:
		return nil // every file failed: the errors say why, and stdout stays empty
	case 1:
		return writeJSON(w, certs.Request(infos[0]))
	}
	reqs := make([]any, len(infos))
	for i, in := range infos {
		reqs[i] = certs.Request(in)
	}
	return writeJSON(w, reqs)
}

// expandInspectArgs replaces a local folder by its .pem, .crt and .cer files, sorted; other
// arguments are kept as given.
func expandInspectArgs(args []string) ([]string, error) {
	var out []string
	for _, arg := range args {
		if err := checkPathArg(arg); err != nil {
			return nil, err
		}
		st, err := os.Stat(arg)
		if err != nil || !st.IsDir() {
			out = append(out, arg)
			continue
		}
		entries, err := os.ReadDir(arg)
		if err != nil {
			return nil, fmt.Errorf("read folder %s: %w", arg, err)
		}
		n := 0
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".pem", ".crt", ".cer":
				if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
					out = append(out, filepath.Join(arg, e.Name()))
					n++
				}
			}
		}
		if n == 0 {
			return nil, usageError{fmt.Errorf("folder %s holds no .pem, .crt or .cer file: give the folder of the certificates", arg)}
		}
	}
	return out, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// certRows builds the inspect table: a pure function of the facts and the clock.
func certRows(infos []certs.Info, now time.Time, warnDays int) [][]string {
	rows := [][]string{{"FILE", "SUBJECT CN", "ISSUER CN", "KEY", "SANS", "NOT AFTER", "DAYS LEFT", "FLAG"}}
	multi := map[string]bool{}
	for _, in := range infos {
		if in.Index > 0 {
			multi[in.Path] = true
		}
	}
	for _, in := range infos {
		file := in.Path
		if multi[in.Path] {
			file = fmt.Sprintf("%s[%d]", in.Path, in.Index)
		}
		key := fmt.Sprintf("%s %d", in.KeyAlgorithm, in.KeySize)
		if in.KeyAlgorithm == "ed25519" {
			key = "ed25519"
		}
		sans := strings.Join(certs.Hosts(in), ",")
		if sans == "" {
			sans = "-"
		}
		flag := ""
		switch {
		case !now.Before(in.NotAfter):
			flag = "EXPIRED"
		case in.NotAfter.Sub(now) < time.Duration(warnDays)*24*time.Hour:
			flag = "EXPIRES SOON"
		}
		if in.IsCA {
			if flag != "" {
				flag += ","
			}
			flag += "CA"
		}
		days := certsDaysLeft(in.NotAfter, now)
		rows = append(rows, []string{file, orDash(in.Subject.CommonName), orDash(in.Issuer.CommonName), key, sans,
			in.NotAfter.UTC().Format(time.RFC3339), fmt.Sprint(days), flag})
	}
	return rows
}

func certsDaysLeft(notAfter, now time.Time) int {
	d := notAfter.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days-- // floor, so an hour past expiry is -1, not 0
	}
	return days
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// wideRows adds O (the Kubernetes group), OU and USAGES (key usages, then extended key
// usages) to the rows of certRows.
func wideRows(infos []certs.Info, rows [][]string) [][]string {
	rows[0] = append(rows[0], "O", "OU", "USAGES")
	for i, in := range infos {
		usages := append(append([]string{}, in.KeyUsages...), in.ExtKeyUsages...)
		rows[i+1] = append(rows[i+1], orDash(strings.Join(in.Subject.Organization, ",")),
			orDash(strings.Join(in.Subject.OrganizationalUnit, ",")), orDash(strings.Join(usages, ",")))
	}
	return rows
}

// chainRows adds the CHAIN column (ok or FAILED) when --ca was given.
func chainRows(checked []inspectedCert, rows [][]string) [][]string {
	if len(checked) == 0 || checked[0].Chain == nil {
		return rows
	}
	rows[0] = append(rows[0], "CHAIN")
	for i, c := range checked {
		verdict := "ok"
		if !c.Chain.OK {
			verdict = "FAILED"
		}
		rows[i+1] = append(rows[i+1], verdict)
	}
	return rows
}

func writeCertTable(w io.Writer, checked []inspectedCert, now time.Time, warnDays int, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	infos := make([]certs.Info, len(checked))
	for i, c := range checked {
		infos[i] = c.Info
	}
	rows := certRows(infos, now, warnDays)
	if wide {
		rows = wideRows(infos, rows)
	}
	rows = chainRows(checked, rows)
	for _, row := range rows {
		fmt.Fprintln(tw, strings.TrimRight(strings.Join(row, "\t"), "\t"))
	}
	return tw.Flush()
}

// ---- reading FILE or HOST:PATH ----
