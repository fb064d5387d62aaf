// Package cli owns the sublog command line: parsing, output, and the one
// place where errors become exit codes (0 success, 1 rejected input or failed
// operation, 2 usage error). Each command lives in its own cmd_*.go file and
// registers itself with register.
package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/node"
)

// Exit codes: the command line contract.
const (
	ExitOK       = 0
	ExitRejected = 1
	ExitUsage    = 2
)

// App is what a command sees of the process: streams, environment, the
// home and store (opened lazily, once), the clock and randomness.
type App struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	homeFlag string
	asFlag   string
	jsonOut  bool
	ran      bool // a command's RunE started (errors before it are usage errors)

	now  func() time.Time
	rand io.Reader

	home  *home.Home
	store *sublog.Store

	// cwd is where relative paths resolve: the process's working directory,
	// or the client's when the command came through an instance's socket.
	cwd string
	// node is the running instance when the command runs inside it: its
	// store and executor are used instead of opening the home's.
	node *node.Node
	env  []string // the client's environment, for a forwarded command
	ctx  context.Context

	// force is append's --force: write what append would otherwise refuse
	// (an unknown kind, intent for an owner that did not delegate here).
	force bool
}

var constructors []func(*App) *cobra.Command

// register adds a top-level command; each cmd_*.go file calls it from init.
func register(f func(*App) *cobra.Command) { constructors = append(constructors, f) }

// exitError carries an exit code and an optional hint to Main.
type exitError struct {
	code int
	err  error
	hint string
	// codeName is the stable code of --json errors ("" to derive it).
	codeName   string
	candidates []string // an ambiguous argument's candidates
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// rejected marks err as exit 1, with a hint ("" for none). An error marked
// already keeps its code and hint unless a hint is given here.
func rejected(err error, hint string) error {
	var inner *exitError
	if hint == "" && errors.As(err, &inner) {
		return err
	}
	return &exitError{code: ExitRejected, err: err, hint: hint}
}

// usage marks err as exit 2.
func usage(err error) error { return &exitError{code: ExitUsage, err: err} }

// Main runs the command line and returns the exit code. When an instance
// (`sublog up`) runs on the home, the command is forwarded to it through the
// control socket and runs there, against the instance's open store, with the
// same output and exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) (code int) {
	cwd, _ := os.Getwd()
	if forwardable(args) {
		if dir, err := home.Locate(homeArg(args, cwd), getenv); err == nil {
			if cl, err := node.Dial(dir); err == nil {
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				code, err := cl.Run(ctx, node.Command{Args: args, Dir: cwd, Env: os.Environ(), Stdin: stdin, Stdout: stdout, Stderr: stderr})
				if err == nil {
					return code
				}
				if !errors.Is(err, node.ErrNotRunning) {
					fmt.Fprintf(stderr, "sublog: error: %v\n", err)
					return ExitRejected
				}
			}
		}
	}
	a := &App{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now, rand: rand.Reader, cwd: cwd,
		ctx: context.Background()}
	return a.main(args)
}

// RunIn runs one forwarded command inside a running instance (the
// node.RunFunc `sublog up` hands the node).
func RunIn(ctx context.Context, n *node.Node, c node.Command) int {
	env := map[string]string{}
	for _, kv := range c.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	a := &App{stdin: c.Stdin, stdout: c.Stdout, stderr: c.Stderr, getenv: func(k string) string { return env[k] },
		now: time.Now, rand: rand.Reader, cwd: c.Dir, node: n, env: c.Env, ctx: ctx}
	return a.main(c.Args)
}

// forwardable tells whether a command goes to a running instance: all but
// the ones that manage the instance itself.
func forwardable(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return true
		}
		if strings.HasPrefix(a, "-") {
			continue
		}
		switch a {
		case "up", "down", "config":
			return false
		}
		return true
	}
	return true
}

// homeArg finds a --home flag's value before cobra parses (to find the
// instance's socket), made absolute against cwd.
func homeArg(args []string, cwd string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		v, ok := strings.CutPrefix(a, "--home=")
		if !ok && a == "--home" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok && v != "" {
			if !filepath.IsAbs(v) {
				v = filepath.Join(cwd, v)
			}
			return v
		}
	}
	return ""
}

func (a *App) main(args []string) (code int) {
	defer func() {
		if a.store != nil && a.node == nil {
			if err := a.store.Close(); err != nil && code == ExitOK {
				fmt.Fprintf(a.stderr, "sublog: error: closing the store: %v\n", err)
				code = ExitRejected
			}
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(a.stderr, "sublog: error: internal error (please report): %v\n%s", r, debug.Stack())
			code = ExitRejected
		}
	}()
	stdout, stderr := a.stdout, cleanWriter{a.stderr} // messages below quote input and cards
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(a.ctx)
	a.reportUnreadable(stderr)
	if err == nil {
		return ExitOK
	}
	code = ExitRejected
	var ee *exitError
	hint, name := "", ""
	var candidates []string
	if errors.As(err, &ee) {
		code, hint, name, candidates = ee.code, ee.hint, ee.codeName, ee.candidates
	} else if !a.ran {
		code = ExitUsage
	}
	if hint == "" {
		hint = hintFor(err)
	}
	if hint == "" && code == ExitUsage {
		hint = "see 'sublog --help'"
	}
	if a.jsonOut || jsonRequested(args) {
		// The --json error contract (docs/json.md): one object on stderr.
		if name == "" {
			name = errorCode(err, code)
		}
		e := jsonError{Code: name, Exit: code, Error: err.Error(), Hint: hint, Candidates: candidates}
		b, _ := json.Marshal(e)
		stderr.Write(append(b, '\n'))
		return code
	}
	fmt.Fprintf(stderr, "sublog: error: %v\n", err)
	if hint != "" {
		fmt.Fprintf(stderr, "sublog: hint: %s\n", hint)
	}
	return code
}

// hintFor suggests a next step for well-known errors.
func hintFor(err error) string {
	switch {
	case errors.Is(err, home.ErrNoHome):
		return "create one with 'sublog init' (or point --home / $SUBLOG_HOME at an existing home)"
	case errors.Is(err, home.ErrKeyPerms):
		return "make the key file private: chmod 600 the file named above"
	case errors.Is(err, home.ErrNoID):
		return "list identities with 'sublog id --list'; create one with 'sublog init --name NAME'"
	case errors.Is(err, sublog.ErrLocked):
		return "another sublog command (or 'sublog serve') is using this home; wait for it or stop it"
	}
	return ""
}

func (a *App) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "sublog",
		Short:         "sublog: signed, hash-chained logs of cards, synced peer to peer",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.PersistentFlags().StringVar(&a.homeFlag, "home", "", "sublog home directory (default $SUBLOG_HOME, else $XDG_DATA_HOME/sublog, else ~/.local/share/sublog)")
	root.PersistentFlags().StringVar(&a.asFlag, "as", "", "act as this named identity of the home (default: the home's default)")
	root.PersistentFlags().BoolVar(&a.jsonOut, "json", false, "print JSON on stdout")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage(err) })
	for _, f := range constructors {
		root.AddCommand(a.wrap(f(a)))
	}
	if a.stdout != nil {
		// Before applyHelp: cobra's completion commands keep the streams
		// they see when they are made.
		root.SetOut(a.stdout)
		root.SetErr(cleanWriter{a.stderr})
	}
	applyHelp(root)
	return root
}

// wrap marks when a command's own code starts, so argument errors found by
// cobra before it count as usage errors, and recurses into subcommands.
func (a *App) wrap(c *cobra.Command) *cobra.Command {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			a.ran = true
			return run(cmd, args)
		}
	}
	if c.Args == nil && c.RunE != nil {
		c.Args = cobra.NoArgs
	}
	for _, sub := range c.Commands() {
		a.wrap(sub)
	}
	return c
}

// version is what --version prints: the module's version and the VCS
// revision the binary was built from (runtime/debug.ReadBuildInfo), e.g.
// "v0.3.0 (github.com/sublog/sublog, revision 1e32bcd0a1b2, 2026-12-03T07:20:00Z, modified)".
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev (no build information)"
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	rev, at, modified := "", "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	path := bi.Main.Path
	if path == "" {
		path = bi.Path
	}
	parts := []string{path}
	if rev == "" {
		parts = append(parts, "revision unknown (built without VCS information)")
	} else {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		parts = append(parts, "revision "+rev)
		if at != "" {
			parts = append(parts, at)
		}
		if modified {
			parts = append(parts, "modified")
		}
	}
	return v + " (" + strings.Join(parts, ", ") + ", " + bi.GoVersion + ")"
}

// Out and Err are the command's human-readable output streams: what is
// written to them reaches the terminal with control characters escaped
// (clean.go). RawOut is stdout as it is, for protocol bytes.
func (a *App) Out() io.Writer    { return cleanWriter{a.stdout} }
func (a *App) Err() io.Writer    { return cleanWriter{a.stderr} }
func (a *App) RawOut() io.Writer { return a.stdout }

// In is standard input.
func (a *App) In() io.Reader { return a.stdin }

// JSON reports whether --json was given.
func (a *App) JSON() bool { return a.jsonOut }

// Now is the clock; Rand the randomness (tests replace both).
func (a *App) Now() time.Time         { return a.now() }
func (a *App) Rand() io.Reader        { return a.rand }
func (a *App) Getenv(k string) string { return a.getenv(k) }

// HomeDir is where the home is (it may not exist yet).
func (a *App) HomeDir() (string, error) {
	getenv := func(k string) string {
		v := a.getenv(k)
		if k == "SUBLOG_HOME" && v != "" {
			v = a.Path(v)
		}
		return v
	}
	flag := a.homeFlag
	if flag != "" {
		flag = a.Path(flag)
	}
	return home.Locate(flag, getenv)
}

// Path resolves a path the user gave against the command's working
// directory (the client's, when the command came through the socket). Every
// file a command opens by a user's path goes through Path.
func (a *App) Path(p string) string {
	if p == "" || p == "-" || filepath.IsAbs(p) || a.cwd == "" {
		return p
	}
	return filepath.Join(a.cwd, p)
}

// Context is the command's context: cancelled when the client of a
// forwarded command goes away or the instance stops.
func (a *App) Context() context.Context { return a.ctx }

// Home opens the home (once).
func (a *App) Home() (*home.Home, error) {
	if a.home != nil {
		return a.home, nil
	}
	dir, err := a.HomeDir()
	if err != nil {
		return nil, err
	}
	h, err := home.Open(dir)
	if err != nil {
		return nil, err
	}
	a.home = h
	return h, nil
}

// Store opens the home's store (once); Main closes it. Inside a running
// instance it is the instance's store.
func (a *App) Store() (*sublog.Store, error) {
	if a.store != nil {
		return a.store, nil
	}
	if a.node != nil {
		a.store = a.node.Store()
		return a.store, nil
	}
	h, err := a.Home()
	if err != nil {
		return nil, err
	}
	var logf func(string, ...any)
	if a.getenv("SUBLOG_DEBUG") != "" {
		logf = func(f string, args ...any) { fmt.Fprintf(a.Err(), "sublog: debug: "+f+"\n", args...) }
	}
	s, err := h.OpenStore(sublog.Options{Logf: logf})
	if err != nil {
		return nil, err
	}
	a.store = s
	return s, nil
}

// Secret loads the identity named by --as (or the default).
func (a *App) Secret() (*key.Secret, error) {
	h, err := a.Home()
	if err != nil {
		return nil, err
	}
	return h.Identity(a.asFlag)
}

// AsName is the --as flag's value ("" for the default identity).
func (a *App) AsName() string { return a.asFlag }

// PrintJSON writes v as indented JSON and a newline.
func (a *App) PrintJSON(v any) error { return printJSONTo(a.Out(), v) }

// printJSONTo writes v as indented JSON to w (stderr when stdout carries
// data: --out -).
func printJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Progress returns a callback that draws a progress bar on stderr when
// stderr is a terminal (total -1 when unknown), and a function to finish it.
func (a *App) Progress(total int64, desc string) (update func(done int64), finish func()) {
	f, ok := a.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func(int64) {}, func() {}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("cards"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return func(done int64) { _ = bar.Set64(done) }, func() { _ = bar.Finish() }
}

// environ is the command's environment as KEY=VALUE (the client's, for a
// forwarded command), for the processes a command starts.
func (a *App) environ() []string {
	if a.node == nil {
		return os.Environ()
	}
	return a.env
}
