// Package version holds the build's version, set by the Makefile with -ldflags -X.
package version

// Version is the release or "dev"; Commit is the git commit the binary was built from.
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is the version line printed by `mastershrink version` and stored in plans.
func String() string { return Version + " (" + Commit + ")" }
