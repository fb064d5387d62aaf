//go:build !linux

package exec

import (
	"runtime"
	"time"
)

// threadClock: no per-thread CPU clock here; the watchdog counts wall time.
type threadClock struct{}

func lockThread() (threadClock, bool) {
	runtime.LockOSThread()
	return threadClock{}, false
}

func (threadClock) now() (time.Duration, bool) { return 0, false }
