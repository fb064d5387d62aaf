// Command sublog is the one sublog binary; see package cli.
package main

import (
	"os"

	"github.com/sublog/sublog/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
