package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/host"
	"github.com/mastershrink/mastershrink/inventory"
)

func newCertsCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Inspect cluster certificates and re-sign them without removed addresses",
		Long: `Read certificates into the facts a cfssl CSR needs (inspect), and re-sign one with the
cluster CA, dropping or adding SANs (regen). cfssl runs in-process; nothing is shelled out.`,
	}
	cmd.AddCommand(newCertsInspectCmd(g), newCertsRegenCmd(g))
	// pflag quotes a whole argument in "bad flag syntax: ARG", and a pasted PEM starts with
	// dashes: the key would be printed. Inherited by both subcommands.
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		msg := err.Error()
		if strings.Contains(msg, "-----BEGIN") || strings.Contains(msg, "PRIVATE KEY") || len(msg) > 300 || strings.ContainsAny(msg, "\n\r") {
			return usageError{fmt.Errorf("%s: an argument holds a PEM block or other content (not shown) where a flag or a file name goes: give the path of the file instead of its content", c.CommandPath())}
		}
		return flagError(c, err)
	})
	return cmd
}

// ---- inspect ----

type certsInspectOptions struct {
	*globalOptions
	Output   string
	WarnDays int
	Files    []string
	// CA is --ca: the CA file every certificate must chain to.
	CA string
	// FailWithin is --fail-within as given: a duration or a number of days ("30d").
	FailWithin string
	// now is the clock of the EXPIRED flags; tests set it.
	now func() time.Time
}

func newCertsInspectCmd(g *globalOptions) *cobra.Command {
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
			return runCertsInspect(cmd.Context(), o)
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

func runCertsInspect(ctx context.Context, o *certsInspectOptions) error {
	if err := validOutput(o.Output, "table", "wide", "json", "yaml", "csr"); err != nil {
		return err
	}
	if o.WarnDays < 0 {
		return usageError{fmt.Errorf("--warn-days %d: want 0 or more", o.WarnDays)}
	}
	var window time.Duration
	if o.FailWithin != "" {
		var err error
		if window, err = certs.ParseWindow(o.FailWithin); err != nil {
			return usageError{fmt.Errorf("--fail-within %w", err)}
		}
	}
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
		if o.FailWithin != "" && certs.ExpiresWithin(info.NotAfter, now, window) {
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

// hostPathRE matches HOST:PATH with an absolute or relative path after the colon; a
// local file of that name wins.
var hostPathRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*):(.+)$`)

// connectHost opens an inventory host (SSH, or local when the inventory says so), through
// the tests' dial hook when one is set.
func connectHost(ctx context.Context, g *globalOptions, inv *inventory.Inventory, name string) (host.Host, error) {
	return host.Connect(ctx, inv, name, g.Dial)
}

// inputReader reads local files and HOST:PATH through the inventory, keeping one
// connection per host for the whole command.
type inputReader struct {
	g     *globalOptions
	inv   *inventory.Inventory
	hosts map[string]host.Host
}

func newInputReader(g *globalOptions) *inputReader {
	return &inputReader{g: g, hosts: map[string]host.Host{}}
}

// maxArgPath bounds what is taken for a file name: longer, or with a line break, it is
// content pasted where a path goes (often a key: "$(cat ca-key.pem)"), and is not echoed.
const maxArgPath = 1024

// checkPathArg refuses an argument that cannot be a path, without repeating it.
func checkPathArg(arg string) error {
	switch {
	case strings.Contains(arg, "-----BEGIN") || strings.Contains(arg, "PRIVATE KEY"):
		return usageError{errors.New("an argument holds a PEM block (not shown), where a file name goes: give the path of the file instead of its content")}
	case len(arg) > maxArgPath || strings.ContainsAny(arg, "\n\r\x00"):
		return usageError{fmt.Errorf("an argument of %d characters starting %q is not a file name: give the path of the file", len(arg), clipArg(arg))}
	}
	return nil
}

// clipArg is a short, single-line prefix of an argument for messages.
func clipArg(arg string) string {
	if i := strings.IndexAny(arg, "\n\r\x00"); i >= 0 {
		arg = arg[:i]
	}
	if r := []rune(arg); len(r) > 24 {
		return string(r[:24]) + "..."
	}
	return arg
}

func (r *inputReader) read(ctx context.Context, arg string) ([]byte, error) {
	if err := checkPathArg(arg); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(arg)
	if err == nil {
		return data, nil
	}
	m := hostPathRE.FindStringSubmatch(arg)
	if m == nil && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w; check the path (HOST:PATH reads a file on a host of the inventory)", arg, err)
	}
	if m == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", arg, err)
	}
	name, path := m[1], m[2]
	h, err := r.host(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", arg, err)
	}
	data, err = h.ReadFile(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("read %s on %s: %w", path, name, err)
	}
	return data, nil
}

func (r *inputReader) host(ctx context.Context, name string) (host.Host, error) {
	if h, ok := r.hosts[name]; ok {
		return h, nil
	}
	if r.g.Inventory == "" {
		return nil, usageError{fmt.Errorf("no such local file, and reading HOST:PATH needs the inventory: give -i inventory.yaml")}
	}
	if r.inv == nil {
		inv, err := inventory.Load(r.g.Inventory)
		if err != nil {
			return nil, err
		}
		r.inv = inv
	}
	known := false
	for _, h := range r.inv.Hosts {
		known = known || h.Name == name
	}
	if !known {
		return nil, fmt.Errorf("no local file of that name and no host %q in the inventory %s (its hosts: %s)", name, r.inv.File, strings.Join(r.inv.HostNames(), ", "))
	}
	h, err := connectHost(ctx, r.g, r.inv, name)
	if err != nil {
		return nil, err
	}
	r.hosts[name] = h
	return h, nil
}

func (r *inputReader) Close() {
	for _, h := range r.hosts {
		h.Close()
	}
}

// ---- regen ----

type certsRegenOptions struct {
	*globalOptions
	Cert     string
	CA       string
	CAKey    string
	CAConfig string
	Profile  string
	Remove   []string
	Add      []string
	ReuseKey string
	OutDir   string
	Force    bool
	// AllowShorter accepts a new certificate that ends before the old one.
	AllowShorter bool
	now          func() time.Time
}

func newCertsRegenCmd(g *globalOptions) *cobra.Command {
	o := &certsRegenOptions{globalOptions: g, now: time.Now}
	cmd := &cobra.Command{
		Use:   "regen CERT --ca CA.pem --ca-key CA-key.pem [--remove IP,...] [--add HOST,...]",
		Short: "Re-sign a certificate with the cluster CA, without removed SANs, as cfssljson files",
		Long: `Re-sign CERT with the CA that issued it: same subject, key type and size, the usages of the
ca-config profile (--profile, else "kubernetes" when the ca-config has it, else the default),
and the SANs minus --remove plus --add. A new key unless --reuse-key gives the old one.

Refused (exit 3), with nothing written: a CA or self-signed certificate (re-signing a CA as a
leaf would break every certificate it issued); a profile whose extended key usages do not
cover the certificate's (an etcd certificate needs server and client auth); a server
certificate left without SANs; and a new certificate that would expire before the old one
(or the CA), unless --allow-shorter-validity. --add takes IPs and DNS names ("*." first
allowed); anything else is a usage error (exit 4).

The result is verified before anything is written (chain to the CA, key pair, SANs exactly
as asked, validity inside the CA's) and written in cfssljson's naming with the base name of
CERT: NAME.pem, NAME-key.pem (mode 0600) and NAME.csr, into --out-dir (the current folder by
default). Existing files are never overwritten unless --force, which first keeps each one as
FILE.bak-TIMESTAMP. Installing the new pair on the hosts is 'mastershrink apply's job, or
yours: it is not done here.

CERT, the CA files and the key may be HOST:PATH (read through the inventory, -i); the CA
key is then read into memory only.`,
		Example: `  mastershrink certs regen /etc/kubernetes/ssl/etcd.pem --ca ca.pem --ca-key ca-key.pem \
      --ca-config ca-config.json --remove 172.72.0.96,172.72.0.97 --out-dir new/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Cert = args[0]
			return runCertsRegen(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.CA, "ca", "", "the CA certificate that issued CERT (ca.pem)")
	f.StringVar(&o.CAKey, "ca-key", "", "the CA private key (ca-key.pem)")
	f.StringVar(&o.CAConfig, "ca-config", "", "the cluster's ca-config.json (profiles and usages)")
	f.StringVar(&o.Profile, "profile", "", `ca-config profile (default "kubernetes" when present, else the default profile)`)
	f.StringSliceVar(&o.Remove, "remove", nil, "SANs (IPs or names) to drop")
	f.StringSliceVar(&o.Add, "add", nil, "SANs (IPs or names) to add")
	f.StringVar(&o.ReuseKey, "reuse-key", "", "keep CERT's key pair: its private key file")
	f.StringVar(&o.OutDir, "out-dir", ".", "folder for NAME.pem, NAME-key.pem and NAME.csr")
	f.BoolVar(&o.Force, "force", false, "replace existing output files (each kept as FILE.bak-TIMESTAMP)")
	f.BoolVar(&o.AllowShorter, "allow-shorter-validity", false, "accept a new certificate that expires before the old one (or its CA)")
	return cmd
}

func runCertsRegen(ctx context.Context, o *certsRegenOptions) error {
	if o.CA == "" || o.CAKey == "" {
		return usageError{errors.New("give the CA that issued the certificate: --ca ca.pem --ca-key ca-key.pem")}
	}
	// Before the output names are built from CERT: a pasted key must not reach a message.
	for _, a := range []string{o.Cert, o.CA, o.CAKey, o.CAConfig, o.ReuseKey, o.OutDir} {
		if err := checkPathArg(a); err != nil {
			return err
		}
	}
	for _, a := range o.Add {
		if err := certs.ValidateHost(strings.TrimSpace(a)); err != nil {
			return usageError{fmt.Errorf("--add: %w", err)}
		}
	}
	if len(o.Remove) == 0 && len(o.Add) == 0 {
		fmt.Fprintln(o.ErrOut, "note: no --remove or --add: the certificate is re-signed with the same SANs")
	}
	name := certBaseName(o.Cert)
	outs := []string{
		filepath.Join(o.OutDir, name+".pem"),
		filepath.Join(o.OutDir, name+"-key.pem"),
		filepath.Join(o.OutDir, name+".csr"),
	}
	if err := refuseOverwritingCA(outs, o.CA, o.CAKey, o.CAConfig); err != nil {
		return err
	}
	// Checked first, so a refusal costs no key generation; checked again when writing.
	if !o.Force {
		if err := refuseExisting(outs); err != nil {
			return err
		}
	}

	r := newInputReader(o.globalOptions)
	defer r.Close()
	certPEM, err := r.read(ctx, o.Cert)
	if err != nil {
		return err
	}
	_, parsed, err := certs.ParsePEM(certPEM, o.Cert)
	if err != nil {
		return err
	}
	cert := parsed[0]
	if len(parsed) > 1 {
		fmt.Fprintf(o.ErrOut, "note: %s holds %d certificates; re-signing the first (%s)\n", o.Cert, len(parsed), cert.Subject.CommonName)
	}
	ca, err := loadCAFiles(ctx, r, o.CA, o.CAKey, o.CAConfig)
	if err != nil {
		return err
	}
	opts := certs.ResignOptions{RemoveHosts: o.Remove, AddHosts: o.Add, Profile: o.Profile, AllowShorterValidity: o.AllowShorter}
	if o.ReuseKey != "" {
		opts.ReuseKey = true
		if opts.ExistingKeyPEM, err = r.read(ctx, o.ReuseKey); err != nil {
			return err
		}
	}
	res, err := certs.Resign(cert, ca, opts)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(o.ErrOut, "warning:", w)
	}
	if err := writeOutputs(outs, [][]byte{res.CertPEM, res.KeyPEM, res.CSRPEM}, []fs.FileMode{0o644, 0o600, 0o644}, o.Force, o.now()); err != nil {
		return err
	}
	return printRegen(o.Out, outs, res)
}

func loadCAFiles(ctx context.Context, r *inputReader, certPath, keyPath, configPath string) (certs.CA, error) {
	caPEM, err := r.read(ctx, certPath)
	if err != nil {
		return certs.CA{}, err
	}
	keyPEM, err := r.read(ctx, keyPath)
	if err != nil {
		return certs.CA{}, err
	}
	var cfg []byte
	if configPath != "" {
		if cfg, err = r.read(ctx, configPath); err != nil {
			return certs.CA{}, err
		}
		if !json.Valid(cfg) {
			return certs.CA{}, usageError{fmt.Errorf("--ca-config %s is not JSON: give the cluster's ca-config.json (its signing profiles)", configPath)}
		}
	}
	ca, err := certs.LoadCA(caPEM, keyPEM, cfg)
	if err != nil {
		return certs.CA{}, fmt.Errorf("CA %s with key %s: %w", certPath, keyPath, err)
	}
	return ca, nil
}

// certBaseName is cfssljson's NAME for a certificate file: its base name without .pem/.crt.
func certBaseName(arg string) string {
	if m := hostPathRE.FindStringSubmatch(arg); m != nil {
		if _, err := os.Stat(arg); err != nil {
			arg = m[2]
		}
	}
	name := filepath.Base(arg)
	for _, ext := range []string{".pem", ".crt", ".cert", ".cer"} {
		if strings.HasSuffix(name, ext) && len(name) > len(ext) {
			return strings.TrimSuffix(name, ext)
		}
	}
	return name
}

// refuseOverwritingCA keeps --force from replacing the CA's own files: a leaf named ca.pem
// written next to the CA would become the cluster's trust root.
func refuseOverwritingCA(outs []string, caFiles ...string) error {
	for _, out := range outs {
		oi, err := os.Stat(out)
		if err != nil {
			continue
		}
		for _, ca := range caFiles {
			if ci, err := os.Stat(ca); ca != "" && err == nil && os.SameFile(oi, ci) {
				return usageError{fmt.Errorf("%s is the CA file given with --ca, --ca-key or --ca-config: writing there would replace the cluster's CA; choose another --out-dir", out)}
			}
		}
	}
	return nil
}

func refuseExisting(paths []string) error {
	var exist []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			exist = append(exist, p)
		}
	}
	if len(exist) > 0 {
		return usageError{fmt.Errorf("%s already %s: choose another --out-dir, or --force to replace (old files kept as .bak-TIMESTAMP)",
			strings.Join(exist, ", "), map[bool]string{true: "exists", false: "exist"}[len(exist) == 1])}
	}
	return nil
}

// writeOutputs writes every file to a temporary name first and renames them only when all
// were written, so a failure leaves no partial pair.
func writeOutputs(paths []string, data [][]byte, modes []fs.FileMode, force bool, now time.Time) error {
	if !force {
		if err := refuseExisting(paths); err != nil {
			return err
		}
	}
	if len(paths) > 0 {
		if err := os.MkdirAll(filepath.Dir(paths[0]), 0o755); err != nil {
			return fmt.Errorf("make output folder: %w", err)
		}
	}
	var temps []string
	cleanup := func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}
	for i, p := range paths {
		f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
		if err != nil {
			cleanup()
			return fmt.Errorf("write %s: %w", p, err)
		}
		temps = append(temps, f.Name())
		err = f.Chmod(modes[i])
		if err == nil {
			_, err = f.Write(data[i])
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			cleanup()
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	suffix := ".bak-" + now.UTC().Format("20060102T150405Z")
	for i, p := range paths {
		if force {
			if _, err := os.Lstat(p); err == nil {
				if err := os.Rename(p, p+suffix); err != nil {
					cleanup()
					return fmt.Errorf("keep old %s: %w", p, err)
				}
			}
		} else if _, err := os.Lstat(p); err == nil {
			cleanup()
			return fmt.Errorf("%s appeared while writing: nothing replaced", p)
		}
		if err := os.Rename(temps[i], p); err != nil {
			cleanup()
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

func printRegen(w io.Writer, paths []string, res certs.Result) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "wrote %s, %s (0600), %s\n", paths[0], paths[1], paths[2])
	fmt.Fprintf(&b, "subject:  %s\n", res.Info.Subject.CommonName)
	fmt.Fprintf(&b, "key:      %s %d\n", res.Info.KeyAlgorithm, res.Info.KeySize)
	profile := res.Profile
	if profile == "" {
		profile = "(default)"
	}
	fmt.Fprintf(&b, "profile:  %s (%s)\n", profile, strings.Join(append(res.Info.KeyUsages, res.Info.ExtKeyUsages...), ", "))
	fmt.Fprintf(&b, "removed:  %s\n", orDash(strings.Join(res.Hosts.Removed, ", ")))
	fmt.Fprintf(&b, "added:    %s\n", orDash(strings.Join(res.Hosts.Added, ", ")))
	fmt.Fprintf(&b, "SANs:     %s\n", orDash(strings.Join(res.Hosts.After, ", ")))
	fmt.Fprintf(&b, "valid:    %s to %s\n", res.Info.NotBefore.Format(time.RFC3339), res.Info.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(&b, "verified: chain to the CA, key pair, SANs, validity\n")
	_, err := w.Write(b.Bytes())
	return err
}
