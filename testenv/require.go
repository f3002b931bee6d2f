package testenv

import (
	"os"
	"testing"
)

// RequireLab skips a test that needs the lab unless MASTERSHRINK_LAB=1 (make test sets it):
// a lab takes root and a minute to boot, so plain `go test ./...` runs only the fast tiers.
func RequireLab(t testing.TB) {
	t.Helper()
	if os.Getenv("MASTERSHRINK_LAB") != "1" {
		t.Skip("lab test: run with MASTERSHRINK_LAB=1 (as make test does); needs root")
	}
}
