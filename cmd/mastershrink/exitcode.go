package main

import (
	"errors"
	"strings"

	"github.com/mastershrink/mastershrink/certs"
	"github.com/mastershrink/mastershrink/etcd"
	"github.com/mastershrink/mastershrink/nodes"
	"github.com/mastershrink/mastershrink/plan"
	"github.com/mastershrink/mastershrink/runner"

	"github.com/mastershrink/mastershrink/inventory"
)

// Exit codes, one place for all commands (STYLE.md).
const (
	exitOK      = 0
	exitError   = 1
	exitChanges = 2 // plan has changes, with --detailed-exitcode
	exitRefused = 3 // stale plan, preflight refusal, quorum at risk
	exitUsage   = 4 // bad flags or arguments, or an inventory file that does not validate
	// exitCheck is a check that ran and found a problem in what it looked at, for cron jobs
	// and monitoring: status saw the cluster unhealthy, certs inspect a certificate expiring
	// within --fail-within or not chaining to --ca. The input was fine; the cluster is not.
	exitCheck = 5
)

// usageError marks bad flags or arguments.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// refusedError marks a refusal: mastershrink looked and would not go on.
type refusedError struct{ err error }

func (e refusedError) Error() string { return e.err.Error() }
func (e refusedError) Unwrap() error { return e.err }

// checkFailedError marks a check that ran and found a problem (exit 5).
type checkFailedError struct{ err error }

func (e checkFailedError) Error() string { return e.err.Error() }
func (e checkFailedError) Unwrap() error { return e.err }

// errChanges is returned by `plan --detailed-exitcode` when the plan has steps.
var errChanges = errors.New("plan has changes")

// refusals are the sentinel errors of the library packages that mean "refused": mastershrink
// looked and would not go on, and nothing was changed past what the message says.
var refusals = []error{
	// A plan that may not be applied as it is.
	plan.ErrStalePlan, plan.ErrTampered, plan.ErrToolVersion, plan.ErrFormatVersion, plan.ErrStepKind,
	runner.ErrRefusedPlan, runner.ErrPrerequisite,
	// The cluster is not in a state a step may act on.
	runner.ErrLocked, runner.ErrLockLost, runner.ErrPreflight, runner.ErrNoSnapshot,
	runner.ErrStillMember, runner.ErrStillControlPlane, etcd.ErrQuorumAtRisk, etcd.ErrLeaderLeaving,
	// undo past the point of no return, or over files changed since.
	runner.ErrPastNoReturn, runner.ErrUndoUnsafe,
	// Node drains and cleanups the operator did not consent to.
	nodes.ErrRefused, nodes.ErrCleanupRefused,
	// Re-signing with a CA that did not issue the certificate would swap its trust root;
	// re-signing these would break what the certificate does today.
	certs.ErrNotSignedByCA, certs.ErrCACertificate, certs.ErrSelfSigned, certs.ErrUsagesNotCovered, certs.ErrNoSANs, certs.ErrShorterValidity,
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var u usageError
	var r refusedError
	var c checkFailedError
	var ve *inventory.ValidationError
	switch {
	case errors.Is(err, errChanges):
		return exitChanges
	// The inventory is the operator's input as much as the flags are: a wrong one is fixed
	// by editing it, never by running again.
	case errors.As(err, &u), errors.As(err, &ve), errors.Is(err, inventory.ErrNotFound), isCobraUsage(err):
		return exitUsage
	case errors.As(err, &r):
		return exitRefused
	case errors.As(err, &c):
		return exitCheck
	}
	for _, s := range refusals {
		if errors.Is(err, s) {
			return exitRefused
		}
	}
	return exitError
}

// isCobraUsage recognises cobra's own argument errors, which it does not type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "accepts ") ||
		strings.HasPrefix(msg, "requires at least") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag")
}
