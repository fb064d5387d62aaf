package exec

import (
	"errors"
	"fmt"
)

// Stopping a module. wazero can stop a running module only at checks its
// compiler places at loop headers (WithCloseOnContextDone), and each of
// those leaves machine code for Go: a Go guest, whose runtime is full of
// loops, runs several times slower with them. Code without loops (a
// loop-free exponential call tree f(n) = f(n-1) + f(n-1)) never reaches
// one at all and runs past any deadline (TestRawWazeroOverrunsLoopFree).
// And native code that never returns to Go cannot be preempted, so a
// spinning module would also stall the host's garbage collector.
//
// So the executor places its own checks. instrument adds two mutable i32
// globals, exported as stopGlobal and fuelGlobal, and puts this at the
// entry of every function and the head of every loop:
//
//	fuel -= 1
//	if fuel == 0 {
//	    fuel = fuelRefill
//	    memory.grow 0; drop      ;; a trip into Go: the goroutine can be preempted
//	    if stop { unreachable }
//	}
//
// The hot path is a few register operations, no exit to Go. The watchdog
// (or a halt) sets stop to 1 and fuel to 1, so the module traps at its next
// check. With every back-edge and every call checked, the code run between
// two checks is bounded by one function body, so a module stops promptly
// whatever its shape, and it enters Go at least every fuelRefill checks.
//
// The rewrite decodes every instruction of every body (to find the loops)
// and changes only the memory section (a zero-page memory is added to a
// module that has none, for memory.grow), the global section (two globals
// appended, so existing indices stay), the export section (two exports
// appended) and the code section (checks inserted, sizes re-encoded).
// Branch depths are relative and the inserted block closes before the
// original code goes on, so nothing shifts. A module with a start section
// is refused: its start function would run during instantiation, before a
// watchdog could stop it (reactors export _initialize instead, which the
// executor calls under the CPU cap).

var errWasm = errors.New("exec: malformed or unsupported wasm module")

// Export names of the flags instrument adds, and the fuel between trips
// into Go.
const (
	instrumentVersion = 2 // bump when the rewrite changes (it names cached results)
	stopGlobal        = "__sublog_stop"
	fuelGlobal        = "__sublog_fuel"
	stackGlobal       = "__sublog_stack"
	fuelRefill        = 4096
)

// The call stack. wazero grows a module's native stack on demand up to
// 400 MB, outside the memory cap: a recursing module took ~160 MB under a
// 32 MiB cap. So every function charges its frame to a third global, the
// stack budget the host sets before each call (stackBudget), at entry, and
// refunds it when it returns; a call that would overdraw it traps, and the
// host reports ErrStackCap. A frame is charged frameBase bytes plus
// frameSlot bytes per parameter and local (wazero keeps each in a 16-byte
// slot or less, and the base covers the return address and spill area).
// Returns are made to pass the refund: the body is wrapped in a block of
// the function's result type, each return becomes a branch to it, and a
// tail call refunds before it leaves. A throw that unwinds frames skips
// their refunds; the budget is reset before every call, so this only ever
// stops a module early, never lets it run over.
const (
	frameBase = 128
	frameSlot = 16
	maxFrame  = 1 << 30
)

const (
	secType   = 1
	secImport = 2
	secFunc   = 3
	secMemory = 5
	secGlobal = 6
	secExport = 7
	secStart  = 8
	secCode   = 10
)

type section struct {
	id   byte
	body []byte
}

// instrument returns the module with the flags and the checks.
func instrument(mod []byte) ([]byte, error) {
	if len(mod) < 8 || string(mod[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: no wasm header", errWasm)
	}
	var secs []section
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
		if id == secStart {
			return nil, fmt.Errorf("%w: the module has a start section (export _initialize instead)", errWasm)
		}
		secs = append(secs, section{id, mod[start:end]})
		p = end
	}
	var importedGlobals, importedMems, definedGlobals, definedMems uint64
	var err error
	var types []funcType
	var funcTypes []uint64
	hasGlobal, hasExport, hasMemory := false, false, false
	for _, s := range secs {
		switch s.id {
		case secType:
			if types, err = readTypes(s.body); err != nil {
				return nil, err
			}
		case secFunc:
			if funcTypes, err = readFuncs(s.body); err != nil {
				return nil, err
			}
		case secImport:
			if importedGlobals, importedMems, err = countImports(s.body); err != nil {
				return nil, err
			}
		case secGlobal:
			hasGlobal = true
			if definedGlobals, _, err = uleb(s.body, 0); err != nil {
				return nil, err
			}
		case secMemory:
			if definedMems, _, err = uleb(s.body, 0); err != nil {
				return nil, err
			}
		case secExport:
			hasExport = true
		}
	}
	hasMemory = importedMems+definedMems > 0
	stop := importedGlobals + definedGlobals
	fuel := stop + 1
	stack := stop + 2
	check := checkCode(stop, fuel)
	// The wrapping block of each body has the function's result type: none
	// or one value is a block type of its own; more need a type index, of
	// an existing [] -> results type or of one appended to the type section.
	var newTypes []byte
	blockTypes := make([][]byte, len(funcTypes))
	for i, ti := range funcTypes {
		if ti >= uint64(len(types)) {
			return nil, fmt.Errorf("%w: function %d has type %d of %d", errWasm, i, ti, len(types))
		}
		res := types[ti].results
		switch len(res) {
		case 0:
			blockTypes[i] = []byte{0x40}
		case 1:
			blockTypes[i] = res[0]
		default:
			idx := -1
			for j, t := range types {
				if t.params == 0 && sameTypes(t.results, res) {
					idx = j
					break
				}
			}
			if idx < 0 {
				idx = len(types)
				types = append(types, funcType{results: res})
				newTypes = append(newTypes, 0x60, 0x00)
				newTypes = appendULEB(newTypes, uint64(len(res)))
				for _, r := range res {
					newTypes = append(newTypes, r...)
				}
			}
			blockTypes[i] = appendSLEB(nil, int64(idx))
		}
	}
	frame := func(i int, locals uint64) uint64 {
		n := types[funcTypes[i]].params + locals
		return min(frameBase+frameSlot*n, maxFrame)
	}

	newGlobals := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b} // stop: mut i32 = 0
	newGlobals = append(newGlobals, 0x7f, 0x01, 0x41)  // fuel: mut i32 = fuelRefill
	newGlobals = appendSLEB(newGlobals, fuelRefill)
	newGlobals = append(newGlobals, 0x0b)
	newGlobals = append(newGlobals, 0x7f, 0x01, 0x41, 0x00, 0x0b) // stack: mut i32 = 0 (the host sets it)
	var newExports []byte
	for _, e := range []struct {
		name string
		idx  uint64
	}{{stopGlobal, stop}, {fuelGlobal, fuel}, {stackGlobal, stack}} {
		newExports = appendULEB(newExports, uint64(len(e.name)))
		newExports = append(newExports, e.name...)
		newExports = append(newExports, 0x03)
		newExports = appendULEB(newExports, e.idx)
	}

	out := make([]byte, 0, len(mod)+len(mod)/4)
	out = append(out, mod[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendULEB(out, uint64(len(body)))
		out = append(out, body...)
	}
	order := func(id byte) int {
		if id == 12 { // data count: between element (9) and code (10)
			return 95
		}
		return int(id) * 10
	}
	// place emits the sections the module lacks before a section of id.
	place := func(id byte) {
		if !hasMemory && order(id) > order(secMemory) {
			emit(secMemory, []byte{0x01, 0x00, 0x00}) // one memory of 0 pages
			hasMemory = true
		}
		if !hasGlobal && order(id) > order(secGlobal) {
			emit(secGlobal, append([]byte{0x03}, newGlobals...))
			hasGlobal = true
		}
		if !hasExport && order(id) > order(secExport) {
			emit(secExport, append([]byte{0x03}, newExports...))
			hasExport = true
		}
	}
	for _, s := range secs {
		if s.id != 0 {
			place(s.id)
		}
		switch s.id {
		case secGlobal:
			body, err := appendToVector(s.body, 3, newGlobals)
			if err != nil {
				return nil, err
			}
			emit(s.id, body)
		case secExport:
			body, err := appendToVector(s.body, 3, newExports)
			if err != nil {
				return nil, err
			}
			emit(s.id, body)
		case secType:
			body := s.body
			if len(newTypes) > 0 {
				if body, err = appendToVector(s.body, uint64(len(types))-countTypes(s.body), newTypes); err != nil {
					return nil, err
				}
			}
			emit(s.id, body)
		case secCode:
			body, err := instrumentCode(s.body, check, stack, blockTypes, frame)
			if err != nil {
				return nil, err
			}
			emit(s.id, body)
		default:
			emit(s.id, s.body)
		}
	}
	place(0xff)
	return out, nil
}

// checkCode is the check sequence for the given global indices.
func checkCode(stop, fuel uint64) []byte {
	g := func(op byte, idx uint64) []byte { return appendULEB([]byte{op}, idx) }
	var c []byte
	c = append(c, g(0x23, fuel)...) // global.get fuel
	c = append(c, 0x41, 0x01, 0x6b) // i32.const 1; i32.sub
	c = append(c, g(0x24, fuel)...) // global.set fuel
	c = append(c, g(0x23, fuel)...) // global.get fuel
	c = append(c, 0x45, 0x04, 0x40) // i32.eqz; if
	c = append(c, 0x41)             // i32.const fuelRefill
	c = appendSLEB(c, fuelRefill)
	c = append(c, g(0x24, fuel)...)       // global.set fuel
	c = append(c, 0x41, 0x00, 0x40, 0x00) // i32.const 0; memory.grow 0
	c = append(c, 0x1a)                   // drop
	c = append(c, g(0x23, stop)...)       // global.get stop
	c = append(c, 0x04, 0x40, 0x00, 0x0b) // if unreachable end
	return append(c, 0x0b)                // end
}

// appendToVector adds k already-encoded elements to a vector section.
func appendToVector(body []byte, k uint64, elems []byte) ([]byte, error) {
	n, m, err := uleb(body, 0)
	if err != nil {
		return nil, err
	}
	out := appendULEB(nil, n+k)
	out = append(out, body[m:]...)
	return append(out, elems...), nil
}

func countImports(b []byte) (globals, mems uint64, err error) {
	r := &reader{b: b}
	n := r.u32()
	for i := uint64(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // func
			r.u32()
		case 0x01: // table: reftype, limits
			r.byte()
			r.limits()
		case 0x02: // memory
			r.limits()
			mems++
		case 0x03: // global: valtype, mut
			r.valtype()
			r.byte()
			globals++
		case 0x04: // tag
			r.byte()
			r.u32()
		default:
			r.fail("import kind 0x%02x", kind)
		}
	}
	return globals, mems, r.err
}

// instrumentCode puts check at every function entry and loop head.
func instrumentCode(sec []byte, check []byte, stack uint64, blockTypes [][]byte, frame func(i int, locals uint64) uint64) ([]byte, error) {
	count, n, err := uleb(sec, 0)
	if err != nil {
		return nil, err
	}
	if count != uint64(len(blockTypes)) {
		return nil, fmt.Errorf("%w: %d function bodies for %d functions", errWasm, count, len(blockTypes))
	}
	out := make([]byte, 0, len(sec)+len(sec)/3)
	out = appendULEB(out, count)
	p := n
	var body []byte
	for i := range int(count) {
		size, n, err := uleb(sec, p)
		if err != nil {
			return nil, err
		}
		start := p + n
		end := start + int(size)
		if end > len(sec) || end < start {
			return nil, fmt.Errorf("%w: function body overruns the code section", errWasm)
		}
		if body, err = instrumentBody(body[:0], sec[start:end], check, stack, blockTypes[i], func(locals uint64) uint64 { return frame(i, locals) }); err != nil {
			return nil, err
		}
		out = appendULEB(out, uint64(len(body)))
		out = append(out, body...)
		p = end
	}
	if p != len(sec) {
		return nil, fmt.Errorf("%w: %d bytes after the last function body", errWasm, len(sec)-p)
	}
	return out, nil
}

func instrumentBody(out, body, check []byte, stack uint64, bt []byte, frame func(locals uint64) uint64) ([]byte, error) {
	r := &reader{b: body}
	groups := r.u32()
	var locals uint64
	for i := uint64(0); i < groups && r.err == nil; i++ {
		locals += r.u32()
		r.valtype()
	}
	if r.err != nil {
		return nil, r.err
	}
	cost := int64(frame(min(locals, maxFrame)))
	g := func(op byte) []byte { return appendULEB([]byte{op}, stack) }
	charge := append(g(0x23), 0x41)                 // global.get stack; i32.const cost
	charge = appendSLEB(charge, cost)               //
	charge = append(charge, 0x6b)                   // i32.sub
	charge = append(charge, g(0x24)...)             // global.set stack
	charge = append(charge, g(0x23)...)             // global.get stack
	charge = append(charge, 0x41, 0x00, 0x48)       // i32.const 0; i32.lt_s
	charge = append(charge, 0x04, 0x40, 0x00, 0x0b) // if unreachable end
	refund := append(g(0x23), 0x41)                 // global.get stack; i32.const cost
	refund = appendSLEB(refund, cost)               //
	refund = append(refund, 0x6a)                   // i32.add
	refund = append(refund, g(0x24)...)             // global.set stack

	out = append(out, body[:r.p]...)
	out = append(out, check...)
	out = append(out, charge...)
	out = append(out, 0x02) // block of the function's result type
	out = append(out, bt...)
	copied := r.p
	depth := 0 // blocks open inside the wrapping block
	for r.p < len(r.b) && r.err == nil {
		at := r.p
		op := r.byte()
		switch op {
		case 0x03: // loop bt: the check opens the loop body
			r.blocktype()
			out = append(out, body[copied:r.p]...)
			out = append(out, check...)
			copied = r.p
			depth++
			continue
		case 0x02, 0x04, 0x06, 0x1f: // block, if, try, try_table
			depth++
		case 0x0b, 0x18: // end, delegate (which ends a try)
			depth--
		case 0x0f: // return: a branch to the wrapping block, which refunds
			out = append(out, body[copied:at]...)
			out = append(out, 0x0c)
			out = appendULEB(out, uint64(depth))
			copied = r.p
			continue
		case 0x12, 0x13, 0x15: // return_call*: refund, then leave
			out = append(out, body[copied:at]...)
			out = append(out, refund...)
			copied = at
		}
		r.immediates(op)
	}
	if r.err != nil {
		return nil, r.err
	}
	if depth != -1 || len(body) == 0 || body[len(body)-1] != 0x0b {
		return nil, fmt.Errorf("%w: function body does not end where its blocks do", errWasm)
	}
	out = append(out, body[copied:]...) // its end closes the wrapping block
	out = append(out, refund...)
	return append(out, 0x0b), nil
}

// funcType is what the rewrite needs of a function type: its number of
// parameters and its result types (as encoded).
type funcType struct {
	params  uint64
	results [][]byte
}

func sameTypes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if string(a[i]) != string(b[i]) {
			return false
		}
	}
	return true
}

// readTypes reads the type section (function types only: wasm 2.0).
func readTypes(b []byte) ([]funcType, error) {
	r := &reader{b: b}
	n := r.u32()
	var out []funcType
	for i := uint64(0); i < n && r.err == nil; i++ {
		if f := r.byte(); f != 0x60 {
			r.fail("type form 0x%02x", f)
			break
		}
		var t funcType
		t.params = r.u32()
		for j := uint64(0); j < t.params && r.err == nil; j++ {
			r.valtype()
		}
		nr := r.u32()
		for j := uint64(0); j < nr && r.err == nil; j++ {
			at := r.p
			r.valtype()
			t.results = append(t.results, b[at:r.p])
		}
		out = append(out, t)
	}
	if r.err == nil && r.p != len(b) {
		r.fail("bytes after the types")
	}
	return out, r.err
}

func countTypes(b []byte) uint64 {
	n, _, _ := uleb(b, 0)
	return n
}

// readFuncs reads the function section: each defined function's type.
func readFuncs(b []byte) ([]uint64, error) {
	r := &reader{b: b}
	n := r.u32()
	var out []uint64
	for i := uint64(0); i < n && r.err == nil; i++ {
		out = append(out, r.u32())
	}
	if r.err == nil && r.p != len(b) {
		r.fail("bytes after the functions")
	}
	return out, r.err
}

// reader decodes the parts of the binary format the rewrite needs.
type reader struct {
	b   []byte
	p   int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at byte %d", errWasm, fmt.Sprintf(format, args...), r.p)
	}
	r.p = len(r.b)
}

func (r *reader) byte() byte {
	if r.p >= len(r.b) {
		r.fail("truncated")
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *reader) skip(n int) {
	if n < 0 || r.p+n > len(r.b) {
		r.fail("truncated")
		return
	}
	r.p += n
}

func (r *reader) u32() uint64 {
	if r.err != nil {
		return 0
	}
	v, n, err := uleb(r.b, r.p)
	if err != nil {
		r.fail("%v", err)
		return 0
	}
	r.p += n
	return v
}

// sleb skips a signed LEB128 of at most max bytes.
func (r *reader) sleb(max int) {
	for i := 0; i < max; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.fail("LEB128 too long")
}

func (r *reader) name() { r.skip(int(r.u32())) }

func (r *reader) limits() {
	flag := r.byte()
	r.u32()
	if flag&1 != 0 {
		r.u32()
	}
}

func isValtype(t byte) bool {
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		return true
	}
	return false
}

func (r *reader) valtype() {
	if t := r.byte(); !isValtype(t) && r.err == nil {
		r.fail("value type 0x%02x", t)
	}
}

func (r *reader) blocktype() {
	if r.p >= len(r.b) {
		r.fail("truncated")
		return
	}
	if c := r.b[r.p]; c == 0x40 || isValtype(c) {
		r.p++
		return
	}
	r.sleb(5) // a type index, as s33
}

func (r *reader) memarg() {
	if align := r.u32(); align&0x40 != 0 { // multi-memory: an index follows
		r.u32()
	}
	r.u32()
}

// immediates skips the immediates of the instruction op (already read).
func (r *reader) immediates(op byte) {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0a || op == 0x0b || op == 0x0f ||
		op == 0x19 || op == 0x1a || op == 0x1b || (op >= 0x45 && op <= 0xc4) || op == 0xd1:
		// no immediates
	case op == 0x02 || op == 0x04 || op == 0x06: // block, if, try
		r.blocktype()
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x0c || op == 0x0d || op == 0x10 ||
		op == 0x12 || op == 0x18 || (op >= 0x20 && op <= 0x26) || op == 0xd2:
		// catch, throw, rethrow, br, br_if, call, return_call, delegate,
		// local/global/table get and set, ref.func
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint64(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		n := r.u32()
		for i := uint64(0); i < n && r.err == nil; i++ {
			r.valtype()
		}
	case op == 0x1f: // try_table bt catches
		r.blocktype()
		n := r.u32()
		for i := uint64(0); i < n && r.err == nil; i++ {
			switch k := r.byte(); k {
			case 0x00, 0x01:
				r.u32()
				r.u32()
			case 0x02, 0x03:
				r.u32()
			default:
				r.fail("catch kind 0x%02x", k)
			}
		}
	case op >= 0x28 && op <= 0x3e:
		r.memarg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41:
		r.sleb(5)
	case op == 0x42:
		r.sleb(10)
	case op == 0x43:
		r.skip(4)
	case op == 0x44:
		r.skip(8)
	case op == 0xd0: // ref.null heaptype
		r.sleb(5)
	case op == 0xfc:
		r.prefixFC(r.u32())
	case op == 0xfd:
		r.prefixFD(r.u32())
	case op == 0xfe: // atomics
		if sub := r.u32(); sub == 0x03 {
			r.byte() // atomic.fence
		} else {
			r.memarg()
		}
	default:
		r.fail("unknown opcode 0x%02x", op)
	}
}

func (r *reader) prefixFC(sub uint64) {
	switch sub {
	case 0, 1, 2, 3, 4, 5, 6, 7: // saturating truncations
	case 9, 11, 13, 15, 16, 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.u32()
	case 8, 10, 12, 14: // memory.init, memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	default:
		r.fail("unknown 0xfc instruction %d", sub)
	}
}

func (r *reader) prefixFD(sub uint64) {
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load_zero
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.skip(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load and store lane
		r.memarg()
		r.byte()
	case sub < 0x200:
		// no immediates (the rest of SIMD and relaxed SIMD)
	default:
		r.fail("unknown SIMD instruction %d", sub)
	}
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

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
