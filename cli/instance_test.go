package cli_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sublog/sublog/cli"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/node"
)

// instanceMain is the `sublog` of the scripts run through an instance: it
// makes sure the home the command names runs an instance (starting `sublog
// up` in the background on the first command after `init`), then runs the
// command as a user would, so it is forwarded through the control socket.
func instanceMain() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "up" {
		os.Exit(cli.Main(args, os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	}
	cwd, _ := os.Getwd()
	if dir, err := home.Locate(homeFlag(args, cwd), os.Getenv); err == nil {
		if err := ensureInstance(dir); err != nil {
			fmt.Fprintf(os.Stderr, "test harness: %v\n", err)
			os.Exit(3)
		}
	}
	os.Exit(cli.Main(args, os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

func homeFlag(args []string, cwd string) string {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--home=")
		if !ok && a == "--home" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			if !filepath.IsAbs(v) {
				v = filepath.Join(cwd, v)
			}
			return v
		}
	}
	return ""
}

// ensureInstance starts `sublog up` on an initialised home with none.
func ensureInstance(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return nil // not a home (yet): the command runs as without one
	}
	if _, err := node.Dial(dir); err == nil {
		return nil
	}
	// The scripts' `sublog` (testscript dispatches on the program's name).
	self, err := osexec.LookPath(os.Args[0])
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(dir+".instance.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// timeout: the instance ends by itself even if the test is killed.
	cmd := osexec.Command("timeout", "600", self, "up", "--home", dir, "--listen=", "--log-level=debug")
	cmd.Env = append(os.Environ(), "SUBLOG_TESTSCRIPT_INSTANCE=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	for range 400 {
		if _, err := node.Dial(dir); err == nil {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	b, _ := os.ReadFile(dir + ".instance.log")
	return fmt.Errorf("the instance on %s did not come up:\n%s", dir, b)
}

// stopInstances stops every instance started under work (at a script's
// end) and reports any that did not shut down cleanly.
func stopInstances(t testing.TB, work string) {
	filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "instance.json" {
			return nil
		}
		dir := filepath.Dir(filepath.Dir(p))
		cl, err := node.Dial(dir)
		if err != nil {
			return nil
		}
		if _, err := cl.Shutdown(t.Context(), 20*time.Second); err != nil && !errors.Is(err, node.ErrNotRunning) {
			t.Errorf("stopping the instance of %s: %v", dir, err)
		}
		return nil
	})
}

// throughInstance makes params run every command through an instance.
func throughInstance(t *testing.T, p testscript.Params) testscript.Params {
	setup := p.Setup
	p.Setup = func(env *testscript.Env) error {
		if setup != nil {
			if err := setup(env); err != nil {
				return err
			}
		}
		env.Setenv("SUBLOG_INSTANCE_MODE", "1")
		work := env.WorkDir
		env.Defer(func() { stopInstances(t, work) })
		return nil
	}
	return p
}

// TestScriptsThroughInstance runs the CLI script suites again, every
// command through a running instance: same output, same exit codes.
func TestScriptsThroughInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every script suite a second time")
	}
	t.Run("script", func(t *testing.T) {
		testscript.Run(t, throughInstance(t, scriptParams()))
	})
	t.Run("exec", func(t *testing.T) {
		testscript.Run(t, throughInstance(t, execParams(t)))
	})
	t.Run("sync", func(t *testing.T) {
		testscript.Run(t, throughInstance(t, syncParams()))
	})
}
