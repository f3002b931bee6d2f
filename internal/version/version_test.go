package version

import (
	"runtime/debug"
	"testing"
)

func TestGet(t *testing.T) {
	defer func(v, c string, r func() (*debug.BuildInfo, bool)) { Version, Commit, readBuildInfo = v, c, r }(Version, Commit, readBuildInfo)
	stamped := &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130205856-d136713abcde+dirty"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "d136713abcdef0123456789abcdef0123456789a"},
		{Key: "vcs.time", Value: "2026-11-30T20:58:56Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	tests := []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            string
	}{
		{"plain go build in a git tree", "dev", "unknown", stamped, "v0.0.0-20261130205856-d136713abcde+dirty (d136713abcde)"},
		{"make build: ldflags win", "v1.2.0-3-gd136713-dirty", "d136713", stamped, "v1.2.0-3-gd136713-dirty (d136713)"},
		{"ldflags version, commit from VCS, modified said once", "v1.2.0", "unknown", stamped, "v1.2.0 (d136713abcde, modified)"},
		{"go install module@version", "dev", "unknown", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "v1.2.0 (unknown)"},
		{"go test: no VCS", "dev", "unknown", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev (unknown)"},
		{"no build info", "dev", "unknown", nil, "dev (unknown)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			Version, Commit = tt.version, tt.commit
			readBuildInfo = func() (*debug.BuildInfo, bool) { return tt.bi, tt.bi != nil }
			if got := String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
	Version, Commit = "dev", "unknown"
	readBuildInfo = func() (*debug.BuildInfo, bool) { return stamped, true }
	i := Get()
	if !i.Modified || i.CommitTime != "2026-11-30T20:58:56Z" || i.Go == "" || i.Platform == "" {
		t.Errorf("Get() = %+v", i)
	}
}
