package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudflare/cfssl/csr"

	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/certs/certstest"
	"github.com/mastershrink/mastershrink/testenv"
)

// inspectCerts is how many certificates the inspection benchmark reads.
const inspectCerts = 1000

// BenchmarkInspect1000 times `mastershrink certs inspect` over 1,000 certificate files, one
// process, against what an operator would run over the same certificates instead:
//
//   - openssl, one process over a bundle of the same 1,000 certificates (OpenSSLBundleArm);
//   - cfssl certinfo, which reads one certificate per process, over the same 1,000 files
//     (CfsslArm), as many processes at once as the machine has CPUs.
//
// Every arm prints each certificate's subject, SANs and expiry; each is checked to have
// printed all 1,000 (by the last SAN, which differs per certificate). The mastershrink binary
// is MASTERSHRINK_BENCH_BIN (benchtable sets it), else built from the repository; cfssl is the
// lab's (testenv.CacheDir), else on PATH. It reports each arm's milliseconds, their ratios to
// mastershrink's (above 1: mastershrink took less time), and mastershrink's own peak memory.
func BenchmarkInspect1000(b *testing.B) {
	if _, err := exec.LookPath("openssl"); err != nil {
		b.Skip("openssl not installed")
	}
	cfssl, err := cfsslBinary()
	if err != nil {
		b.Skip(err.Error())
	}
	bin := mastershrinkBinary(b)
	files, hosts := inspectFixture(b, inspectCerts)
	bundle := filepath.Join(filepath.Dir(files[0]), "bundle.pem")
	var all []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, data...)
	}
	if err := os.WriteFile(bundle, all, 0o644); err != nil {
		b.Fatal(err)
	}
	list := filepath.Join(filepath.Dir(files[0]), "files.txt")
	if err := os.WriteFile(list, []byte(strings.Join(files, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	arms := []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		{"inspect", func() *exec.Cmd {
			return exec.CommandContext(ctx, bin, append([]string{"certs", "inspect"}, files...)...)
		}},
		{"openssl", func() *exec.Cmd { return exec.CommandContext(ctx, "sh", "-c", OpenSSLBundleArm(bundle)) }},
		{"cfssl", func() *exec.Cmd { return exec.CommandContext(ctx, "sh", "-c", CfsslArm(cfssl, list, runtime.NumCPU())) }},
	}
	took := map[string]time.Duration{}
	var maxRSS int64
	i := 0
	b.ResetTimer()
	for b.Loop() {
		// Rotate who goes first, so no arm always meets the colder page cache.
		for k := range arms {
			arm := arms[(i+k)%len(arms)]
			cmd := arm.cmd()
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			start := time.Now()
			err := cmd.Run()
			took[arm.name] += time.Since(start)
			if err != nil {
				b.Fatalf("%s: %v\n%s", arm.name, err, tail(errOut.String(), 10))
			}
			if missing := missingHosts(out.String(), hosts); len(missing) > 0 {
				b.Fatalf("%s printed no line for %d of %d certificates (first %s)", arm.name, len(missing), len(hosts), missing[0])
			}
			if arm.name == "inspect" {
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
					maxRSS = max(maxRSS, ru.Maxrss)
				}
			}
		}
		i++
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 / float64(i) }
	b.ReportMetric(ms(took["inspect"]), "inspect-ms/op")
	b.ReportMetric(ms(took["openssl"]), "openssl-ms/op")
	b.ReportMetric(ms(took["cfssl"]), "cfssl-ms/op")
	b.ReportMetric(float64(took["openssl"])/float64(took["inspect"]), "openssl/inspect")
	b.ReportMetric(float64(took["cfssl"])/float64(took["inspect"]), "cfssl/inspect")
	b.ReportMetric(float64(maxRSS)/1024, "inspect-maxrss-MB")
}

// OpenSSLBundleArm is the openssl arm of BenchmarkInspect1000: one openssl process over a
// bundle of the certificates (concatenated PEM, made before the clock starts), printing every
// certificate's text (subject, SANs, validity). Of the single-process ways to do it,
// `openssl storeutl -noout -text -certs` was the fastest here (see TestOpenSSLBundleArms);
// `openssl x509` reads only the first certificate of a file.
func OpenSSLBundleArm(bundle string) string {
	return fmt.Sprintf("openssl storeutl -noout -text -certs %s", bundle)
}

// CfsslArm is the cfssl arm: `cfssl certinfo -cert FILE` reads one certificate (a bundle is
// refused), so one process per file, parallel processes at a time, through xargs.
func CfsslArm(cfssl, list string, parallel int) string {
	return fmt.Sprintf("xargs -P %d -n 1 %s certinfo -cert < %s", parallel, cfssl, list)
}

// missingHosts are the hosts not found in out.
func missingHosts(out string, hosts []string) []string {
	var missing []string
	for _, h := range hosts {
		if !strings.Contains(out, h) {
			missing = append(missing, h)
		}
	}
	return missing
}

// inspectFixture writes n certificates, RSA 2048 keys signed by an ECDSA CA as the lab's
// etcd certificates are, each with its own serial and its own last SAN (returned), one file
// each.
func inspectFixture(b *testing.B, n int) (files, hosts []string) {
	b.Helper()
	dir := b.TempDir()
	ca := certstest.NewCA(b, "kubernetes", "ecdsa", 256)
	req := certs.Request(certs.Info{Subject: certs.Name{CommonName: "kubernetes", Organization: []string{"k8s"}}, KeyAlgorithm: "rsa", KeySize: 2048})
	csrPEM, _, err := csr.ParseRequest(req)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		last := fmt.Sprintf("node-%04d.bench.example", i)
		certPEM := certstest.Sign(b, ca, "kubernetes", csrPEM, []string{"kubernetes", fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), "127.0.0.1", last})
		f := filepath.Join(dir, fmt.Sprintf("cert-%04d.pem", i))
		if err := os.WriteFile(f, certPEM, 0o644); err != nil {
			b.Fatal(err)
		}
		files, hosts = append(files, f), append(hosts, last)
	}
	return files, hosts
}

// mastershrinkBinary is MASTERSHRINK_BENCH_BIN, or a build of the repository's command.
func mastershrinkBinary(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("MASTERSHRINK_BENCH_BIN"); p != "" {
		return p
	}
	out := filepath.Join(b.TempDir(), "mastershrink")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/mastershrink")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build mastershrink: %v\n%s", err, msg)
	}
	return out
}

// cfsslBinary is the lab's cfssl (built once into the cache by make lab-binaries), else one
// on PATH.
func cfsslBinary() (string, error) {
	p := filepath.Join(testenv.CacheDir(), "bin", "cfssl-"+testenv.CfsslVersion, "cfssl")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("cfssl"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no cfssl: not in %s nor on PATH (make lab-binaries builds it)", p)
}
