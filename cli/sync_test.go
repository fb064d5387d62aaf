package cli_test

import (
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestSyncScripts runs testdata/sync: homes syncing over pipes, bundles,
// follow and trust, with two helper commands: `envfile VAR FILE` sets VAR
// to FILE's trimmed content (FILE "stdout" is the last command's output),
// `truncate FILE N` cuts a file to N bytes, `freeport VAR` and `waitport ADDR`
// for real processes on loopback TCP.
func TestSyncScripts(t *testing.T) { testscript.Run(t, syncParams()) }

func syncParams() testscript.Params {
	return testscript.Params{
		Dir: "testdata/sync",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"envfile": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: envfile VAR FILE")
				}
				ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
			},
			// grab VAR REGEXP: set VAR to the first group of REGEXP in the last stdout.
			"grab": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 || neg {
					ts.Fatalf("usage: grab VAR REGEXP")
				}
				m := regexp.MustCompile(args[1]).FindStringSubmatch(ts.ReadFile("stdout"))
				if len(m) < 2 {
					ts.Fatalf("grab: no match for %q in stdout", args[1])
				}
				ts.Setenv(args[0], m[1])
			},
			// freeport VAR: a free loopback port in VAR.
			"freeport": func(ts *testscript.TestScript, neg bool, args []string) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				ts.Check(err)
				ts.Setenv(args[0], strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
				l.Close()
			},
			// waitport ADDR: wait (up to 10 s) until something listens on ADDR.
			"waitport": func(ts *testscript.TestScript, neg bool, args []string) {
				for range 200 {
					if c, err := net.Dial("tcp", args[0]); err == nil {
						c.Close()
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				ts.Fatalf("nothing listens on %s", args[0])
			},
			// validjson DEF [stderr]: the last stdout (or stderr) validates
			// against docs/json.schema.json's definition DEF.
			"validjson": cmdValidJSON,
			"truncate": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: truncate FILE N")
				}
				n, err := strconv.Atoi(args[1])
				ts.Check(err)
				ts.Check(os.Truncate(ts.MkAbs(args[0]), int64(n)))
			},
		},
	}
}
