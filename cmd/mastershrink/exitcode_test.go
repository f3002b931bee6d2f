package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/mastershrink/mastershrink/nodes"
)

// Every sentinel the libraries refuse with exits 3 wrapped as the libraries wrap it, and the
// commands' own kinds of error keep their codes.
func TestExitCodes(t *testing.T) {
	for _, s := range refusals {
		if got := exitCode(fmt.Errorf("step x/y on m1: %w", s)); got != exitRefused {
			t.Errorf("%v: exit %d, want %d", s, got, exitRefused)
		}
	}
	for _, tc := range []struct {
		err  error
		code int
	}{
		{nil, exitOK},
		{errors.New("ssh m1: connection refused"), exitError},
		{fmt.Errorf("plan: %w", errChanges), exitChanges},
		{errNoInventory, exitUsage},
		{refusedError{errors.New("not confirmed")}, exitRefused},
		{checkFailedError{errors.New("expires")}, exitCheck},
		{nodes.GuardCleanup(t.Context(), nil, []nodes.CleanupTarget{{Name: "m1", ControlPlane: true}}, "inv.yaml"), exitRefused},
		{&nodes.UnknownNodeError{Arg: "w9"}, exitError}, // resolveNodes makes it a usage error
	} {
		if got := exitCode(tc.err); got != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.err, got, tc.code)
		}
	}
}
