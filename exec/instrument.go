package exec

import (
	"errors"
	"fmt"
)

// wazero stops a module whose context is done (WithCloseOnContextDone) only
// at the checks its compiler puts at loop headers. Code with no loops, such as
// a loop-free exponential call tree f(n) = f(n-1) + f(n-1), never reaches a
// check and runs past any deadline (TestRawWazeroOverrunsLoopFree measures
// it). instrument closes that hole: it puts an empty `loop end` block at the
// start of every function body that does not already start with a loop, so
// every function entry passes a termination check. With every back-edge and
// every call checked, the code run between two checks is bounded by the size
// of one function body, so a deadline stops any module promptly.
//
// The rewrite touches only the code section: each body gets three bytes after
// its local declarations and its size prefix is re-encoded; branch depths are
// relative, so the inserted block (closed before the original code) shifts
// nothing. Function indices, imports, exports and every other section are
// copied byte for byte.

var errWasm = errors.New("exec: malformed wasm module")

const (
	sectionCode = 10
	opLoop      = 0x03
	opEnd       = 0x0b
	blockEmpty  = 0x40
)

var entryCheck = []byte{opLoop, blockEmpty, opEnd}

// instrument returns the module with an entry check in every function body.
func instrument(mod []byte) ([]byte, error) {
	if len(mod) < 8 {
		return nil, fmt.Errorf("%w: %d bytes", errWasm, len(mod))
	}
	out := make([]byte, 0, len(mod)+len(mod)/16)
	out = append(out, mod[:8]...)
	p := 8
	for p < len(mod) {
		id := mod[p]
		size, n, err := uleb(mod, p+1)
		if err != nil {
			return nil, err
		}
		start := p + 1 + n
		end := start + int(size)
		if end > len(mod) || end < start {
			return nil, fmt.Errorf("%w: section %d overruns the module", errWasm, id)
		}
		if id != sectionCode {
			out = append(out, mod[p:end]...)
			p = end
			continue
		}
		code, err := instrumentCode(mod[start:end])
		if err != nil {
			return nil, err
		}
		out = append(out, id)
		out = appendULEB(out, uint64(len(code)))
		out = append(out, code...)
		p = end
	}
	return out, nil
}

func instrumentCode(sec []byte) ([]byte, error) {
	count, n, err := uleb(sec, 0)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(sec)+int(count)*4)
	out = appendULEB(out, count)
	p := n
	for range count {
		size, n, err := uleb(sec, p)
		if err != nil {
			return nil, err
		}
		start := p + n
		end := start + int(size)
		if end > len(sec) || end < start {
			return nil, fmt.Errorf("%w: function body overruns the code section", errWasm)
		}
		body := sec[start:end]
		// Skip the local declarations: a vector of (count, valtype).
		groups, q, err := uleb(body, 0)
		if err != nil {
			return nil, err
		}
		for range groups {
			_, m, err := uleb(body, q)
			if err != nil {
				return nil, err
			}
			q += m + 1 // the count, then one valtype byte
			if q > len(body) {
				return nil, fmt.Errorf("%w: local declarations overrun a body", errWasm)
			}
		}
		if q < len(body) && body[q] == opLoop {
			out = appendULEB(out, uint64(len(body)))
			out = append(out, body...)
		} else {
			out = appendULEB(out, uint64(len(body)+len(entryCheck)))
			out = append(out, body[:q]...)
			out = append(out, entryCheck...)
			out = append(out, body[q:]...)
		}
		p = end
	}
	if p != len(sec) {
		return nil, fmt.Errorf("%w: %d bytes after the last function body", errWasm, len(sec)-p)
	}
	return out, nil
}

// uleb reads an unsigned LEB128 of at most 32 bits at b[p:].
func uleb(b []byte, p int) (uint64, int, error) {
	var v uint64
	for i := 0; i < 5; i++ {
		if p+i >= len(b) {
			return 0, 0, fmt.Errorf("%w: truncated LEB128", errWasm)
		}
		c := b[p+i]
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if v > 1<<32-1 {
				return 0, 0, fmt.Errorf("%w: LEB128 over 32 bits", errWasm)
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: LEB128 too long", errWasm)
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}
