package exec

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sublog/sublog/exec/bundle"
)

func TestDbgReq(t *testing.T) {
	raw := example(t, "greeter")
	bd, _ := bundle.Decode(raw)
	inst, _ := instrument(bd.Module)
	for _, v := range []struct {
		name    string
		close   bool
		mod     []byte
		timeout bool
	}{
		{"raw", false, bd.Module, false},
		{"close", true, bd.Module, false},
		{"close+timeout", true, bd.Module, true},
		{"close+instr", true, inst, false},
		{"close+instr+timeout", true, inst, true},
	} {
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(v.close))
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
		hb.Instantiate(ctx)
		cm, err := rt.CompileModule(ctx, v.mod)
		if err != nil {
			t.Fatal(err)
		}
		m, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
		if err != nil {
			t.Fatal(err)
		}
		h := m.ExportedFunction("handle")
		req := make([]byte, 64)
		t0 := time.Now()
		for j := 0; j < 3000; j++ {
			c := ctx
			var cancel func()
			if v.timeout {
				c, cancel = context.WithTimeout(ctx, time.Second)
			}
			c = context.WithValue(c, callKey{}, &callState{req: req})
			if _, err := h.Call(c, 64); err != nil {
				t.Fatal(err)
			}
			if cancel != nil {
				cancel()
			}
		}
		t.Logf("%-22s %v/call", v.name, time.Since(t0)/3000)
		rt.Close(ctx)
	}
}
