package inventory

import (
	"fmt"
	"strings"
)

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
