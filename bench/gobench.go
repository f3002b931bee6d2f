package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GoBench names one Go benchmark of the repository.
type GoBench struct {
	// Pkg is the package folder relative to the repository root ("lb").
	Pkg string
	// Name is the benchmark function ("BenchmarkLB200Hosts").
	Name string
	// Env is added to the benchmark's environment.
	Env []string
}

// GoBenchRun is one run of a Go benchmark with -benchtime 1x.
type GoBenchRun struct {
	// Metrics are the benchmark's figures by unit, ns/op and every ReportMetric.
	Metrics map[string]float64
	// PeakRSSMB is the high-water mark of the benchmark process's own resident memory
	// (VmHWM), children such as etcd, kube-apiserver or openssl left out.
	PeakRSSMB float64
	// Skipped holds the reason when the benchmark skipped itself.
	Skipped string
	Took    time.Duration
}

// CompileTests builds the test binary of pkg (relative to root) into dir, once per package.
func CompileTests(ctx context.Context, root, pkg, dir string) (string, error) {
	out := filepath.Join(dir, strings.ReplaceAll(pkg, "/", "_")+".test")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", out, "./"+pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("compile the tests of %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// RunGoBench runs one benchmark once (-benchtime 1x) from the test binary, in the package's
// folder as go test would, and samples the process's peak memory while it runs.
func RunGoBench(ctx context.Context, root, binary string, b GoBench) (GoBenchRun, error) {
	var run GoBenchRun
	cmd := exec.CommandContext(ctx, binary, "-test.run", "^$", "-test.bench", "^"+b.Name+"$",
		"-test.benchtime", "1x", "-test.timeout", "60m", "-test.v")
	cmd.Dir = filepath.Join(root, b.Pkg)
	cmd.Env = append(os.Environ(), b.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return run, fmt.Errorf("%s: %w", b.Name, err)
	}
	peak := samplePeakRSS(cmd.Process.Pid)
	err := cmd.Wait()
	run.PeakRSSMB = float64(peak()) / 1024
	run.Took = time.Since(start)
	text := out.String()
	if err != nil {
		return run, fmt.Errorf("%s in %s: %w\n%s", b.Name, b.Pkg, err, tail(text, 30))
	}
	if reason, ok := skipReason(text, b.Name); ok {
		run.Skipped = reason
		return run, nil
	}
	m, ok := ParseBenchOutput(text, b.Name)
	if !ok {
		return run, fmt.Errorf("%s in %s: no result line in its output:\n%s", b.Name, b.Pkg, tail(text, 30))
	}
	run.Metrics = m
	return run, nil
}

// samplePeakRSS polls the VmHWM of pid until the returned function is called, which returns
// the largest value seen in KiB. VmHWM only grows, so the last reading before exit is the peak
// up to the sampling interval.
func samplePeakRSS(pid int) func() int64 {
	var mu sync.Mutex
	var peak int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if kb, ok := vmHWM(pid); ok {
				mu.Lock()
				peak = max(peak, kb)
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

func vmHWM(pid int) (int64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// ParseBenchOutput finds the result line of benchmark name in go test output
// ("BenchmarkX-2   1   123 ns/op   4.5 ratio ...") and returns its figures by unit.
func ParseBenchOutput(out, name string) (map[string]float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, false
			}
			m[f[i+1]] = v
		}
		return m, true
	}
	return nil, false
}

// skipReason finds "--- SKIP: BenchmarkX" and the line after it.
func skipReason(out, name string) (string, bool) {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, "--- SKIP: "+name) {
			if i+1 < len(lines) {
				return strings.TrimSpace(lines[i+1]), true
			}
			return "skipped", true
		}
	}
	return "", false
}

func tail(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
