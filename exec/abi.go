package exec

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	stdsync "sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/sublog/sublog/exec/bundle"
)

// The host ABI (import module "sublog"); every value is an i32, pointers
// and lengths address the module's exported memory:
//
//	handle(req_len) -> status          exported by the module: serve one request; 0 is success
//	req_read(ptr, len) -> n            [req] copy up to len bytes of the request to ptr
//	resp_write(ptr, len) -> 0 | -1     [req] set the response (at most 1 MiB; -1 if larger)
//	kv_get(kptr, klen, vptr, vcap) -> n | -1
//	                                   [kv] value length, copied to vptr if it fits vcap; -1 if absent
//	kv_set(kptr, klen, vptr, vlen) -> 0 | -1
//	                                   [kv] set a key (at most 1 KiB); -1 if over the disk cap
//	kv_del(kptr, klen) -> 0            [kv] delete a key
//	log(ptr, len)                      [log] one log line
//
// Every function is always importable, so a module links whatever the grant
// says; calling one whose group the peer was not given traps with
// ErrNotGranted, which fails the request and is recorded. Key-value writes
// of a request are buffered and committed (to disk) only when the request
// succeeds. WASI (wasi_snapshot_preview1) is linked with no preopened
// directories, no arguments or environment, fake clocks unless `clock` is
// given, a fixed random stream unless `random` is given, and stdout/stderr
// going to the host's peer log only under `log`.
const (
	abiModule   = "sublog"
	exportEntry = "handle"
	maxResponse = 1 << 20
	maxKey      = 1 << 10
	maxLogLine  = 4 << 10
	maxLogCall  = 64 << 10 // log bytes per request
)

type callKey struct{}

// callState is one request's view of the host, carried in the context.
type callState struct {
	req      []byte
	resp     []byte
	writes   map[string][]byte // nil value: deleted
	fault    error             // why a host function trapped
	logged   int
	timedOut atomic.Bool // the watchdog stopped the module at the CPU cap
	gaveUp   atomic.Bool // the caller's context ended first
}

func stateOf(ctx context.Context) *callState {
	cs, _ := ctx.Value(callKey{}).(*callState)
	return cs
}

func i32(v uint64) uint32 { return uint32(v) }

// read copies guest memory, trapping on out-of-range pointers.
func read(m api.Module, ptr, n uint32) []byte {
	mem := m.Memory()
	if mem == nil {
		panic(fmt.Errorf("%w: the module exports no memory", ErrTrap))
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		panic(fmt.Errorf("%w: pointer %d+%d outside memory", ErrTrap, ptr, n))
	}
	return bytes.Clone(b)
}

func write(m api.Module, ptr uint32, b []byte) {
	mem := m.Memory()
	if mem == nil || !mem.Write(ptr, b) {
		panic(fmt.Errorf("%w: pointer %d+%d outside memory", ErrTrap, ptr, len(b)))
	}
}

// gate returns the call state, trapping if the peer lacks cap.
func (p *peer) gate(ctx context.Context, cap, fn string) *callState {
	cs := stateOf(ctx)
	if cs == nil {
		panic(fmt.Errorf("%w: %s called outside a request", ErrTrap, fn))
	}
	if !p.caps[cap] {
		cs.fault = fmt.Errorf("%w: %s.%s needs %q, which this peer was not given", ErrNotGranted, abiModule, fn, cap)
		panic(cs.fault)
	}
	return cs
}

func (p *peer) hostModule(ctx context.Context, rt wazero.Runtime) error {
	i := api.ValueTypeI32
	b := rt.NewHostModuleBuilder(abiModule)
	fn := func(name string, params, results []api.ValueType, f api.GoModuleFunc) {
		b.NewFunctionBuilder().WithGoModuleFunction(f, params, results).Export(name)
	}
	fn("req_read", []api.ValueType{i, i}, []api.ValueType{i}, func(ctx context.Context, m api.Module, s []uint64) {
		cs := p.gate(ctx, bundle.CapReq, "req_read")
		n := min(int(i32(s[1])), len(cs.req))
		write(m, i32(s[0]), cs.req[:n])
		s[0] = uint64(n)
	})
	fn("resp_write", []api.ValueType{i, i}, []api.ValueType{i}, func(ctx context.Context, m api.Module, s []uint64) {
		cs := p.gate(ctx, bundle.CapReq, "resp_write")
		if i32(s[1]) > maxResponse {
			s[0] = uint64(^uint32(0))
			return
		}
		cs.resp = read(m, i32(s[0]), i32(s[1]))
		s[0] = 0
	})
	fn("kv_get", []api.ValueType{i, i, i, i}, []api.ValueType{i}, func(ctx context.Context, m api.Module, s []uint64) {
		cs := p.gate(ctx, bundle.CapKV, "kv_get")
		k := string(read(m, i32(s[0]), min(i32(s[1]), maxKey+1)))
		v, ok := cs.writes[k]
		if !ok {
			v, ok = p.kvGet(k)
		} else {
			ok = v != nil
		}
		if !ok {
			s[0] = uint64(^uint32(0))
			return
		}
		if uint32(len(v)) <= i32(s[3]) {
			write(m, i32(s[2]), v)
		}
		s[0] = uint64(len(v))
	})
	fn("kv_set", []api.ValueType{i, i, i, i}, []api.ValueType{i}, func(ctx context.Context, m api.Module, s []uint64) {
		cs := p.gate(ctx, bundle.CapKV, "kv_set")
		if i32(s[1]) > maxKey || uint64(i32(s[3])) > p.limits.Disk {
			s[0] = uint64(^uint32(0))
			return
		}
		k := string(read(m, i32(s[0]), i32(s[1])))
		v := read(m, i32(s[2]), i32(s[3]))
		if v == nil {
			v = []byte{}
		}
		if cs.writes == nil {
			cs.writes = map[string][]byte{}
		}
		old, had := cs.writes[k]
		cs.writes[k] = v
		if p.kvSizeWith(cs.writes) > p.limits.Disk {
			if had {
				cs.writes[k] = old
			} else {
				delete(cs.writes, k)
			}
			s[0] = uint64(^uint32(0))
			return
		}
		s[0] = 0
	})
	fn("kv_del", []api.ValueType{i, i}, []api.ValueType{i}, func(ctx context.Context, m api.Module, s []uint64) {
		cs := p.gate(ctx, bundle.CapKV, "kv_del")
		k := string(read(m, i32(s[0]), min(i32(s[1]), maxKey+1)))
		if cs.writes == nil {
			cs.writes = map[string][]byte{}
		}
		cs.writes[k] = nil
		s[0] = 0
	})
	fn("log", []api.ValueType{i, i}, nil, func(ctx context.Context, m api.Module, s []uint64) {
		cs := p.gate(ctx, bundle.CapLog, "log")
		n := min(i32(s[1]), maxLogLine)
		if cs.logged+int(n) > maxLogCall {
			return
		}
		cs.logged += int(n)
		line := read(m, i32(s[0]), n)
		p.logLine(line)
	})
	_, err := b.Instantiate(ctx)
	return err
}

func (p *peer) logLine(line []byte) {
	line = bytes.TrimRight(line, "\n")
	p.h.logMu.Lock()
	defer p.h.logMu.Unlock()
	fmt.Fprintf(p.h.cfg.PeerLog, "%s %s: %s\n", p.id.Short(), p.b.Manifest.Name, line)
}

// output is a module's stdout/stderr: the last few KiB are kept for the
// failure reason (host-side only), and lines go to the peer log under `log`.
type output struct {
	mu    stdsync.Mutex
	p     *peer
	head  []byte // the first bytes (a Go runtime's fatal error line)
	tail  []byte
	line  []byte
	total int
}

const (
	headSize = 1 << 10
	tailSize = 4 << 10
)

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n := headSize - len(o.head); n > 0 {
		o.head = append(o.head, b[:min(n, len(b))]...)
	}
	o.tail = append(o.tail, b...)
	if len(o.tail) > tailSize {
		o.tail = append(o.tail[:0], o.tail[len(o.tail)-tailSize:]...)
	}
	if !o.p.caps[bundle.CapLog] || o.total > maxLogCall*16 {
		return len(b), nil
	}
	o.total += len(b)
	o.line = append(o.line, b...)
	for {
		i := bytes.IndexByte(o.line, '\n')
		if i < 0 {
			if len(o.line) > maxLogLine {
				o.p.logLine(o.line[:maxLogLine])
				o.line = o.line[:0]
			}
			return len(b), nil
		}
		o.p.logLine(o.line[:i])
		o.line = o.line[i+1:]
	}
}

func (o *output) text() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.head) + "\n" + string(o.tail)
}

func (cryptoRand) Read(b []byte) (int, error) { return io.ReadFull(rand.Reader, b) }
