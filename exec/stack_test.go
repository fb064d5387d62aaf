package exec

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/sublog/sublog/exec/bundle"
)

// recursive is hand-assembled: handle(n) = rec(n) - n, where rec(n) = 0
// when n is 0 (through a return instruction) and rec(n-1) + 1 otherwise, a
// plain (non-tail) recursion n calls deep whose frames carry eight i64
// locals. Unbounded, wazero grows its stack towards its 400 MB ceiling,
// outside the memory cap.
var recursive = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f, // type 0: (i32) -> i32
	0x03, 0x03, 0x02, 0x00, 0x00, // funcs 0 (handle) and 1 (rec): type 0
	0x07, 0x0a, 0x01, // one export
	0x06, 'h', 'a', 'n', 'd', 'l', 'e', 0x00, 0x00,
	0x0a, 0x23, 0x02, // code: two bodies
	0x09, 0x00, 0x20, 0x00, 0x10, 0x01, 0x20, 0x00, 0x6b, 0x0b, // handle: rec(n) - n
	0x17, 0x01, 0x08, 0x7e, // rec: 23 bytes, 8 i64 locals
	0x20, 0x00, 0x45, 0x04, 0x40, 0x41, 0x00, 0x0f, 0x0b, // if n == 0 { return 0 }
	0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x01, 0x41, 0x01, 0x6a, 0x0b, // rec(n-1) + 1
}

// A recursing peer is stopped at its call-stack budget with a clear reason,
// and the host's memory stays bounded (the issue: ~160 MB under a 32 MiB
// cap); shallow recursion still works, and the next request gets a fresh
// instance with the whole budget.
func TestDeepRecursionStoppedAtStackBudget(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	peer := secret(t, "recurse").ID()
	raw, err := bundle.Build(bundle.Manifest{Name: "recurse", Version: "1", Peer: peer.Bytes(),
		Limits: bundle.Limits{Memory: 32 << 20, CPUReqMS: 1000}}, recursive)
	if err != nil {
		t.Fatal(err)
	}
	e.prove(raw)
	e.grant(GrantBody{Peer: peer.Bytes()})
	e.deploy(raw)
	depth := func(n int) []byte { return make([]byte, n) } // the request's length is n
	if _, err := e.host.Call(context.Background(), peer, depth(1000)); err != nil {
		t.Fatalf("1,000 calls deep: %v", err)
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err = e.host.Call(context.Background(), peer, depth(1<<20))
	runtime.ReadMemStats(&m1)
	if !errors.Is(err, ErrStackCap) || !strings.Contains(err.Error(), "call-stack budget of 4194304 bytes") {
		t.Fatalf("a million calls deep: %v, want ErrStackCap", err)
	}
	grew := int64(m1.Sys) - int64(m0.Sys)
	t.Logf("stopped: %v; host memory grew by %d KB", err, grew>>10)
	if grew > 48<<20 {
		t.Fatalf("host memory grew by %d MB under a 32 MiB cap", grew>>20)
	}
	if _, err := e.host.Call(context.Background(), peer, depth(1000)); err != nil {
		t.Fatalf("after the overflow, 1,000 calls deep: %v", err)
	}
}

// A multi-value function with a return instruction: its wrapping block
// needs a [] -> (i32, i32) type, appended to the type section; the return
// becomes a branch to the block, and the budget is refunded in full.
func TestStackChargeMultiValueReturn(t *testing.T) {
	mod := []byte{
		0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
		0x01, 0x07, 0x01, 0x60, 0x01, 0x7f, 0x02, 0x7f, 0x7f, // type 0: (i32) -> (i32, i32)
		0x03, 0x02, 0x01, 0x00,
		0x07, 0x08, 0x01, 0x04, 'p', 'a', 'i', 'r', 0x00, 0x00,
		0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x41, 0x02, 0x0f, 0x0b, // pair(x) = (x, 2) through return
	}
	out, err := instrument(mod)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	m, err := rt.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	stack := m.ExportedGlobal(stackGlobal).(api.MutableGlobal)
	stack.Set(1000)
	res, err := m.ExportedFunction("pair").Call(ctx, 7)
	if err != nil || len(res) != 2 || res[0] != 7 || res[1] != 2 {
		t.Fatalf("pair(7) = %v, %v", res, err)
	}
	if got := stack.Get(); got != 1000 {
		t.Fatalf("budget after the call is %d, want it all refunded (1000)", got)
	}
	stack.Set(100) // less than one frame (128 + 16)
	if _, err := m.ExportedFunction("pair").Call(ctx, 7); err == nil || int32(stack.Get()) >= 0 {
		t.Fatalf("a call over the budget ran: %v, budget %d", err, int32(stack.Get()))
	}
}
