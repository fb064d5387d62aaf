package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sublog/sublog/cli"
)

// TestInitSaysWhereAndWhatNext: init prints the identity alone on stdout
// (scripts read it) and, on stderr, the home's place and the next steps.
func TestInitSaysWhereAndWhatNext(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	h := newHome(t, dir)
	out, errs, code := h.run("", "init")
	if code != 0 || len(strings.TrimSpace(out)) != 52 || strings.Contains(out, "\n\n") {
		t.Fatalf("init: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"created the home " + dir, filepath.Join(dir, "keys", "default.key"), "next:", "sublog trust", "sublog up"} {
		if !strings.Contains(errs, want) {
			t.Errorf("init's stderr does not say %q:\n%s", want, errs)
		}
	}
	_, errs, _ = h.run("", "init", "--name", "work")
	if !strings.Contains(errs, `added the identity "work" to the home `+dir) || !strings.Contains(errs, "--as work") {
		t.Errorf("a second init does not say what it added:\n%s", errs)
	}
}

// TestTrustConfirmsWhatItDid: adding, re-adding, naming and removing each
// say what happened.
func TestTrustConfirmsWhatItDid(t *testing.T) {
	dir := t.TempDir()
	a, b := newHome(t, dir+"/a"), newHome(t, dir+"/b")
	a.ok("", "init")
	id := strings.TrimSpace(b.ok("", "init"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"trust", id}, "trusting " + id + ": it may see"},
		{[]string{"trust", id}, "already trusting " + id + "; nothing changed"},
		{[]string{"trust", id, "--name", "bee"}, "already trusting " + id + "; named it bee"},
		{[]string{"trust", "bee", "--remove"}, "no longer trusting " + id + " (bee)"},
		{[]string{"trust", "bee", "--remove"}, "was not on the trust list; nothing changed"},
		{[]string{"follow", "bee"}, "following " + id + " (bee): its log is wanted"},
		{[]string{"unfollow", "bee"}, "no longer following " + id + " (bee)"},
	} {
		if out := a.ok("", c.args...); !strings.Contains(out, c.want) {
			t.Errorf("sublog %s: %q, want %q", strings.Join(c.args, " "), out, c.want)
		}
	}
	if _, errs, code := a.run("", "trust", "--name", "x"); code != 2 || !strings.Contains(errs, "need an IDENTITY") {
		t.Errorf("trust --name without an identity: exit %d\n%s", code, errs)
	}
}

// TestGrantWithoutLimitsOffersTheBundlesAsks: a grant of a bundle with no
// limit flags, which the host defaults would not cover, is refused with the
// flags that grant what the bundle asks.
func TestGrantWithoutLimitsOffersTheBundlesAsks(t *testing.T) {
	execParams(t)
	root, _ := filepath.Abs("..")
	counter := filepath.Join(root, "examples/counter/counter.bundle")
	h := newHome(t, t.TempDir()+"/host")
	h.ok("", "init")
	out, errs, code := h.run("", "grant", counter)
	if code != 1 || out != "" || !strings.Contains(errs, "less than bundle counter asks for") ||
		!strings.Contains(errs, "hint: grant what the bundle asks: sublog grant "+counter+" --caps kv,req") {
		t.Fatalf("grant with no limits: exit %d\n%s", code, errs)
	}
	// The offered flags are enough: the grant is made and the bundle runs.
	h.ok("", "grant", counter, "--caps", "kv,req")
	h.ok("", "deploy", counter)
	if got := strings.TrimSpace(h.ok("", "call", "counter", "inc")); got != "1" {
		t.Fatalf("call counter: %q", got)
	}
	// Any limit flag means the user chose: no second-guessing.
	h.ok("", "grant", counter, "--memory", "64Mi")
}

// TestCompletionScripts: `sublog completion bash|zsh|fish` print each
// shell's script for this command.
func TestCompletionScripts(t *testing.T) {
	h := newHome(t, t.TempDir()+"/h")
	for shell, want := range map[string]string{"bash": "__start_sublog", "zsh": "#compdef sublog", "fish": "complete -c sublog"} {
		out, errs, code := h.run("", "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, no %q\n%s", shell, code, want, errs)
		}
	}
	if _, _, code := h.run("", "completion", "tcsh"); code == 0 {
		t.Error("completion tcsh succeeded")
	}
	// The completion of a command name works through cobra's hidden command.
	out, _, _ := h.run("", "__complete", "gra")
	if !strings.Contains(out, "grant") {
		t.Errorf("completing 'gra': %q", out)
	}
}

// TestVersionNamesModuleAndRevision: --version names the module, and the
// VCS revision or that there is none (test binaries carry no VCS stamp).
func TestVersionNamesModuleAndRevision(t *testing.T) {
	out, _, code := newHome(t, t.TempDir()).run("", "--version")
	if code != 0 || !strings.HasPrefix(out, "sublog version ") || !strings.Contains(out, "github.com/sublog/sublog") ||
		!strings.Contains(out, "revision") || !strings.Contains(out, "go1.") {
		t.Fatalf("--version: %q", out)
	}
}

// TestHelpGroupsAndExamples: every command has an Examples section and the
// top-level help lists commands under their groups.
func TestHelpGroupsAndExamples(t *testing.T) {
	h := newHome(t, t.TempDir())
	for _, p := range cli.CommandPaths() {
		args := append(strings.Fields(p), "--help")
		out, _, code := h.run("", args...)
		if code != 0 || !strings.Contains(out, "\nExamples:\n  ") {
			t.Errorf("sublog %s --help has no Examples section (exit %d)", p, code)
		}
	}
	out := h.ok("", "--help")
	last := -1
	for _, g := range []string{"Getting started:", "Cards and logs:", "Services and intent:", "Hosting peers:",
		"Syncing and reaching peers:", "The instance:", "Other:"} {
		i := strings.Index(out, "\n"+g+"\n")
		if i < 0 || i < last {
			t.Fatalf("--help lacks the group %q in order:\n%s", g, out)
		}
		last = i
	}
	if strings.Contains(out, "Additional Commands:") {
		t.Errorf("a command is in no group:\n%s", out)
	}
	start := out[strings.Index(out, "Getting started:"):strings.Index(out, "Cards and logs:")]
	if !strings.Contains(start, "  init ") || !strings.Contains(start, "  trust ") {
		t.Errorf("init and trust are not under Getting started:\n%s", start)
	}
}

var _ = os.DevNull
