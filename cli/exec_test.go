package cli_test

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	stdsync "sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

var buildExamples stdsync.Once

// TestExecScripts runs the executor's end-to-end scripts (testdata/exec)
// against the example bundles, building them first if `make examples` has
// not.
func TestExecScripts(t *testing.T) { testscript.Run(t, execParams(t)) }

func execParams(t *testing.T) testscript.Params {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	buildExamples.Do(func() {
		if _, err := os.Stat(filepath.Join(root, "examples/misbehave/misbehave.bundle")); err == nil {
			return
		}
		cmd := osexec.Command("make", "-s", "examples")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make examples: %v\n%s", err, out)
		}
	})
	return testscript.Params{
		Dir: "testdata/exec",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
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
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("SUBLOG_HOME", env.WorkDir+"/home")
			env.Setenv("EXAMPLES", filepath.Join(root, "examples"))
			return nil
		},
	}
}
