package cli_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestSyncScripts runs testdata/sync: homes syncing over pipes, bundles,
// follow and trust, with two helper commands: `envfile VAR FILE` sets VAR
// to FILE's trimmed content (FILE "stdout" is the last command's output),
// and `truncate FILE N` cuts a file to N bytes.
func TestSyncScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/sync",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"envfile": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: envfile VAR FILE")
				}
				ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
			},
			"truncate": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: truncate FILE N")
				}
				n, err := strconv.Atoi(args[1])
				ts.Check(err)
				ts.Check(os.Truncate(ts.MkAbs(args[0]), int64(n)))
			},
		},
	})
}
