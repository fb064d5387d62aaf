package phase1_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestShortDemo runs the Phase 1 demo's short version (bed.sh --short) on
// network namespaces: every step that exists today must pass. It needs root
// and iproute2 (CI runs as root; .ci/setup.d/iproute2.sh installs it).
func TestShortDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the test bed makes network namespaces: needs root (run examples/phase1/bed.sh --fallback by hand for the loopback version)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the test bed makes network namespaces with 'ip': install iproute2 (.ci/setup.d/iproute2.sh)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := func(out, pkg string) {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	build("sublog", "./cli/sublog")
	build("faultylink", "./examples/phase1/faultylink")
	build("hintdns", "./examples/phase1/hintdns")
	// The example bundles the demo deploys (make test builds them first; a
	// bare 'go test' may not have).
	mk := exec.Command("make", "-f", "examples/Makefile.inc", "all")
	mk.Dir = root
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("building the example bundles: %v\n%s", err, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "examples/phase1/bed.sh"), "--short")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "SUBLOG="+filepath.Join(bin, "sublog"),
		"FAULTYLINK="+filepath.Join(bin, "faultylink"), "HINTDNS="+filepath.Join(bin, "hintdns"),
		"TMPDIR="+os.TempDir())
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	text := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(string(out), "")
	t.Logf("bed.sh --short:\n%s", text)
	if err != nil {
		t.Fatalf("bed.sh --short: %v", err)
	}
	if !strings.Contains(text, "network namespaces (sublogbed-*)") {
		t.Error("the bed did not run on network namespaces")
	}
	for _, want := range []string{"Step 1: Host onboarding", "Step 2: Service deployment", "Step 3: Service consumption", "Step 4: Revocation and recovery"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in the output", want)
		}
	}
	if strings.Contains(text, "FAIL") {
		t.Error("a check failed but the bed exited 0")
	}
	m := regexp.MustCompile(`bed: all (\d+) checks passed \(netns\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("no closing line 'bed: all N checks passed (netns)'")
	}
	// Nothing of the bed is left: namespaces are gone.
	if b, err := exec.Command("ip", "netns", "list").Output(); err == nil && strings.Contains(string(b), "sublogbed-") {
		t.Errorf("namespaces left after the bed: %s", b)
	}
}
