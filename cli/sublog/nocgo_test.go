package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBuildWithoutCgoSaysWhy builds this command with cgo off: the build
// must fail, and its message must say that cgo and a C compiler are needed
// (nocgo.go), not only what breaks deep inside a C-backed dependency.
func TestBuildWithoutCgoSaysWhy(t *testing.T) {
	cmd := exec.Command("go", "build", "-o", os.DevNull, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a build without cgo succeeded:\n%s", out)
	}
	for _, want := range []string{"nocgo.go", "requires_cgo", "CGO_ENABLED_1", "gcc"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the failed build does not say %q:\n%s", want, out)
		}
	}
}
