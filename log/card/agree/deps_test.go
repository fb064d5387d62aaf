package agree_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksOnlyTheCardPackages keeps this directory's reason to exist: its
// test binary links log/card and what log/card needs, nothing of the rest
// of the tree. The fuzzing engine clears and compares every coverage
// counter of the binary on each exec, so a test helper that pulls in the
// store (golden does: pebble, automerge, wazero, ...) cuts the agreement
// fuzzer's execs per second several times over.
func TestLinksOnlyTheCardPackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	allowed := map[string]bool{"log/key": true, "log/canon": true, "log/caps": true, "log/card": true, "log/card/agree": true}
	heavy := []string{"github.com/cockroachdb/", "github.com/automerge/", "github.com/tetratelabs/wazero"}
	for _, p := range strings.Fields(string(out)) {
		p, _, _ = strings.Cut(p, " ")
		if name, ok := strings.CutPrefix(p, "github.com/sublog/sublog/"); ok {
			if !allowed[name] && !strings.HasPrefix(name, "log/card/agree") {
				t.Errorf("the agreement fuzzer's binary links %s", name)
			}
		}
		for _, h := range heavy {
			if strings.HasPrefix(p, h) {
				t.Errorf("the agreement fuzzer's binary links %s", p)
			}
		}
	}
}
