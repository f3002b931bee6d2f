package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// ErrNotFound means the inventory file given is not there: the operator's input to fix,
// like a file that does not validate.
var ErrNotFound = errors.New("inventory file not found")

type notFoundError struct{ file string }

func (e notFoundError) Error() string {
	return fmt.Sprintf("inventory %s does not exist: give the cluster's inventory file with -i", e.file)
}

// Unwrap makes the error both ErrNotFound and fs.ErrNotExist.
func (e notFoundError) Unwrap() []error { return []error{ErrNotFound, fs.ErrNotExist} }

// Problem is one thing wrong in an inventory file.
type Problem struct {
	File string
	// Line is 1-based; 0 when the problem has no single place (a missing top-level field
	// is reported at line 1).
	Line int
	// Field is the path of the offending field ("hosts[2].roles[0]"), empty for syntax errors.
	Field string
	Msg   string
}

func (p Problem) String() string {
	if p.Field == "" {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Field, p.Msg)
}

// ValidationError lists every problem found in an inventory file, in file order.
type ValidationError struct {
	File     string
	Problems []Problem
}

// Error prints one problem per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
