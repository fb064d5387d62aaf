//go:build wasip1

// Package guest is the guest side of sublog's host ABI for micro-apps
// written in Go (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared). An app sets
// Handler in init; the exported handle function reads the request, calls it
// and writes the response.
package guest

import "unsafe"

//go:wasmimport sublog req_read
func reqRead(p unsafe.Pointer, n uint32) uint32

//go:wasmimport sublog resp_write
func respWrite(p unsafe.Pointer, n uint32) int32

//go:wasmimport sublog kv_get
func kvGet(k unsafe.Pointer, kn uint32, v unsafe.Pointer, vcap uint32) int32

//go:wasmimport sublog kv_set
func kvSet(k unsafe.Pointer, kn uint32, v unsafe.Pointer, vn uint32) int32

//go:wasmimport sublog kv_del
func kvDel(k unsafe.Pointer, kn uint32) int32

//go:wasmimport sublog log
func logLine(p unsafe.Pointer, n uint32)

// Handler serves one request: the response and a status (0 is success).
var Handler func(req []byte) ([]byte, uint32)

//go:wasmexport handle
func handle(n uint32) uint32 {
	req := make([]byte, n)
	if n > 0 {
		reqRead(unsafe.Pointer(&req[0]), n)
	}
	resp, status := Handler(req)
	if len(resp) > 0 {
		respWrite(unsafe.Pointer(&resp[0]), uint32(len(resp)))
	}
	return status
}

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// Get reads a key of the peer's state.
func Get(k string) ([]byte, bool) {
	kb := []byte(k)
	buf := make([]byte, 64)
	for {
		n := kvGet(ptr(kb), uint32(len(kb)), ptr(buf), uint32(len(buf)))
		if n < 0 {
			return nil, false
		}
		if int(n) <= len(buf) {
			return buf[:n], true
		}
		buf = make([]byte, n)
	}
}

// Set writes a key of the peer's state; false if over the disk cap.
func Set(k string, v []byte) bool {
	kb := []byte(k)
	return kvSet(ptr(kb), uint32(len(kb)), ptr(v), uint32(len(v))) == 0
}

// Delete removes a key.
func Delete(k string) {
	kb := []byte(k)
	kvDel(ptr(kb), uint32(len(kb)))
}

// Log writes a log line (needs the `log` grant).
func Log(s string) {
	b := []byte(s)
	logLine(ptr(b), uint32(len(b)))
}
