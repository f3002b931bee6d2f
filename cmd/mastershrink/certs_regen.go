package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mastershrink/mastershrink/certs"
)

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

func newCertsRegenCmd(g *globalOptions, runF func(*certsRegenOptions) error) *cobra.Command {
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
			return runOrHook(cmd.Context(), o, runF, runCertsRegen)
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

func (o *certsRegenOptions) validate() error {
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
	return nil
}

func runCertsRegen(ctx context.Context, o *certsRegenOptions) error {
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
