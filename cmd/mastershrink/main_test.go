package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{name: "bad output", inventory: goodInventory, args: []string{"plan", "--remove", "m1", "-o", "xml"}, code: exitUsage, want: "table or json"},
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
