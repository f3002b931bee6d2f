package plan

import (
	"bytes"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// forbiddenDeps are the I/O libraries the planner must build without: it reads facts and
// writes steps, so it needs the pure halves of etcd, apiserver, nodes and host only
// (etcdfacts, apiserverfacts, nodefacts, host/machine), never their clients.
var forbiddenDeps = []string{
	"golang.org/x/crypto/ssh",
	"github.com/godbus/dbus",
	"k8s.io/client-go/kubernetes",
	"google.golang.org/grpc",
	"go.etcd.io/bbolt",
}

// TestPureDeps fails when package plan (its non-test files) depends on an SSH, D-Bus,
// Kubernetes client, gRPC or bbolt package, naming the packages of this module that bring it.
func TestPureDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	cmd := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}\t{{join .Deps \" \"}}", ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps .: %v\n%s", err, stderr.String())
	}
	const module = "github.com/mastershrink/mastershrink/"
	via := map[string]map[string]bool{} // forbidden entry -> packages of this module that bring it
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 3 || !strings.HasPrefix(fields[0], module) {
			continue
		}
		pkg, deps := strings.TrimPrefix(fields[0], module), fields[2]
		if pkg == "plan" {
			deps = fields[1] // plan's own imports; the rest is named by the package that brings it
		}
		for _, d := range strings.Fields(deps) {
			if f := forbidden(d); f != "" {
				if via[f] == nil {
					via[f] = map[string]bool{}
				}
				via[f][pkg] = true
			}
		}
	}
	for _, f := range forbiddenDeps {
		if len(via[f]) == 0 {
			continue
		}
		var pkgs []string
		for p := range via[f] {
			pkgs = append(pkgs, p)
		}
		sort.Strings(pkgs)
		t.Errorf("plan depends on %s through %s: import the pure half (etcdfacts, apiserverfacts, nodefacts, host/machine) instead",
			f, strings.Join(pkgs, ", "))
	}
}

// forbidden returns the entry of forbiddenDeps that pkg is or lies under, "" when none.
func forbidden(pkg string) string {
	for _, f := range forbiddenDeps {
		if pkg == f || strings.HasPrefix(pkg, f+"/") {
			return f
		}
	}
	return ""
}
