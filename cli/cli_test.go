package cli_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sublog/sublog/cli"
)

func TestMain(m *testing.M) {
	// A race-built process sleeps a second at exit (GORACE's atexit_sleep_ms,
	// default 1000) so that late race reports can be printed. The scripts
	// start thousands of such processes; testscript passes GORACE on to them.
	// Races are still reported (exit status 66) without the sleep.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	testscript.Main(m, map[string]func(){
		"sublog": func() {
			if os.Getenv("SUBLOG_INSTANCE_MODE") != "" && os.Getenv("SUBLOG_TESTSCRIPT_INSTANCE") == "" {
				instanceMain()
			}
			os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
		},
	})
}

// TestScripts runs the end-to-end scripts in testdata/script: the real
// command, its stdout, stderr and exit codes.
func TestScripts(t *testing.T) { testscript.Run(t, scriptParams()) }

func scriptParams() testscript.Params {
	return testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("SUBLOG_HOME", env.WorkDir+"/home")
			vectors, err := filepath.Abs("../golden/vectors")
			env.Setenv("VECTORS", vectors)
			return err
		},
	}
}
