package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	var out, errOut bytes.Buffer
	root := newRootCmd(streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	root.SetArgs([]string{"man", dir})
	if err := root.Execute(); err != nil {
		t.Fatalf("man: %v\n%s", err, errOut.String())
	}
	for _, page := range []string{"mastershrink.1", "mastershrink-plan.1", "mastershrink-apply.1", "mastershrink-nodes-drain.1"} {
		data, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), ".TH \"MASTERSHRINK\"") || !strings.Contains(string(data), "SYNOPSIS") {
			t.Errorf("%s is not a man page:\n%.300s", page, data)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "mastershrink-man.1")); err == nil {
		t.Error("the hidden man command has a page of its own")
	}
	for _, c := range root.Commands() {
		if c.Name() == "man" && !c.Hidden {
			t.Error("man is not hidden")
		}
	}
}
