//go:build wasip1

// greeter answers "hello, NAME" to a request NAME.
package main

import "github.com/sublog/sublog/examples/guest"

func init() {
	guest.Handler = func(req []byte) ([]byte, uint32) {
		if len(req) == 0 {
			return []byte("hello, world"), 0
		}
		return append([]byte("hello, "), req...), 0
	}
}

func main() {}
