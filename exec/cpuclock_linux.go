//go:build linux

package exec

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// threadClock is the CPU-time clock of one OS thread. On Linux any thread
// of the process may read it (clock_gettime on the thread's clock ID).
type threadClock struct{ id uintptr }

// lockThread pins the calling goroutine to its OS thread (the caller
// undoes it with runtime.UnlockOSThread) and returns that thread's clock;
// ok is false where there is none (reading it may still fail).
func lockThread() (threadClock, bool) {
	runtime.LockOSThread()
	tid := syscall.Gettid()
	// MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): ~tid << 3 | per-thread (4) | sched (2).
	return threadClock{uintptr(int32(^uint32(tid)<<3 | 6))}, true
}

// now is the CPU time the thread has used since it started.
func (c threadClock) now() (time.Duration, bool) {
	var ts syscall.Timespec
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, c.id, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
