//go:build wasip1

// misbehave does what a peer must not get away with, on request:
//
//	alloc    allocate until the memory cap stops it
//	loop     spin forever
//	fib N    a loop-free exponential call tree of depth N (default 60)
//	recurse  recurse without end
//	kv       call a host function (kv_get) its grant does not give
//	fs       try to read a host file (there is no file system)
//	clock    answer the year the wall clock says (fake unless granted)
//	ok       answer "ok"
package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sublog/sublog/examples/guest"
)

var sink [][]byte

//go:noinline
func fib(n int) int {
	if n < 2 {
		return 1
	}
	return fib(n-1) + fib(n-2)
}

//go:noinline
func recurse(n int) int {
	var pad [256]byte
	pad[n%256] = byte(n)
	return recurse(n+1) + int(pad[0])
}

func init() {
	guest.Handler = func(req []byte) ([]byte, uint32) {
		cmd, arg, _ := strings.Cut(string(req), " ")
		switch cmd {
		case "ok":
			return []byte("ok"), 0
		case "alloc":
			for {
				sink = append(sink, make([]byte, 4<<20))
			}
		case "loop":
			x := 0
			for {
				x++
			}
		case "fib":
			n, err := strconv.Atoi(arg)
			if err != nil {
				n = 60
			}
			return []byte(strconv.Itoa(fib(n))), 0
		case "recurse":
			return []byte(strconv.Itoa(recurse(0))), 0
		case "fs":
			b, err := os.ReadFile("/etc/hostname")
			if err != nil {
				return []byte("no file system: " + err.Error()), 0
			}
			return b, 0
		case "clock":
			return []byte(strconv.Itoa(time.Now().Year())), 0
		case "kv":
			v, _ := guest.Get("secret")
			return v, 0
		}
		return []byte("unknown request"), 1
	}
}

func main() {}
