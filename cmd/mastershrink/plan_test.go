package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The plan file holds the cluster's layout and what it is about to change: 0600 whatever it
// replaces, and no temporary file left beside it.
func TestWritePlanFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{`{"format_version":3}`, `{"format_version":3,"steps":[]}`} {
		if err := writePlanFile(t.Context(), path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("plan file %q, %v; want %q", got, err, content)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("plan file mode %v, want 0600", fi.Mode().Perm())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("beside the plan file: %v", entries)
	}
	if err := writePlanFile(t.Context(), filepath.Join(dir, "missing", "plan.json"), []byte("{}")); err == nil {
		t.Error("a plan file into a missing folder was written")
	}
}
