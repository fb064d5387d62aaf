package exec

import (
	"context"
	"errors"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/sublog/sublog/exec/bundle"
)

// loopFree is a hand-assembled module with no loop at all:
//
//	(func $f (export "handle") (export "f") (param i32) (result i32)
//	  (if (result i32) (i32.eqz (local.get 0))
//	    (then (i32.const 1))
//	    (else (i32.add (call $f (i32.sub (local.get 0) (i32.const 1)))
//	                   (call $f (i32.sub (local.get 0) (i32.const 1)))))))
//
// handle(n) makes 2^n calls: an exponential call tree that never passes a
// loop header, so wazero's context checks never run in it.
var loopFree = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f, // type: (i32) -> i32
	0x03, 0x02, 0x01, 0x00, // func 0: type 0
	0x07, 0x0e, 0x02, // exports
	0x06, 'h', 'a', 'n', 'd', 'l', 'e', 0x00, 0x00,
	0x01, 'f', 0x00, 0x00,
	0x0a, 0x1c, 0x01, 0x1a, 0x00, // code: one body of 26 bytes, no locals
	0x20, 0x00, 0x45, 0x04, 0x7f, // local.get 0; i32.eqz; if (result i32)
	0x41, 0x01, // i32.const 1
	0x05,                                     // else
	0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x00, // f(n-1)
	0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x00, // f(n-1)
	0x6a, 0x0b, 0x0b, // i32.add; end; end
}

// TestRawWazeroOverrunsLoopFree measures the hole: raw wazero with
// WithCloseOnContextDone does not stop the loop-free call tree at its
// deadline; it runs to the end.
func TestRawWazeroOverrunsLoopFree(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	defer rt.Close(ctx)
	m, err := rt.Instantiate(ctx, loopFree)
	if err != nil {
		t.Fatal(err)
	}
	const deadline = 20 * time.Millisecond
	// Find a depth that takes well over 2x the deadline.
	var n uint64
	var took time.Duration
	for n = 20; n < 34; n++ {
		t0 := time.Now()
		if _, err := m.ExportedFunction("f").Call(ctx, n); err != nil {
			t.Fatal(err)
		}
		if took = time.Since(t0); took > 6*deadline {
			break
		}
	}
	n += 2 // four times the work, so a burst of noise in calibration does not matter
	cctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	t0 := time.Now()
	_, err = m.ExportedFunction("f").Call(cctx, n)
	over := time.Since(t0)
	// wazero closes the module when the deadline passes, but the code only
	// notices at a loop header, so the tree runs to its end and the call
	// reports the deadline afterwards.
	if over < 2*deadline {
		t.Fatalf("raw wazero stopped the loop-free tree after %v (%v): the hole is closed upstream, revisit instrument", over, err)
	}
	t.Logf("raw wazero: deadline %v, loop-free call tree of depth %d ran %v to completion (%.1fx)", deadline, n, over, float64(over)/float64(deadline))
}

func TestInstrumentedLoopFreeStops(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	peer := secret(t, "loopfree").ID()
	raw, err := bundle.Build(bundle.Manifest{Name: "loopfree", Version: "1", Peer: peer.Bytes(),
		Limits: bundle.Limits{CPUReqMS: 100}}, loopFree)
	if err != nil {
		t.Fatal(err)
	}
	e.grant(GrantBody{Peer: peer.Bytes()})
	e.deploy(raw)
	// Small trees run normally.
	if _, err := e.host.Call(context.Background(), peer, make([]byte, 10)); !errors.Is(err, ErrAppStatus) || !strings.Contains(err.Error(), "status 1024") {
		t.Fatalf("f(10): %v, want status 1024", err)
	}
	t0 := time.Now()
	_, err = e.host.Call(context.Background(), peer, make([]byte, 60))
	took := time.Since(t0)
	if !errors.Is(err, ErrCPUCap) {
		t.Fatalf("2^60 calls: %v", err)
	}
	if took > 200*time.Millisecond {
		t.Fatalf("stopped after %v, cap 100ms", took)
	}
	t.Logf("instrumented: cap 100ms, stopped after %v", took)
}

func TestInstrumentRejectsGarbage(t *testing.T) {
	for _, m := range [][]byte{
		nil,
		loopFree[:8],
		append(append([]byte{}, loopFree[:8]...), 0x0a, 0x7f),             // section overruns
		append(append([]byte{}, loopFree[:8]...), 0x0a, 0x02, 0x01, 0x09), // body overruns
	} {
		out, err := instrument(m)
		if len(m) == 8 {
			if err != nil || len(out) != 8 {
				t.Fatalf("empty module: %v", err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("instrument(%x) accepted", m)
		}
	}
	// A body that starts with a loop is left alone.
	out, err := instrument(loopFree)
	if err != nil || len(out) != len(loopFree)+3 {
		t.Fatalf("instrument: %d bytes, %v", len(out), err)
	}
	again, err := instrument(out)
	if err != nil || len(again) != len(out) {
		t.Fatalf("re-instrumenting an entry-checked body changed it: %d -> %d, %v", len(out), len(again), err)
	}
}

// TestMisbehave: each misbehaviour fails cleanly, is recorded, and does not
// disturb another running peer or the host.
func TestMisbehave(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	bad := example(t, "misbehave")
	good := example(t, "greeter")
	e.grantPeer(bad, reqLog, bundle.Limits{Memory: 32 << 20, CPUReqMS: 200})
	e.grantPeer(good, reqLog, bundle.Limits{Instances: 2})
	mb := e.deploy(bad)
	gr := e.deploy(good)

	// The greeter serves requests all along.
	stop := make(chan struct{})
	var wg stdsync.WaitGroup
	var served int
	var greetErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := e.call(gr, "ann")
			if err != nil || out != "hello, ann" {
				greetErr = errors.Join(greetErr, err)
				return
			}
			served++
			time.Sleep(5 * time.Millisecond)
		}
	}()

	capMS := 200 * time.Millisecond
	cases := []struct {
		req  string
		want error
		max  time.Duration
		why  string
	}{
		{"alloc", ErrMemoryCap, 0, "memory"},
		{"loop", ErrCPUCap, 2 * capMS, "took over 200ms"},
		{"fib 60", ErrCPUCap, 2 * capMS, "took over 200ms"},
		{"kv", ErrNotGranted, 0, "kv_get"},
		{"recurse", nil, 0, ""},
	}
	for _, c := range cases {
		t0 := time.Now()
		_, err := e.call(mb, c.req)
		took := time.Since(t0)
		if err == nil {
			t.Fatalf("%s: no error", c.req)
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Fatalf("%s: %v, want %v", c.req, err, c.want)
		}
		if c.req == "recurse" && !errors.Is(err, ErrMemoryCap) && !errors.Is(err, ErrTrap) && !errors.Is(err, ErrCPUCap) {
			t.Fatalf("recurse: %v", err)
		}
		if c.max != 0 && took > c.max {
			t.Fatalf("%s: stopped after %v, want under %v", c.req, took, c.max)
		}
		obs := e.observed()
		last := obs[len(obs)-1]
		if last.State != StateFailed || !strings.Contains(last.Reason, c.why) {
			t.Fatalf("%s: recorded %+v", c.req, last)
		}
		t.Logf("%-8s -> %v (after %v)", c.req, err, took.Round(time.Millisecond))
		// The peer itself recovers: the next request gets a fresh instance.
		if got := e.mustCall(mb, "ok"); got != "ok" {
			t.Fatalf("after %s: %q", c.req, got)
		}
	}
	close(stop)
	wg.Wait()
	if greetErr != nil || served == 0 {
		t.Fatalf("greeter disturbed: served %d, %v", served, greetErr)
	}
	// No ambient file system or clock.
	if got := e.mustCall(mb, "fs"); !strings.HasPrefix(got, "no file system") {
		t.Fatalf("fs: %q", got)
	}
	if got := e.mustCall(mb, "clock"); got == "2026" {
		t.Fatalf("the peer saw the real clock without the clock grant")
	}
}
