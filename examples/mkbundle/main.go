// Command mkbundle packs a bundle source directory (manifest.yaml and the
// compiled module) into DIR/NAME.bundle, as `sublog bundle build DIR` does.
// It lets `make examples` run before the sublog binary is built.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sublog/sublog/exec/bundle"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: mkbundle DIR OUT")
		os.Exit(2)
	}
	dir, out := os.Args[1], os.Args[2]
	b, err := build(dir)
	if err == nil {
		err = os.WriteFile(out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s\n", out, bundle.HashOf(b))
}

func build(dir string) ([]byte, error) {
	doc, err := os.ReadFile(filepath.Join(dir, bundle.SourceFile))
	if err != nil {
		return nil, err
	}
	m, mod, err := bundle.ParseSource(doc)
	if err != nil {
		return nil, err
	}
	code, err := os.ReadFile(filepath.Join(dir, mod))
	if err != nil {
		return nil, err
	}
	return bundle.Build(m, code)
}
