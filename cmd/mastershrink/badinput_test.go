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
)

// The bad-input corpus: malformed inventories, flags, targets, plans, PEMs, kubeasz hosts
// files, nginx configs and unit files, as they turn up on real machines and in operators'
// hands. Every case declares the exit code it must give, the words of its message that name
// the problem, and the words that name the fix (or says why no fix can be named). Each run
// must print one error line (an indented list may follow it), nothing on stdout, dial no
// host, and leave its folder (inventory, plan, journal, the corpus file) as it was.
// TestBadInputCorpus counts the cases whose message names both and fails below 95%:
//
//	go test -run TestBadInputCorpus -v ./cmd/mastershrink/ | grep 'clear messages'

// badCase is one bad input.
type badCase struct {
	name string
	// file is a file of testdata/bad copied into the case's folder; {file} stands for it.
	file string
	// setup writes more files into the case's folder before the run.
	setup func(t *testing.T, dir string)
	// args is the command line. {dir} is the case's folder, {inv} a good inventory of five
	// hosts nothing answers on (cluster "t"), {plan} a good plan file of that cluster.
	args []string
	// also are other commands given the same input, which must say the same.
	also [][]string
	// kubeconfig is the KUBECONFIG of the run ({dir} substituted); empty unsets it.
	kubeconfig string
	// lib checks an input the CLI reads only from a live host (nginx configs, unit files),
	// with the library code the CLI calls; its exit code is what the CLI maps the error to.
	lib func(dir string) error
	// code is the exit code the run must give.
	code int
	// problem are the words that name the problem (the first on the error line itself), fix
	// the words that name the way out. noFix says why a case cannot name one: it counts
	// against the share of clear messages.
	problem, fix []string
	noFix        string
}

// caseResult is what one run of a case printed.
type caseResult struct {
	out, errOut string
	code        int
	dialled     []string
}

func TestBadInputCorpus(t *testing.T) {
	groups := [][]badCase{
		inventoryCases(), kubeaszCases(), planFileCases(), pemCases(), nginxCases(), unitCases(),
		targetCases(), flagCases(), kubeconfigCases(), undoCases(), applySafetyCases(), certsCases(), nodesCases(),
	}
	seen := map[string]bool{}
	total, clear := 0, 0
	var unclear []string
	for _, group := range groups {
		for _, c := range group {
			if seen[c.name] {
				t.Errorf("two cases named %s", c.name)
			}
			seen[c.name] = true
			total++
			if len(c.fix) > 0 && c.noFix == "" {
				clear++
			} else {
				unclear = append(unclear, c.name+": "+c.noFix)
			}
			t.Run(c.name, func(t *testing.T) {
				if c.noFix == "" && len(c.fix) == 0 {
					t.Errorf("the case names no fix and says not why (noFix)")
				}
				for _, p := range checkBadCase(t, c) {
					t.Error(p)
				}
			})
		}
	}
	for _, sub := range []string{"inventory", "kubeasz", "plan", "pem", "nginx", "unit"} {
		checkCorpusDir(t, sub, seen)
	}
	share := float64(clear) / float64(total)
	t.Logf("bad-input corpus: %d cases, %d with a message naming the problem and the fix: %.1f%% clear messages", total, clear, 100*share)
	for _, u := range unclear {
		t.Logf("  no fix named: %s", u)
	}
	if total < 150 {
		t.Errorf("%d cases, want at least 150", total)
	}
	if share < 0.95 {
		t.Errorf("%.1f%% of the messages name the problem and the fix, want 95%% or more", 100*share)
	}
}

// checkBadCase runs a case in a fresh folder and returns what is wrong with the result. A
// declared problem or fix that the message does not name fails the case: the share counted
// above is then never more than what the messages say.
func checkBadCase(t *testing.T, c badCase) []string {
	t.Helper()
	dir := caseFolder(t, c)
	t.Chdir(dir) // a command that writes into the working folder writes here, and is seen
	before := treeState(t, dir)
	var problems []string
	if c.lib != nil {
		err := c.lib(dir)
		t.Logf("error: %v", err)
		if err == nil {
			return []string{fmt.Sprintf("accepted; want an error naming %q", c.problem)}
		}
		if code := exitCode(err); code != c.code {
			problems = append(problems, fmt.Sprintf("exit %d, want %d", code, c.code))
		}
		problems = append(problems, namesAll(err.Error(), err.Error(), c)...)
	} else {
		for _, args := range append([][]string{c.args}, c.also...) {
			r := runBad(t, dir, c, args)
			t.Logf("%s\nstderr:\n%s", strings.Join(args, " "), r.errOut)
			problems = append(problems, r.check(c)...)
		}
	}
	return append(problems, unchanged(before, treeState(t, dir))...)
}

// caseFolder makes the case's folder: the good inventory and the files it names, a good
// plan, a kubeconfig other than the inventory's, the corpus file, and the case's own files.
func caseFolder(t *testing.T, c badCase) string {
	t.Helper()
	dir := t.TempDir()
	writeReferenced(t, dir)
	inv := strings.Replace(string(mustRead(t, filepath.Join("testdata", "bad", "target", "unreachable.yaml"))), "cluster: unreachable", "cluster: t", 1)
	files := map[string][]byte{
		"inventory.yaml": []byte(inv),
		"plan.json":      mustRead(t, writePlan(t)),
		"other.kubeconfig": []byte("apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters: [{name: a, cluster: {server: https://192.0.2.1:6443}}]\n" +
			"contexts: [{name: a, context: {cluster: a, user: u}}]\nusers: [{name: u, user: {token: x}}]\n"),
	}
	if c.file != "" {
		files[filepath.Base(c.file)] = mustRead(t, filepath.Join("testdata", "bad", c.file))
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if c.setup != nil {
		c.setup(t, dir)
	}
	return dir
}

// runBad runs the CLI in-process, as main would, with every dial recorded and refused.
func runBad(t *testing.T, dir string, c badCase, args []string) caseResult {
	t.Helper()
	t.Setenv("KUBECONFIG", strings.ReplaceAll(c.kubeconfig, "{dir}", dir))
	var r caseResult
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		r.dialled = append(r.dialled, addr)
		return nil, errors.New("the corpus reaches no host")
	}
	var out, errOut bytes.Buffer
	cmd := newRootCmdWithDial(streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, dial)
	placeholders := strings.NewReplacer("{dir}", dir, "{inv}", filepath.Join(dir, "inventory.yaml"),
		"{plan}", filepath.Join(dir, "plan.json"), "{file}", filepath.Join(dir, filepath.Base(c.file)))
	expanded := make([]string, len(args))
	for i, a := range args {
		expanded[i] = placeholders.Replace(a)
	}
	cmd.SetArgs(expanded)
	err := cmd.ExecuteContext(t.Context())
	if err != nil {
		errOut.WriteString("error: " + err.Error() + "\n")
	}
	r.out, r.errOut, r.code = out.String(), errOut.String(), exitCode(err)
	return r
}

// check compares a run with the case: exit code, nothing on stdout, no host dialled, and one
// error line naming the problem and the fix.
func (r caseResult) check(c badCase) []string {
	var problems []string
	if r.code != c.code {
		problems = append(problems, fmt.Sprintf("exit %d, want %d", r.code, c.code))
	}
	if r.out != "" {
		problems = append(problems, fmt.Sprintf("stdout not empty on bad input: %q", r.out))
	}
	if len(r.dialled) > 0 {
		problems = append(problems, fmt.Sprintf("dialled %v before refusing", r.dialled))
	}
	line, message, p := errorMessage(r.errOut)
	if p != "" {
		return append(problems, p)
	}
	return append(problems, namesAll(line, message, c)...)
}

// errorMessage finds the "error: ..." line main prints, and the message: that line and the
// indented lines that follow it (a list of problems). certs inspect prints one line per bad
// file, then a count pointing up: the first is the message.
func errorMessage(errOut string) (line, message, problem string) {
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	first, n := -1, 0
	for i, l := range lines {
		if strings.HasPrefix(l, "error: ") {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	if first >= 0 && n == 2 && strings.HasSuffix(lines[len(lines)-1], "(see above)") {
		n = 1
	}
	if n != 1 {
		return "", "", fmt.Sprintf("want one error line, got %d:\n%s", n, errOut)
	}
	line = strings.TrimPrefix(lines[first], "error: ")
	msg := []string{line}
	for _, l := range lines[first+1:] {
		if !strings.HasPrefix(l, " ") {
			break
		}
		msg = append(msg, l)
	}
	return line, strings.Join(msg, "\n"), ""
}

// namesAll checks that the message names every word of the case: the first problem word on
// the error line itself, the others anywhere in the message.
func namesAll(line, message string, c badCase) []string {
	var problems []string
	// A long line is tolerated up to what a certificate refusal needs to name both key IDs;
	// past that, the message is dumping something.
	if len(line) > 700 {
		problems = append(problems, fmt.Sprintf("the error line is %d bytes long: %s", len(line), line))
	}
	if len(c.problem) == 0 {
		problems = append(problems, "the case declares no problem words")
	} else if !strings.Contains(line, c.problem[0]) {
		problems = append(problems, fmt.Sprintf("the error line does not name the problem %q: %s", c.problem[0], line))
	}
	for _, w := range append(append([]string{}, c.problem...), c.fix...) {
		if !strings.Contains(message, w) {
			problems = append(problems, fmt.Sprintf("the message does not name %q: %s", w, message))
		}
	}
	return problems
}

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

// writeReferenced writes the local files the corpus inventories name, empty.
func writeReferenced(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"admin.kubeconfig", "id_ed25519", "known_hosts"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// unchanged compares a folder's state before and after.
func unchanged(before, after string) []string {
	if before == after {
		return nil
	}
	return []string{fmt.Sprintf("the folder changed:\nbefore:\n%s\nafter:\n%s", before, after)}
}

// checkCorpusDir asserts that every file of a corpus folder is some case's input, so a file
// added without an expectation fails.
func checkCorpusDir(t *testing.T, sub string, cases map[string]bool) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("testdata", "bad", sub))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !cases[sub+"/"+e.Name()] {
			t.Errorf("testdata/bad/%s/%s has no case", sub, e.Name())
		}
	}
}
