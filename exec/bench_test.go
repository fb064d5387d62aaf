package exec

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sublog/sublog/exec/bundle"
)

// rawRuntime is the raw limit: wazero with the same module, WASI and a
// minimal host ABI (req_read and resp_write copy bytes; nothing checked).
func rawRuntime(b *testing.B, cache wazero.CompilationCache) (wazero.Runtime, context.Context) {
	ctx := context.Background()
	cfg := wazero.NewRuntimeConfig()
	if cache != nil {
		cfg = cfg.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	i := api.ValueTypeI32
	hb := rt.NewHostModuleBuilder(abiModule)
	hb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) {
		req := ctx.Value(callKey{}).(*callState).req
		n := min(int(uint32(s[1])), len(req))
		m.Memory().Write(uint32(s[0]), req[:n])
		s[0] = uint64(n)
	}), []api.ValueType{i, i}, []api.ValueType{i}).Export("req_read")
	hb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) {
		b, _ := m.Memory().Read(uint32(s[0]), uint32(s[1]))
		ctx.Value(callKey{}).(*callState).resp = append([]byte(nil), b...)
		s[0] = 0
	}), []api.ValueType{i, i}, []api.ValueType{i}).Export("resp_write")
	stub := api.GoModuleFunc(func(ctx context.Context, m api.Module, s []uint64) { s[0] = 0 })
	hb.NewFunctionBuilder().WithGoModuleFunction(stub, []api.ValueType{i, i, i, i}, []api.ValueType{i}).Export("kv_get")
	hb.NewFunctionBuilder().WithGoModuleFunction(stub, []api.ValueType{i, i, i, i}, []api.ValueType{i}).Export("kv_set")
	hb.NewFunctionBuilder().WithGoModuleFunction(stub, []api.ValueType{i, i}, []api.ValueType{i}).Export("kv_del")
	hb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), []api.ValueType{i, i}, nil).Export("log")
	if _, err := hb.Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
	return rt, ctx
}

// rawStart is raw wazero compile + instantiate (with the reactor's
// _initialize) of the greeter's module.
func rawStart(b *testing.B, mod []byte, cache wazero.CompilationCache) time.Duration {
	t0 := time.Now()
	rt, ctx := rawRuntime(b, cache)
	cm, err := rt.CompileModule(ctx, mod)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize")); err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	rt.Close(ctx)
	return d
}

// benchStart measures starting a deployed greeter on a freshly opened host
// (what `sublog call` does: read the bundle from disk, verify its hash,
// build the runtime, compile or load compiled code, instantiate, serve the
// first request), against raw compile + instantiate.
func benchStart(b *testing.B, warm bool) {
	raw := example(b, "greeter")
	bd, _ := bundle.Decode(raw)
	reps := 5
	if !warm {
		reps = 1
	}
	// The machines are shared and the noise comes in bursts, so besides
	// the means the benchmark reports the ratio of the best (least
	// disturbed) runs of each side.
	var ours, base time.Duration
	bestOurs, bestBase := time.Duration(1<<62), time.Duration(1<<62)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		cdir := b.TempDir()
		e := newEnv(b, "bench-host", nil, nil)
		e.host.Close()
		e.grantPeer(raw, reqLog, bundle.Limits{Instances: 2})
		// Deploying once puts the peer on disk (and fills the disk cache).
		h, err := Open(Config{Dir: e.dir, Key: e.key, Log: e.log, CacheDir: cdir})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Deploy(context.Background(), raw, bundle.Hash{}); err != nil {
			b.Fatal(err)
		}
		h.Close()
		for r := 0; r < reps; r++ {
			if !warm {
				os.RemoveAll(cdir)
				os.MkdirAll(cdir, 0o700)
			}
			h, err := Open(Config{Dir: e.dir, Key: e.key, Log: e.log, CacheDir: cdir})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			t0 := time.Now()
			if _, err := h.Call(context.Background(), bd.Peer(), []byte("x")); err != nil {
				b.Fatal(err)
			}
			d := time.Since(t0)
			ours += d
			bestOurs = min(bestOurs, d)
			b.StopTimer()
			h.Close()

			// Raw: the same module's compile + instantiate, from a disk
			// cache that already holds it when warm, an empty one when cold.
			rawDir := filepath.Join(b.TempDir(), "raw")
			if warm {
				c, _ := wazero.NewCompilationCacheWithDir(rawDir)
				rawStart(b, bd.Module, c)
				c.Close(context.Background())
			}
			cache, _ := wazero.NewCompilationCacheWithDir(rawDir)
			d = rawStart(b, bd.Module, cache)
			base += d
			bestBase = min(bestBase, d)
			cache.Close(context.Background())
		}
	}
	n := float64(b.N * reps)
	b.ReportMetric(float64(ours.Microseconds())/n/1000, "ms/start")
	b.ReportMetric(float64(base.Microseconds())/n/1000, "ms/raw-start")
	b.ReportMetric(float64(ours)/float64(base), "x-raw-start")
	b.ReportMetric(float64(bestOurs)/float64(bestBase), "x-raw-start-best")
}

func BenchmarkColdStart(b *testing.B) { benchStart(b, false) }
func BenchmarkWarmStart(b *testing.B) { benchStart(b, true) }

// BenchmarkRequest: one request of 64 bytes to the greeter through the
// executor (grant check, instance pool, per-request deadline, host ABI)
// against a raw call of the same exported function with the same copies.
func BenchmarkRequest(b *testing.B) {
	raw := example(b, "greeter")
	bd, _ := bundle.Decode(raw)
	e := newEnv(b, "bench-host", nil, nil)
	e.grantPeer(raw, reqLog, bundle.Limits{Instances: 2})
	p := e.deploy(raw)
	req := make([]byte, 64)

	rt, ctx := rawRuntime(b, nil)
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, bd.Module)
	if err != nil {
		b.Fatal(err)
	}
	m, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
	if err != nil {
		b.Fatal(err)
	}
	handle := m.ExportedFunction(exportEntry)
	const inner = 2000
	var ours, base time.Duration
	bestOurs, bestBase := time.Duration(1<<62), time.Duration(1<<62)
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		for j := 0; j < inner; j++ {
			cctx := context.WithValue(ctx, callKey{}, &callState{req: req})
			if _, err := handle.Call(cctx, uint64(len(req))); err != nil {
				b.Fatal(err)
			}
		}
		base += time.Since(t0)
		bestBase = min(bestBase, time.Since(t0))
		t0 = time.Now()
		for j := 0; j < inner; j++ {
			if _, err := e.host.Call(ctx, p, req); err != nil {
				b.Fatal(err)
			}
		}
		ours += time.Since(t0)
		bestOurs = min(bestOurs, time.Since(t0))
	}
	n := float64(b.N * inner)
	b.ReportMetric(float64(ours.Nanoseconds())/n, "ns/request")
	b.ReportMetric(float64(base.Nanoseconds())/n, "ns/raw-call")
	b.ReportMetric(float64(ours)/float64(base), "x-raw-call")
	b.ReportMetric(float64(bestOurs)/float64(bestBase), "x-raw-call-best")
}
