package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mastershrink/mastershrink/internal/version"
	"github.com/mastershrink/mastershrink/lb"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/unitfile"
)

// The bad-input corpus (testdata/bad): malformed inventories, plans, nginx configs, unit files
// and PEMs, as they turn up on real machines. Each must give one line naming the problem,
// a non-zero exit where the CLI reads it, and change nothing.

// treeState is every file under dir with its hash: what "changes nothing" compares.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		lines = append(lines, p+" "+hex.EncodeToString(sum[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// copyCorpus copies one corpus file into a fresh folder, so the test can see the folder
// stays as it was.
func copyCorpus(t *testing.T, rel string) (dir, path string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "bad", rel))
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	path = filepath.Join(dir, filepath.Base(rel))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// writeReferenced writes the local files the corpus inventories name, empty.
func writeReferenced(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"admin.kubeconfig", "id_ed25519", "known_hosts"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// errorLine is the "error: ..." line main prints; the run must print exactly one.
func errorLine(errOut string) (string, []string) {
	var found []string
	for _, l := range strings.Split(strings.TrimRight(errOut, "\n"), "\n") {
		if strings.HasPrefix(l, "error: ") {
			found = append(found, l)
		}
	}
	// certs inspect takes many files: one line per bad file, then a count that points up.
	if len(found) == 2 && strings.HasSuffix(found[1], "(see above)") {
		found = found[:1]
	}
	if len(found) != 1 {
		return errOut, []string{fmt.Sprintf("want one error line, got %d:\n%s", len(found), errOut)}
	}
	return strings.TrimPrefix(found[0], "error: "), nil
}

// knownGaps are corpus files the code still accepts or explains poorly, with the package
// that should catch them. Their subtests skip, naming the gap, while the gap is there, and
// are checked like every other case once it is closed.
var knownGaps = map[string]string{}

// verdict reports a case's problems: for a known gap, a skip while they last and an error
// once they are gone; for every other case, each problem as an error.
func verdict(t *testing.T, key string, problems []string) {
	t.Helper()
	reason, isGap := knownGaps[key]
	switch {
	case isGap && len(problems) > 0:
		t.Skipf("KNOWN GAP: %s (%s)", reason, problems[0])
	case isGap:
		t.Errorf("%s is no longer a gap (%s): take it out of knownGaps", key, reason)
	default:
		for _, p := range problems {
			t.Error(p)
		}
	}
}

// refusal checks a CLI run on bad input: non-zero exit, nothing on stdout, one error line
// naming every want.
func refusal(out, errOut string, code int, want []string) []string {
	var problems []string
	if code == exitOK {
		problems = append(problems, "exit 0 on bad input; stderr:\n"+errOut)
	}
	if out != "" {
		problems = append(problems, fmt.Sprintf("stdout not empty on bad input: %q", out))
	}
	line, p := errorLine(errOut)
	return append(append(problems, p...), errText(line, want)...)
}

func errCheck(err error, want []string) []string {
	if err == nil {
		return []string{fmt.Sprintf("accepted; want an error naming %q", want)}
	}
	return errText(err.Error(), want)
}

func errText(msg string, want []string) []string {
	var problems []string
	if strings.Contains(msg, "\n") {
		problems = append(problems, "the error spans lines:\n"+msg)
	}
	if len(msg) > 400 {
		problems = append(problems, fmt.Sprintf("the error is %d bytes long: %s", len(msg), msg))
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			problems = append(problems, fmt.Sprintf("the error does not name %q: %s", w, msg))
		}
	}
	return problems
}

// unchanged compares a folder's state before and after.
func unchanged(before, after string) []string {
	if before == after {
		return nil
	}
	return []string{fmt.Sprintf("the folder changed:\nbefore:\n%s\nafter:\n%s", before, after)}
}

func TestBadInputCorpus(t *testing.T) {
	t.Run("inventory", func(t *testing.T) {
		cases := map[string][]string{
			"malformed-yaml.yaml":       {"malformed-yaml.yaml:10:", "invalid YAML"},
			"unknown-field.yaml":        {"unknown-field.yaml", "hostz"},
			"misspelt-key.yaml":         {"misspelt-key.yaml", "identity_flie"},
			"no-hosts.yaml":             {"no-hosts.yaml", "hosts"},
			"duplicate-host.yaml":       {"duplicate-host.yaml", "m1"},
			"bad-address.yaml":          {"bad-address.yaml", "10.88.0.300"},
			"unknown-role.yaml":         {"unknown-role.yaml", "controlplane"},
			"other-format-version.yaml": {"other-format-version.yaml", "format_version"},
			"unknown-layout.yaml":       {"unknown-layout.yaml", "kubespray"},
			"bad-duration.yaml":         {"bad-duration.yaml", "soon"},
			"empty.yaml":                {"empty.yaml"},
			"binary.yaml":               {"binary.yaml"},
			"missing-cluster.yaml":      {"missing-cluster.yaml:1: cluster: missing", "cluster: prod-sh"},
			"missing-kubeconfig.yaml":   {"missing-kubeconfig.yaml:1: kubeconfig: missing", "kubeconfig: admin.kubeconfig"},
			"bad-cluster-name.yaml":     {"bad-cluster-name.yaml:2: cluster:", `"prod/sh"`},
			"identity-file-missing.yaml": {"identity-file-missing.yaml:7: ssh.identity_file:", "keys/ops_ed25519 does not exist",
				"fix the path", "ssh-agent"},
			"known-hosts-missing.yaml": {"known-hosts-missing.yaml:8: ssh.known_hosts:", ".ssh/known_hosts.does-not-exist does not exist",
				"ssh-keyscan 127.0.0.1 >> "},
			"kubeconfig-file-missing.yaml": {"kubeconfig-file-missing.yaml:4: kubeconfig:", "/etc/kubernetes/admin.kubeconfig.missing does not exist",
				"copy the cluster's admin kubeconfig there"},
		}
		checkCorpusDir(t, "inventory", cases)
		for name, want := range cases {
			t.Run(name, func(t *testing.T) {
				dir, path := copyCorpus(t, filepath.Join("inventory", name))
				// The files the corpus inventories name are there, so that each case shows
				// its own problem first.
				writeReferenced(t, dir)
				before := treeState(t, dir)
				out, errOut, code := run(t, "plan", "-i", path, "--remove", "m1", "--out", filepath.Join(dir, "plan.json"))
				t.Logf("stderr: %s", errOut)
				problems := append(refusal(out, errOut, code, want), unchanged(before, treeState(t, dir))...)
				// inventory validate says the same, connecting to nothing; a file that does
				// not validate is the operator's input to fix: exit 4.
				out, errOut, code = run(t, "inventory", "validate", path)
				problems = append(problems, refusal(out, errOut, code, want)...)
				if code != exitUsage {
					problems = append(problems, fmt.Sprintf("inventory validate: exit %d, want %d", code, exitUsage))
				}
				verdict(t, "inventory/"+name, problems)
			})
		}
	})

	// Flags and arguments of the commands that read no cluster: a usage error (exit 4)
	// naming the flag and what it wants.
	t.Run("flags", func(t *testing.T) {
		inv := writeInventory(t, strings.Replace(goodInventory, "  - {name: m1, address: 127.0.0.1, roles: [etcd, master]}\n",
			"  - {name: m1, address: 192.0.2.11, roles: [etcd, master]}\n  - {name: m2, address: 192.0.2.12, roles: [etcd, master]}\n  - {name: m3, address: 192.0.2.13, roles: [etcd, master]}\n", 1))
		cases := []struct {
			name string
			args []string
			code int
			want []string
		}{
			{"-v with a word", []string{"version", "-v=loud"}, exitUsage, []string{`"loud"`, "want a level such as 4"}},
			{"--v with a negative level", []string{"version", "--v=-1"}, exitUsage, []string{`"-1"`, "want a level"}},
			{"version -o xml", []string{"version", "-o", "xml"}, exitUsage, []string{`-o "xml"`, "text, json or yaml"}},
			{"inventory show -o wide", []string{"inventory", "show", inv, "-o", "wide"}, exitUsage, []string{`-o "wide"`, "table, json or yaml"}},
			{"inventory validate without a file", []string{"inventory", "validate"}, exitUsage, []string{"no inventory", "-i inventory.yaml"}},
			{"inventory validate with two files", []string{"inventory", "validate", "-i", inv, "other.yaml"}, exitUsage, []string{"two inventories", "give one"}},
			{"inventory without a subcommand", []string{"inventory"}, exitUsage, []string{"validate|show"}},
			{"inventory show of a missing file", []string{"inventory", "show", "no-such-inventory.yaml"}, exitUsage, []string{"inventory no-such-inventory.yaml does not exist", "-i"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				out, errOut, code := run(t, tc.args...)
				problems := refusal(out, errOut, code, tc.want)
				if code != tc.code {
					problems = append(problems, fmt.Sprintf("exit %d, want %d", code, tc.code))
				}
				verdict(t, "flags/"+tc.name, problems)
			})
		}
	})

	// Targets the inventory alone shows to be wrong: refused (exit 3) with every problem and
	// its way out, before any host is dialled, though none would answer.
	t.Run("target", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want []string // in the whole of stderr; the first is in the error line
		}{
			{"unknown host", []string{"plan", "--remove", "m9"}, []string{`--remove m9: no host "m9" in the inventory`, "m1, m2, m3, w1, w2"}},
			{"typo of a host", []string{"plan", "--drain", "w22"}, []string{`--drain w22: no host "w22"`, "did you mean w2?"}},
			{"address instead of name", []string{"plan", "--remove", "192.0.2.12"}, []string{"192.0.2.12 is the address of m2", "use --remove m2"}},
			{"every master", []string{"plan", "--remove", "m1,m2,m3"}, []string{"removes every master", "remove fewer hosts"}},
			{"worker in --remove", []string{"plan", "--remove", "w1"}, []string{"--remove w1: w1 is a worker", "--drain w1"}},
			{"master in --drain", []string{"plan", "--drain", "m1"}, []string{"--drain m1: m1 is a master and etcd host", "--remove m1"}},
			{"offline host not leaving", []string{"plan", "--remove", "m3", "--offline", "m2"}, []string{"--offline m2: m2 is neither removed nor drained", "drop it from --offline"}},
			{"stray comma", []string{"plan", "--remove", "m3,"}, []string{"an empty host name", "--remove m2,m3"}},
			{"apply on the spot", []string{"apply", "--remove", "m9", "--yes"}, []string{`--remove m9: no host "m9"`}},
			{"every problem at once", []string{"plan", "--remove", "m9,w1", "--drain", "m1", "--offline", "w2"}, []string{
				"the target has 4 problems:",
				`--remove m9: no host "m9"`, "--remove w1: w1 is a worker", "--drain m1: m1 is a master", "--offline w2: w2 is neither removed nor drained",
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				dir, inv := copyCorpus(t, filepath.Join("target", "unreachable.yaml"))
				writeReferenced(t, dir)
				t.Chdir(dir) // apply on the spot writes its plan in the working folder
				before := treeState(t, dir)
				var dialled []string
				dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
					dialled = append(dialled, addr)
					return nil, errors.New("the test's network reaches nothing")
				}
				var out, errOut bytes.Buffer
				cmd := newRootCmdWithDial(streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, dial)
				cmd.SetArgs(append(tc.args, "-i", inv, "--out", filepath.Join(dir, "plan.json")))
				err := cmd.Execute()
				if err != nil {
					errOut.WriteString("error: " + err.Error() + "\n")
				}
				t.Logf("stderr: %s", errOut.String())
				var problems []string
				if code := exitCode(err); code != exitRefused {
					problems = append(problems, fmt.Sprintf("exit %d, want %d (refused)", code, exitRefused))
				}
				if len(dialled) > 0 {
					problems = append(problems, fmt.Sprintf("dialled %v before refusing", dialled))
				}
				if out.Len() > 0 {
					problems = append(problems, fmt.Sprintf("stdout not empty: %q", out.String()))
				}
				line, p := errorLine(errOut.String())
				problems = append(problems, p...)
				if !strings.Contains(line, tc.want[0]) {
					problems = append(problems, fmt.Sprintf("the error line does not name %q: %s", tc.want[0], line))
				}
				for _, w := range tc.want[1:] {
					if !strings.Contains(errOut.String(), w) {
						problems = append(problems, fmt.Sprintf("stderr does not name %q", w))
					}
				}
				verdict(t, "target/"+tc.name, append(problems, unchanged(before, treeState(t, dir))...))
			})
		}
	})

	t.Run("plan", func(t *testing.T) {
		cases := map[string][]string{
			"truncated.json":            {"truncated.json", "not a plan file"},
			"edited.json":               {"edited.json", "edited after it was written"},
			"other-format-version.json": {"other-format-version.json", "another format version", "99"},
			"other-tool-version.json":   {"other-tool-version.json", "another version of mastershrink", "v0.0.1-corpus"},
			"no-checksum.json":          {"no-checksum.json", "no checksum"},
			"not-json.json":             {"not-json.json", "not a plan file"},
			"empty.json":                {"empty.json", "not a plan file"},
		}
		checkCorpusDir(t, "plan", cases)
		inv := writeInventory(t, goodInventory)
		for name, want := range cases {
			t.Run(name, func(t *testing.T) {
				dir, path := copyCorpus(t, filepath.Join("plan", name))
				before := treeState(t, dir)
				out, errOut, code := run(t, "apply", path, "-i", inv)
				t.Logf("stderr: %s", errOut)
				// A journal or audit log next to the plan would show here.
				verdict(t, "plan/"+name, append(refusal(out, errOut, code, want), unchanged(before, treeState(t, dir))...))
			})
		}
	})

	t.Run("pem", func(t *testing.T) {
		cases := map[string][]string{
			"garbage.pem":             {"garbage.pem"},
			"key-instead-of-cert.pem": {"key-instead-of-cert.pem"},
			"truncated.pem":           {"truncated.pem"},
			"not-der.pem":             {"not-der.pem"},
			"csr-instead-of-cert.pem": {"csr-instead-of-cert.pem"},
			"empty.pem":               {"empty.pem"},
		}
		checkCorpusDir(t, "pem", cases)
		for name, want := range cases {
			t.Run(name, func(t *testing.T) {
				dir, path := copyCorpus(t, filepath.Join("pem", name))
				before := treeState(t, dir)
				out, errOut, code := run(t, "certs", "inspect", path)
				t.Logf("stderr: %s", errOut)
				verdict(t, "pem/"+name, append(refusal(out, errOut, code, want), unchanged(before, treeState(t, dir))...))
			})
		}
	})

	t.Run("nginx", func(t *testing.T) {
		apiservers := []string{"10.88.0.11:6443", "10.88.0.12:6443", "10.88.0.13:6443"}
		cases := map[string][]string{
			"unbalanced-brace.conf":      {"unbalanced-brace.conf"},
			"missing-semicolon.conf":     {"missing-semicolon.conf"},
			"no-apiserver-upstream.conf": {"no-apiserver-upstream.conf"},
			"no-stream.conf":             {"no-stream.conf"},
			"include-missing.conf":       {"include-missing.conf", "conf.d/apiserver-upstream.conf"},
		}
		checkCorpusDir(t, "nginx", cases)
		for name, want := range cases {
			t.Run(name, func(t *testing.T) {
				data, err := os.ReadFile(filepath.Join("testdata", "bad", "nginx", name))
				if err != nil {
					t.Fatal(err)
				}
				main := "/approot/data/k8s/kube-nginx/" + name
				files := map[string]string{main: string(data)}
				cfg, err := lb.Parse("w2", main, files, apiservers)
				if err == nil {
					// The planner's check: a proxy fronting no apiserver is refused (lb-no-apiserver).
					err = lb.RequireAPIServer(cfg)
				}
				if err == nil {
					// Parsed: the rewrite must then refuse, naming why.
					_, err = lb.Rewrite(cfg, apiservers[1:], lb.MarkDown)
				}
				problems := errCheck(err, want)
				if files[main] != string(data) {
					problems = append(problems, "the config given was changed")
				}
				verdict(t, "nginx/"+name, problems)
			})
		}
	})

	t.Run("unit", func(t *testing.T) {
		cases := map[string][]string{
			"flag-missing.service":        {"--etcd-servers", "flag not found"},
			"flag-repeated.service":       {"--etcd-servers", "more than once"},
			"broken-continuation.service": {"broken-continuation.service", "trailing backslash"},
			"unterminated-quote.service":  {"unterminated-quote.service", "quote"},
			"no-execstart.service":        {"ExecStart"},
			"bad-section-header.service":  {"bad-section-header.service", "section"},
		}
		checkCorpusDir(t, "unit", cases)
		for name, want := range cases {
			t.Run(name, func(t *testing.T) {
				data, err := os.ReadFile(filepath.Join("testdata", "bad", "unit", name))
				if err != nil {
					t.Fatal(err)
				}
				verdict(t, "unit/"+name, errCheck(unitEdit(name, string(data)), want))
			})
		}
		t.Run("line over systemd's limit", func(t *testing.T) {
			// systemd refuses a unit line longer than LONG_LINE_MAX (1 MiB).
			long := "[Service]\nExecStart=/approot/data/k8s/bin/kube-apiserver --etcd-servers=https://10.88.0.11:2379 --feature-gates=" +
				strings.Repeat("A=true,", (1<<20)/7+1) + "B=true\n"
			verdict(t, "unit/long-line.service", errCheck(unitEdit("long-line.service", long), []string{"long-line.service", "line"}))
		})
	})
}

// unitEdit parses a kube-apiserver unit and plans the --etcd-servers rewrite of the shrink.
func unitEdit(name, content string) error {
	frag := "/etc/systemd/system/" + name
	u, err := unitfile.Parse(name, frag, map[string]string{frag: content}, nil, nil)
	if err != nil {
		return err
	}
	_, err = u.SetFlag("m1", "--etcd-servers", "https://10.88.0.11:2379")
	return err
}

// checkCorpusDir asserts the cases cover every file of the corpus folder, so a file added
// without an expectation fails.
func checkCorpusDir(t *testing.T, sub string, cases map[string][]string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("testdata", "bad", sub))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, ok := cases[e.Name()]; !ok {
			t.Errorf("testdata/bad/%s/%s has no expectation in the test", sub, e.Name())
		}
	}
}

// TestBadInputStatusUndoImport is the corpus for status, undo, inventory import and the
// kubeconfig flags: each case exits non-zero with one line naming the problem, prints
// nothing on stdout, dials nothing (the inventory's hosts are in TEST-NET) and writes
// nothing.
func TestBadInputStatusUndoImport(t *testing.T) {
	t.Run("flags", func(t *testing.T) {
		inv := writeInventory(t, strings.Replace(goodInventory, "  - {name: m1, address: 127.0.0.1, roles: [etcd, master]}\n",
			"  - {name: m1, address: 192.0.2.11, roles: [etcd, master]}\n  - {name: m2, address: 192.0.2.12, roles: [etcd, master]}\n  - {name: m3, address: 192.0.2.13, roles: [etcd, master]}\n", 1))
		dir := filepath.Dir(inv)
		kc := filepath.Join(dir, "other.kubeconfig")
		os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters: [{name: a, cluster: {server: https://192.0.2.1:6443}}]\ncontexts: [{name: a, context: {cluster: a, user: u}}]\nusers: [{name: u, user: {token: x}}]\n"), 0o600)
		missing := filepath.Join(dir, "missing.kubeconfig")
		cases := []struct {
			name string
			env  string
			args []string
			code int
			want []string
		}{
			{"status without inventory", "", []string{"status"}, exitUsage, []string{"-i inventory.yaml"}},
			{"status bad output", "", []string{"status", "-i", inv, "-o", "xml"}, exitUsage, []string{`-o "xml"`, "table, json or yaml"}},
			{"status with an argument", "", []string{"status", "-i", inv, "m1"}, exitUsage, []string{"unknown command"}},
			{"plan yml", "", []string{"plan", "-i", inv, "--remove", "m3", "-o", "yml"}, exitUsage, []string{`-o "yml"`, "table, json or yaml"}},
			{"status --kubeconfig missing", "", []string{"status", "-i", inv, "--kubeconfig", missing}, exitUsage, []string{missing, "(--kubeconfig)"}},
			{"plan --kubeconfig missing", "", []string{"plan", "-i", inv, "--remove", "m3", "--kubeconfig", missing}, exitUsage, []string{missing, "(--kubeconfig)"}},
			{"unknown --context", "", []string{"status", "-i", inv, "--kubeconfig", kc, "--context", "prod"}, exitUsage, []string{`context "prod"`, "kubectl config get-contexts"}},
			{"KUBECONFIG of missing files", missing, []string{"status", "-i", inv}, exitUsage, []string{missing, "(KUBECONFIG)"}},
			{"unknown --context from KUBECONFIG", kc, []string{"plan", "-i", inv, "--remove", "m3", "--context", "prod"}, exitUsage, []string{`context "prod"`}},
			{"--context without a value", "", []string{"status", "-i", inv, "--context"}, exitUsage, []string{"flag needs an argument", "context"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Setenv("KUBECONFIG", tc.env)
				before := treeState(t, dir)
				out, errOut, code := run(t, tc.args...)
				problems := refusal(out, errOut, code, tc.want)
				if code != tc.code {
					problems = append(problems, fmt.Sprintf("exit %d, want %d", code, tc.code))
				}
				verdict(t, "flags/"+tc.name, append(problems, unchanged(before, treeState(t, dir))...))
			})
		}
	})

	t.Run("undo", func(t *testing.T) {
		cases := map[string][]string{
			"truncated.json":            {"truncated.json", "not a plan file"},
			"edited.json":               {"edited.json", "edited after it was written"},
			"other-format-version.json": {"other-format-version.json", "another format version"},
			"other-tool-version.json":   {"other-tool-version.json", "another version of mastershrink"},
			"no-checksum.json":          {"no-checksum.json", "no checksum"},
			"not-json.json":             {"not-json.json", "not a plan file"},
			"empty.json":                {"empty.json", "not a plan file"},
		}
		checkCorpusDir(t, "plan", cases)
		inv := writeInventory(t, goodInventory)
		for name, want := range cases {
			t.Run(name, func(t *testing.T) {
				dir, path := copyCorpus(t, filepath.Join("plan", name))
				before := treeState(t, dir)
				out, errOut, code := run(t, "undo", path, "-i", inv, "--yes")
				verdict(t, "undo/"+name, append(refusal(out, errOut, code, want), unchanged(before, treeState(t, dir))...))
			})
		}
		// A good plan that never ran, and one of another cluster.
		for _, tc := range []struct {
			name, cluster string
			want          []string
		}{
			{"never applied", "t", []string{"the journal records no step of this plan", "nothing to undo"}},
			{"other cluster", "prod", []string{`the plan is for cluster "prod"`, `"t"`}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := &plan.Plan{FormatVersion: plan.FormatVersion, ToolVersion: version.String(), Cluster: tc.cluster,
					Steps: []plan.Step{{ID: "preflight", Kind: plan.KindPreflight, Risk: plan.Safe}}}
				data, err := plan.Encode(p)
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				path := filepath.Join(dir, "plan.json")
				os.WriteFile(path, data, 0o600)
				before := treeState(t, dir)
				out, errOut, code := run(t, "undo", path, "-i", inv, "--yes")
				problems := refusal(out, errOut, code, tc.want)
				if code != exitRefused {
					problems = append(problems, fmt.Sprintf("exit %d, want %d", code, exitRefused))
				}
				verdict(t, "undo/"+tc.name, append(problems, unchanged(before, treeState(t, dir))...))
			})
		}
	})

	t.Run("kubeasz", func(t *testing.T) {
		cases := map[string][]string{
			"range.hosts":          {"range.hosts:2:", "ranges are not imported", "each host on its own line"},
			"no-masters.hosts":     {"no-masters.hosts", "0 in [kube_master]"},
			"bad-port.hosts":       {"bad-port.hosts:5:", `ansible_ssh_port="twentytwo" is no port`},
			"binary.hosts":         {"binary.hosts", "not a text file", "clusters/NAME/hosts"},
			"unclosed-quote.hosts": {"unclosed-quote.hosts:5:", "unclosed quote"},
			"duplicate-name.hosts": {"duplicate-name.hosts:", "host name master is given to two hosts"},
			"bad-nodename.hosts":   {"bad-nodename.hosts:4:", `k8s_nodename "Master_01!"`},
			"bad-section.hosts":    {"bad-section.hosts:1:", "has no ']'"},
		}
		checkCorpusDir(t, "kubeasz", cases)
		for name, want := range cases {
			t.Run(name, func(t *testing.T) {
				dir, path := copyCorpus(t, filepath.Join("kubeasz", name))
				before := treeState(t, dir)
				out, errOut, code := run(t, "inventory", "import", "kubeasz", path)
				problems := refusal(out, errOut, code, want)
				if code != exitUsage {
					problems = append(problems, fmt.Sprintf("exit %d, want %d", code, exitUsage))
				}
				verdict(t, "kubeasz/"+name, append(problems, unchanged(before, treeState(t, dir))...))
			})
		}
	})
}
