//go:build wasip1

// counter keeps a count in the peer's key-value state: "inc" adds one and
// answers the new count, "get" answers it.
package main

import (
	"strconv"

	"github.com/sublog/sublog/examples/guest"
)

func init() {
	guest.Handler = func(req []byte) ([]byte, uint32) {
		n := 0
		if v, ok := guest.Get("count"); ok {
			n, _ = strconv.Atoi(string(v))
		}
		switch string(req) {
		case "inc", "":
			n++
			if !guest.Set("count", []byte(strconv.Itoa(n))) {
				return []byte("state over the disk cap"), 2
			}
		case "get":
		default:
			return []byte("unknown request " + strconv.Quote(string(req))), 1
		}
		return []byte(strconv.Itoa(n)), 0
	}
}

func main() {}
