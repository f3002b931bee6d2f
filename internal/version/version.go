// Package version holds the build's version: set by the Makefile with -ldflags -X, else read
// from the build information the Go toolchain stamps into every binary (module version,
// VCS revision and whether the tree was modified), so a plain `go build` or `go install`
// still says what it was built from.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the release or "dev"; Commit is the git commit the binary was built from.
// The Makefile sets both; "dev" and "unknown" mean the build information decides.
var (
	Version = "dev"
	Commit  = "unknown"
)

// Info is what `mastershrink version -o json` prints.
type Info struct {
	Version string `json:"version" yaml:"version"`
	Commit  string `json:"commit" yaml:"commit"`
	// Modified says the binary was built from a tree with uncommitted changes.
	Modified bool `json:"modified" yaml:"modified"`
	// CommitTime is the commit's time, RFC 3339 UTC, when known.
	CommitTime string `json:"commit_time,omitempty" yaml:"commit_time,omitempty"`
	Go         string `json:"go" yaml:"go"`
	Platform   string `json:"platform" yaml:"platform"`
}

// readBuildInfo is debug.ReadBuildInfo, replaced in tests.
var readBuildInfo = debug.ReadBuildInfo

// Get returns the version of this binary: the -ldflags values where set, the build
// information for the rest.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := readBuildInfo()
	if !ok {
		return info
	}
	if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		// go install module@v1.2.3 gives v1.2.3; go build in a git tree a pseudo-version
		// (v0.0.0-TIME-REVISION, with +dirty when modified).
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if info.Commit == "unknown" {
				info.Commit = s.Value
				if len(info.Commit) > 12 {
					info.Commit = info.Commit[:12]
				}
			}
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "vcs.time":
			info.CommitTime = s.Value
		}
	}
	return info
}

// String is the version line printed by `mastershrink version` and stored in plans:
// "v1.2.0 (3f2c1a9b7d10)", with ", modified" when built from a changed tree that the
// version does not already say is dirty.
func String() string { return Get().String() }

func (i Info) String() string {
	s := i.Version + " (" + i.Commit
	if i.Modified && !strings.HasSuffix(i.Version, "dirty") {
		s += ", modified"
	}
	return s + ")"
}
