package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The demo shows commands with paths as a newcomer would type them from the repo: relative
// below the current folder, absolute elsewhere.
func TestRelative(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if got := relative(filepath.Join(wd, "bin", "mastershrink")); got != filepath.Join("bin", "mastershrink") {
		t.Errorf("relative(below) = %q, want bin/mastershrink", got)
	}
	if got := relative("/tmp/elsewhere/inventory.yaml"); got != "/tmp/elsewhere/inventory.yaml" {
		t.Errorf("relative(outside) = %q, want the absolute path", got)
	}
}
