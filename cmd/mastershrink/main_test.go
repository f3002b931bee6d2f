package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/term"

	"github.com/mastershrink/mastershrink/host/sshdtest"
	"github.com/mastershrink/mastershrink/internal/version"
)

// run executes the CLI in-process and returns stdout, stderr and the exit code main would use.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err != nil {
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), exitCode(err)
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "mastershrink ") {
		t.Errorf("version: code %d, out %q", code, out)
	}
}

// writeInventory writes an inventory into a fresh folder, with the files goodInventory
// names beside it (empty: the tests never get as far as using them), since the inventory
// refuses to load without them.
func writeInventory(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	writeReferenced(t, dir)
	p := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodInventory = `format_version: 1
cluster: t
layout: seed003
kubeconfig: admin.kubeconfig
ssh:
  user: root
  identity_file: id_ed25519
  known_hosts: known_hosts
  connect_timeout: 1s
hosts:
  - {name: m1, address: 127.0.0.1, roles: [etcd, master]}
`

// Bad input as a new user types it: one line naming the problem, a non-zero exit, and
// nothing observed.
func TestPlanBadInput(t *testing.T) {
	cases := []struct {
		name      string
		inventory string
		args      []string
		code      int
		want      string
	}{
		{name: "no inventory", args: []string{"plan", "--remove", "m2"}, code: exitUsage, want: "-i inventory.yaml"},
		{name: "nothing to do", inventory: goodInventory, args: []string{"plan"}, code: exitUsage, want: "--remove"},
		{name: "bad output", inventory: goodInventory, args: []string{"plan", "--remove", "m1", "-o", "xml"}, code: exitUsage, want: "table, json or yaml"},
		{name: "unknown flag", inventory: goodInventory, args: []string{"plan", "--remvoe", "m1"}, code: exitUsage, want: "unknown flag"},
		{name: "malformed yaml", inventory: "hosts: [\n  {name: m1\n", args: []string{"plan", "--remove", "m1"}, code: exitUsage, want: "inventory.yaml:"},
		{name: "role typo", inventory: strings.Replace(goodInventory, "[etcd, master]", "[etcd, mastr]", 1), args: []string{"plan", "--remove", "m1"}, code: exitUsage, want: `"mastr"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.inventory != "" {
				args = append(args, "-i", writeInventory(t, tc.inventory))
			}
			out, errOut, code := run(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr does not name the problem (%q):\n%s", tc.want, errOut)
			}
			if out != "" {
				t.Errorf("stdout not empty on error: %q", out)
			}
		})
	}
}

// TestMain lets a test run this binary as mastershrink itself (MASTERSHRINK_TEST_MAIN=1), to
// send it real signals.
func TestMain(m *testing.M) {
	if os.Getenv("MASTERSHRINK_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

func TestReport(t *testing.T) {
	interrupted := func(sig os.Signal) context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(interruptedError{sig})
		return ctx
	}
	blame := fmt.Errorf("ssh m3 (10.88.0.13:22): %w", context.Canceled)
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		code   int
		stderr string
	}{
		{"Ctrl-C", interrupted(os.Interrupt), blame, 130, "error: interrupted; run the same command to continue\n"},
		{"SIGTERM", interrupted(syscall.SIGTERM), blame, 143, "error: interrupted; run the same command to continue\n"},
		{"interrupted after the work was done", interrupted(os.Interrupt), nil, exitOK, ""},
		{"a refusal, no signal", context.Background(), refusedError{errors.New("stale plan")}, exitRefused, "error: stale plan\n"},
		// A timeout inside the command is no interrupt: the host is to blame then.
		{"a deadline, no signal", context.Background(), blame, exitError, "error: " + blame.Error() + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			if code := report(tt.ctx, tt.err, &errOut); code != tt.code || errOut.String() != tt.stderr {
				t.Errorf("report = %d, %q; want %d, %q", code, errOut.String(), tt.code, tt.stderr)
			}
		})
	}
}

// A real Ctrl-C while plan waits on an SSH handshake: exit 130 with the way on, and no host
// blamed.
func TestInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	// An SSH server that accepts and never says a word: the handshake waits on it.
	port := sshdtest.Mute(t)
	inv := writeInventory(t, fmt.Sprintf(`format_version: 1
cluster: t
layout: seed003
kubeconfig: admin.kubeconfig
ssh: {identity_file: id_ed25519, known_hosts: known_hosts, connect_timeout: 5m, port: %d}
hosts:
  - {name: m1, address: 127.0.0.1, roles: [etcd, master]}
  - {name: m2, address: localhost, roles: [etcd, master]}
`, port))
	// A real key, so that the run gets as far as dialling.
	sshdtest.WriteKey(t, filepath.Join(filepath.Dir(inv), "id_ed25519"))

	cmd := exec.Command(os.Args[0], "plan", "-i", inv, "--remove", "m2")
	cmd.Env = append(os.Environ(), "MASTERSHRINK_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var got bytes.Buffer
	observing := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			got.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Observing cluster") {
				close(observing)
			}
		}
	}()
	select {
	case <-observing:
	case <-time.After(time.Minute):
		t.Fatalf("plan never started observing")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-copied
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("exit: %v, want 130", err)
	}
	if !strings.HasSuffix(got.String(), "error: interrupted; run the same command to continue\n") || strings.Contains(got.String(), "m1") {
		t.Errorf("stderr:\n%s", got.String())
	}
}

func TestVersionFlagAndJSON(t *testing.T) {
	out, _, code := run(t, "--version")
	if code != exitOK || out != "mastershrink "+version.String()+"\n" {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	out, errOut, code := run(t, "version", "-o", "json")
	var v map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("version -o json: exit %d, %q, %s", code, out, errOut)
	}
	info := version.Get()
	if v["format_version"] != 1.0 || v["version"] != info.Version || v["commit"] != info.Commit || v["go"] != runtime.Version() || v["modified"] != info.Modified {
		t.Errorf("version -o json = %v", v)
	}
	if _, errOut, code := run(t, "version", "-o", "xml"); code != exitUsage || !strings.Contains(errOut, "want text, json or yaml") {
		t.Errorf("version -o xml: exit %d, %s", code, errOut)
	}
}

// -v is a switch and kubectl's level at once; whatever the spelling, the level reaches slog.
func TestVerbosity(t *testing.T) {
	inv := writeInventory(t, goodInventory)
	tests := []struct {
		args  []string
		level int
	}{
		{nil, 0},
		{[]string{"-v"}, 1},
		{[]string{"--verbose"}, 1},
		{[]string{"--verbose=true"}, 1},
		{[]string{"-vv"}, 2},
		{[]string{"-v=4"}, 4},
		{[]string{"--v=4"}, 4},
		{[]string{"--v"}, 1},
		{[]string{"--verbose=6"}, 6},
		{[]string{"-v=4", "--verbose=false"}, 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := newRootCmd(streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
			cmd.SetArgs(append([]string{"inventory", "validate", inv}, tt.args...))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			got := cmd.PersistentFlags().Lookup("verbose").Value.String()
			if got != fmt.Sprint(tt.level) {
				t.Errorf("level %s, want %d", got, tt.level)
			}
			logs := errOut.String()
			info := strings.Contains(logs, "level=INFO msg=\"inventory loaded\"")
			debug := strings.Contains(logs, "level=DEBUG msg=mastershrink")
			if info != (tt.level >= 1) || debug != (tt.level >= 4) {
				t.Errorf("level %d logged:\n%s", tt.level, logs)
			}
		})
	}
	_, errOut, code := run(t, "version", "-v=loud")
	if code != exitUsage || !strings.Contains(errOut, `want a level such as 4 (or true or false), got "loud"`) {
		t.Errorf("-v=loud: exit %d, %s", code, errOut)
	}
}

func TestColorFor(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tests := []struct {
		name string
		tty  bool
		env  func(string) string
		want bool
	}{
		{"terminal", true, env("TERM", "xterm-256color"), true},
		{"pipe", false, env("TERM", "xterm-256color"), false},
		{"NO_COLOR", true, env("TERM", "xterm", "NO_COLOR", "1"), false},
		{"NO_COLOR empty is unset", true, env("TERM", "xterm", "NO_COLOR", ""), true},
		{"dumb terminal", true, env("TERM", "dumb"), false},
	}
	for _, tt := range tests {
		if got := colorFor(tt.tty, tt.env); got != tt.want {
			t.Errorf("%s: colorFor = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Each stream is asked on its own: stdout to a file leaves stderr and stdin terminals.
func TestDefaultStreamsPerStream(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdout
	os.Stdout = f
	defer func() { os.Stdout = saved }()
	s := defaultStreams()
	if s.IsTerminal {
		t.Error("a file on stdout counted as a terminal")
	}
	if s.ErrIsTerminal != term.IsTerminal(int(os.Stderr.Fd())) || s.InIsTerminal != term.IsTerminal(int(os.Stdin.Fd())) {
		t.Errorf("stderr/stdin terminal: %v %v", s.ErrIsTerminal, s.InIsTerminal)
	}
}

// make build gives a binary that needs no dynamic loader or libc (it starts on old jump
// hosts), carries no symbol table, and runs.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The Makefile's own command, writing elsewhere so a developer's bin/ stays as it is.
	dry := exec.Command("make", "-s", "-n", "build")
	dry.Dir = root
	line, err := dry.Output()
	if err != nil {
		t.Fatalf("make -n build: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mastershrink")
	script := strings.Replace(strings.TrimSpace(string(line)), "-o bin/mastershrink", "-o "+bin, 1)
	if !strings.Contains(script, bin) {
		t.Fatalf("make build does not write bin/mastershrink: %s", line)
	}
	build := exec.Command("sh", "-c", script)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("dynamically linked: program header %v", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("needs shared libraries %v", libs)
	}
	if _, err := f.Symbols(); !errors.Is(err, elf.ErrNoSymbols) {
		t.Errorf("not stripped: Symbols() = %v", err)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "mastershrink ") || strings.Contains(string(out), "dev (unknown)") {
		t.Errorf("--version: %q, %v", out, err)
	}
	if out, err := exec.Command(bin, "plan", "--help").Output(); err != nil || !strings.Contains(string(out), "--remove") {
		t.Errorf("plan --help: %v\n%s", err, out)
	}
}
