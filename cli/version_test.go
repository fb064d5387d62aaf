package cli

import (
	"runtime/debug"
	"testing"
)

func TestVersionOf(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Path: "github.com/sublog/sublog/cli/sublog",
		Main: debug.Module{Path: "github.com/sublog/sublog", Version: "v0.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "1e32bcd0a1b2c3d4e5f6"},
			{Key: "vcs.time", Value: "2026-12-03T07:20:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if got, want := versionOf(bi), "v0.4.0 (github.com/sublog/sublog, revision 1e32bcd0a1b2, 2026-12-03T07:20:00Z, modified, go1.26.0)"; got != want {
		t.Errorf("versionOf = %q\nwant %q", got, want)
	}
	bi.Main.Version, bi.Settings = "(devel)", nil
	if got, want := versionOf(bi), "dev (github.com/sublog/sublog, revision unknown (built without VCS information), go1.26.0)"; got != want {
		t.Errorf("versionOf = %q\nwant %q", got, want)
	}
}
