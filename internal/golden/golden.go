// Package golden compares a test's output with a file under testdata (Check), and rewrites
// the file instead when the package's tests run with -update: one -update flag for every
// package that imports it.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Check fails the test when got differs from the file at path, showing both; with -update
// it writes got to the file instead.
func Check(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the package's tests with -update to write it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the output (-update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
