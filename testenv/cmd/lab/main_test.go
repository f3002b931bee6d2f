package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// Bad usage is refused before anything is built or touched, with a usage error (exit 4).
func TestRunUsage(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"up", []string{"--masters", "x"}, "invalid value"},
		{"up", []string{"extra"}, "takes no arguments"},
		{"exec", []string{"m1"}, "exec needs HOST -- CMD"},
		{"exec", []string{"m1", "--"}, "command after --"},
		{"status", []string{"--nosuch"}, "flag provided but not defined"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.cmd, tc.args, &out, &errOut)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("lab %s %v: err = %v, want a usage error containing %q", tc.cmd, tc.args, err, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("lab %s %v printed %q on stdout", tc.cmd, tc.args, out.String())
		}
	}
}

// A lab that was never brought up is a plain error naming it, not a usage error.
func TestStatusOfMissingLab(t *testing.T) {
	t.Setenv("MASTERSHRINK_LAB_STATE", t.TempDir())
	var out, errOut bytes.Buffer
	err := run(context.Background(), "status", []string{"--name", "nolab"}, &out, &errOut)
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "nolab") {
		t.Errorf("status of a missing lab: err = %v, want an error naming it", err)
	}
}
