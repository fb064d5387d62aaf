package exec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/sublog/sublog/log/kinds"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	stdsync "sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/key"
)

// peer is one peer on this host. life serializes lifecycle steps (start,
// halt, suspend, resume, stop, move, remove); mu guards the fields below it.
type peer struct {
	h  *Host
	b  *bundle.Bundle
	id key.ID

	life stdsync.Mutex

	mu       stdsync.Mutex
	state    string
	reason   string
	grant    *grant
	as       As // the service it runs as (not kept across restarts: the stored grant ID is)
	limits   bundle.Limits
	caps     map[string]bool
	cpuMS    uint64
	cpuNS    int64
	failures int
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	ctx      context.Context // cancelled when the peer halts
	cancel   context.CancelFunc
	slots    chan struct{}
	idle     []*instance
	live     map[*instance]struct{} // every instance of the current run, idle or busy
	calls    stdsync.WaitGroup

	kvmu stdsync.RWMutex
	kv   map[string][]byte
}

type instance struct {
	mod    api.Module
	handle api.Function
	out    *output
	stop   api.MutableGlobal // the flags instrument adds
	fuel   api.MutableGlobal
	stack  api.MutableGlobal // call-stack budget left, in bytes
}

func newPeer(h *Host, b *bundle.Bundle, kv map[string][]byte) *peer {
	return &peer{h: h, b: b, id: b.Peer(), kv: kv}
}

func (p *peer) currentGrant() *grant {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != kinds.StateRunning {
		return nil
	}
	return p.grant
}

func (p *peer) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{Peer: p.id, Name: p.b.Manifest.Name, Bundle: p.b.Hash(), State: p.state, Reason: p.reason,
		Limits: p.limits, CPUMS: p.cpuMS + uint64(p.cpuNS/1e6)}
	if p.grant != nil {
		s.Grant = p.grant.id
	}
	for c := range p.caps {
		s.Caps = append(s.Caps, c)
	}
	slices.Sort(s.Caps)
	return s
}

func (p *peer) kvGet(k string) ([]byte, bool) {
	p.kvmu.RLock()
	defer p.kvmu.RUnlock()
	v, ok := p.kv[k]
	return v, ok
}

func (p *peer) kvSizeWith(w map[string][]byte) uint64 {
	p.kvmu.RLock()
	defer p.kvmu.RUnlock()
	n := kvSize(p.kv)
	for k, v := range w {
		if old, ok := p.kv[k]; ok {
			n -= uint64(len(k) + len(old))
		}
		if v != nil {
			n += uint64(len(k) + len(v))
		}
	}
	return n
}

// adopt sets the grant the peer runs under; caller holds p.mu.
func (p *peer) adopt(g *grant) {
	p.grant = g
	p.limits = effective(g, &p.b.Manifest)
	p.caps = map[string]bool{}
	for _, c := range p.b.Manifest.Caps {
		p.caps[c] = true // manifest caps are a subset of the grant's (allows)
	}
}

// moduleBytes instruments the bundle's module once per host, and keeps the
// result on disk next to the compilation cache (checked by its SHA-256 when
// read back), so a new process does not decode every instruction again.
func (h *Host) moduleBytes(b *bundle.Bundle) ([]byte, error) {
	h.mu.Lock()
	m, ok := h.modules[b.Hash()]
	h.mu.Unlock()
	if ok {
		return m, nil
	}
	path := filepath.Join(h.cfg.CacheDir, "instrumented", fmt.Sprintf("v%d-%x", instrumentVersion, b.Hash()))
	if f, err := os.ReadFile(path); err == nil && len(f) > sha256.Size {
		if sum := sha256.Sum256(f[sha256.Size:]); bytes.Equal(sum[:], f[:sha256.Size]) {
			m = f[sha256.Size:]
		}
	}
	if m == nil {
		var err error
		if m, err = instrument(b.Module); err != nil {
			return nil, fmt.Errorf("%w: %w", bundle.ErrModule, err)
		}
		sum := sha256.Sum256(m)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			if f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*"); err == nil {
				_, werr := f.Write(append(sum[:], m...))
				if cerr := f.Close(); werr == nil && cerr == nil {
					os.Rename(f.Name(), path)
				}
				os.Remove(f.Name())
			}
		}
	}
	h.mu.Lock()
	h.modules[b.Hash()] = m
	h.mu.Unlock()
	return m, nil
}

// start builds the runtime (memory cap, termination checks, the disk cache),
// links WASI and the host ABI, compiles (a cache hit when warm) and makes
// one instance. Caller holds p.life and p.mu.
func (p *peer) start(ctx context.Context) error {
	if p.rt != nil {
		return nil
	}
	mod, err := p.h.moduleBytes(p.b)
	if err != nil {
		return err
	}
	pages := uint32((p.limits.Memory + bundle.PageSize - 1) / bundle.PageSize)
	cfg := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(pages).
		WithMemoryCapacityFromMax(true).
		WithCompilationCache(p.h.cache)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	fail := func(err error) error {
		rt.Close(context.Background())
		return err
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(fmt.Errorf("exec: linking WASI: %w", err))
	}
	if err := p.hostModule(ctx, rt); err != nil {
		return fail(fmt.Errorf("exec: linking the host ABI: %w", err))
	}
	cm, err := rt.CompileModule(ctx, mod)
	if err != nil && strings.Contains(err.Error(), "section memory") && strings.Contains(err.Error(), "over limit") {
		return fail(fmt.Errorf("%w: %s needs more memory to start than the cap of %d bytes (%v)", ErrMemoryCap, p.b.Manifest.Name, p.limits.Memory, err))
	}
	if err != nil {
		return fail(fmt.Errorf("%w: %s: compiling: %v", bundle.ErrModule, p.b.Manifest.Name, err))
	}
	for _, im := range cm.ImportedMemories() {
		_ = im
		return fail(fmt.Errorf("%w: %s imports a memory; a peer must define its own", bundle.ErrModule, p.b.Manifest.Name))
	}
	for _, m := range cm.ExportedMemories() {
		if min := m.Min(); uint64(min)*bundle.PageSize > p.limits.Memory {
			return fail(fmt.Errorf("%w: %s needs %d bytes of memory to start, the cap is %d", ErrMemoryCap, p.b.Manifest.Name, uint64(min)*bundle.PageSize, p.limits.Memory))
		}
	}
	f, ok := cm.ExportedFunctions()[exportEntry]
	if !ok || !slices.Equal(f.ParamTypes(), []api.ValueType{api.ValueTypeI32}) || !slices.Equal(f.ResultTypes(), []api.ValueType{api.ValueTypeI32}) {
		return fail(fmt.Errorf("%w: %s does not export %s(i32) -> i32", bundle.ErrModule, p.b.Manifest.Name, exportEntry))
	}
	p.rt, p.compiled = rt, cm
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.slots = make(chan struct{}, p.limits.Instances)
	p.idle = nil
	p.live = map[*instance]struct{}{}
	return nil
}

// stackBudget is an instance's call-stack budget: an eighth of its memory
// cap, between 256 KiB and 8 MiB. The frames it pays for are estimates
// (instrument.go), so the host memory an instance can take is its memory
// cap plus a small multiple of this budget, never wazero's 400 MB ceiling.
func stackBudget(memory uint64) int32 {
	return int32(min(max(memory/8, 256<<10), 8<<20))
}

// minStartCap is the least time an instance gets to start: a Go reactor's
// runtime initialisation takes a few milliseconds, more on a loaded host.
const minStartCap = 2 * time.Second

// startCap bounds an instance's start function: the per-request cap, but not
// under minStartCap. Start time counts toward the CPU total.
func (p *peer) startCap() time.Duration {
	return max(time.Duration(p.limits.CPUReqMS)*time.Millisecond, minStartCap)
}

// instantiate makes a new instance; its start function (_initialize, for a
// Go or C reactor) runs under startCap.
func (p *peer) instantiate(rt wazero.Runtime, cm wazero.CompiledModule, runCtx context.Context) (*instance, error) {
	out := &output{p: p}
	// No guest code runs inside InstantiateModule (instrument refuses start
	// sections): _initialize is called below, under the watchdog.
	mc := wazero.NewModuleConfig().WithName("").WithStdout(out).WithStderr(out).WithStartFunctions()
	if p.caps[bundle.CapClock] {
		mc = mc.WithSysWalltime().WithSysNanotime()
	}
	if p.caps[bundle.CapRandom] {
		mc = mc.WithRandSource(p.h.cfg.Rand)
	}
	if runCtx.Err() != nil {
		return nil, fmt.Errorf("%w: %s", ErrStopped, p.b.Manifest.Name)
	}
	m, err := rt.InstantiateModule(context.Background(), cm, mc)
	if err != nil {
		return nil, p.classify(&callState{}, out, nil, err, "starting")
	}
	stop, ok1 := m.ExportedGlobal(stopGlobal).(api.MutableGlobal)
	fuel, ok2 := m.ExportedGlobal(fuelGlobal).(api.MutableGlobal)
	stack, ok3 := m.ExportedGlobal(stackGlobal).(api.MutableGlobal)
	if !ok1 || !ok2 || !ok3 {
		m.Close(context.Background())
		return nil, fmt.Errorf("%w: %s: the stop flag is missing", ErrTrap, p.b.Manifest.Name)
	}
	inst := &instance{mod: m, handle: m.ExportedFunction(exportEntry), out: out, stop: stop, fuel: fuel, stack: stack}
	p.mu.Lock()
	if p.ctx != runCtx || runCtx.Err() != nil {
		p.mu.Unlock()
		m.Close(context.Background())
		return nil, fmt.Errorf("%w: %s", ErrStopped, p.b.Manifest.Name)
	}
	p.live[inst] = struct{}{}
	p.mu.Unlock()
	if init := m.ExportedFunction("_initialize"); init != nil {
		cs := &callState{}
		_, _, err := p.guarded(context.Background(), inst, init, p.startCap(), cs)
		if err != nil {
			p.discard(inst)
			if runCtx.Err() != nil {
				return nil, fmt.Errorf("%w: %s", ErrStopped, p.b.Manifest.Name)
			}
			return nil, p.classify(cs, out, m, err, "starting")
		}
	}
	return inst, nil
}

// halt raises an instance's stop flag: it traps at its next check.
func (inst *instance) halt() {
	inst.stop.Set(1)
	inst.fuel.Set(1)
}

// guarded calls fn on inst under the watchdog: when the call has used
// limit of CPU time, or when ctx is done, it raises the instance's stop flag
// and the module traps at its next check. The CPU time spent counts toward
// the peer's CPU total.
func (p *peer) guarded(ctx context.Context, inst *instance, fn api.Function, limit time.Duration, cs *callState, params ...uint64) ([]uint64, time.Duration, error) {
	w := startWatch(limit, func() {
		cs.timedOut.Store(true)
		inst.halt()
	})
	defer runtime.UnlockOSThread()
	stopWatch := func() bool { return true }
	if ctx.Done() != nil {
		stopWatch = context.AfterFunc(ctx, func() {
			cs.gaveUp.Store(true)
			inst.halt()
		})
	}
	cctx := context.WithValue(context.WithoutCancel(ctx), callKey{}, cs)
	inst.stack.Set(uint64(stackBudget(p.limits.Memory))) // every call starts with the whole budget
	res, err := fn.Call(cctx, params...)
	spent := w.end()
	stopWatch()
	p.mu.Lock()
	p.cpuNS += int64(spent)
	p.mu.Unlock()
	return res, spent, err
}

// backstopFactor: a call whose thread the machine starves is stopped after
// this many times its CPU cap in wall time, however little CPU it got.
const backstopFactor = 10

// watchBaseline is when the watchdog first reads a call's CPU clock: a call
// that ends sooner (most requests) costs no clock reading, and its first
// watchBaseline of wall time counts as CPU time.
const watchBaseline = time.Millisecond

// watch is one call's watchdog. A guest runs on the calling goroutine's OS
// thread (pinned for the call), so the thread's CPU clock is the guest's
// CPU time, host functions included: on a loaded machine the wall clock
// runs while the guest waits for a core, and a cap counted in wall time
// would stop guests for the machine's load. Where the thread's clock cannot
// be read, the cap is wall time.
type watch struct {
	mu    stdsync.Mutex
	t     *time.Timer
	done  bool
	clk   threadClock
	cpu   bool          // the thread has a clock
	based bool          // cpu0 and wall0 are set
	cpu0  time.Duration // the thread's CPU clock at the first reading
	wall0 time.Duration // the wall time of the call before it (counted as CPU)
	start time.Time
	limit time.Duration
	stop  func()
}

// startWatch pins the goroutine to its thread (the caller unlocks it after
// end) and arms the watchdog.
func startWatch(limit time.Duration, stop func()) *watch {
	w := &watch{limit: limit, stop: stop}
	w.clk, w.cpu = lockThread()
	w.start = time.Now()
	first := limit
	if w.cpu {
		first = min(limit, watchBaseline)
	}
	w.mu.Lock()
	w.t = time.AfterFunc(first, w.fire)
	w.mu.Unlock()
	return w
}

// used is the call's CPU time so far: wall time before the first reading
// of the thread's clock, the clock's advance after it. Caller holds mu.
func (w *watch) used() time.Duration {
	wall := time.Since(w.start)
	if !w.cpu {
		return wall
	}
	now, ok := w.clk.now()
	if !ok {
		w.cpu = false
		return wall
	}
	if !w.based {
		w.based, w.cpu0, w.wall0 = true, now, wall
	}
	return w.wall0 + now - w.cpu0
}

// fire stops the call if it has used its cap of CPU time (or the wall-time
// backstop passed), and otherwise looks again when the rest of the cap
// could be used up.
func (w *watch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	used := w.used()
	if used >= w.limit || time.Since(w.start) >= backstopFactor*w.limit {
		w.stop()
		return
	}
	w.t.Reset(max(w.limit-used, time.Millisecond))
}

// end disarms the watchdog (no stop can come after it returns) and gives
// the call's CPU time.
func (w *watch) end() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.t.Stop()
	if !w.based {
		return time.Since(w.start)
	}
	return w.used()
}

// discard closes an instance that failed or outlived its runtime's run.
func (p *peer) discard(inst *instance) {
	p.mu.Lock()
	delete(p.live, inst)
	p.mu.Unlock()
	inst.mod.Close(context.Background())
}

// halt stops every instance and closes the runtime: in-flight requests end
// with ErrStopped at their next termination check. Caller holds p.life, not
// p.mu.
func (p *peer) halt() {
	p.mu.Lock()
	rt, cancel, live := p.rt, p.cancel, p.live
	p.rt, p.compiled, p.idle, p.cancel, p.live = nil, nil, nil, nil, map[*instance]struct{}{}
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for inst := range live {
		inst.halt() // a busy instance traps at its next check
	}
	p.calls.Wait()
	if rt != nil {
		rt.Close(context.Background())
	}
}

func (p *peer) saveMeta() error {
	p.mu.Lock()
	h := p.b.Hash()
	m := meta{State: p.state, Bundle: h[:], CPUMS: p.cpuMS + uint64(p.cpuNS/1e6), Reason: p.reason}
	if p.grant != nil {
		m.Grant = p.grant.id[:]
	}
	p.mu.Unlock()
	return p.h.writeMeta(p.id, m)
}

func (p *peer) usage() *Usage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &Usage{CPUMS: p.cpuMS + uint64(p.cpuNS/1e6)}
}

// stopFor stops a running peer for a reason (revoked or expired grant, CPU
// total used up, crash loop) and records it. A stopped peer resumes only
// under a live grant.
func (p *peer) stopFor(reason string) {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.state != kinds.StateRunning {
		p.mu.Unlock()
		return
	}
	p.state, p.reason = kinds.StateStopped, reason
	g := p.grant
	p.mu.Unlock()
	// The decision, logged once where it is made, naming the card behind
	// it (the reason names the revoke, crl or expired grant).
	attrs := []any{"peer", p.id.String(), "name", p.b.Manifest.Name, "reason", reason}
	if g != nil {
		attrs = append(attrs, "grant", g.id.String())
	}
	p.h.cfg.Logger.Info("peer stopped", attrs...)
	if err := p.h.record(p.b, g, kinds.StateStopped, reason, nil, p.usage()); err != nil {
		p.h.cfg.Logger.Error("exec: recording", "err", err)
	}
	p.halt()
	if err := p.saveMeta(); err != nil {
		p.h.cfg.Logger.Error("exec: saving peer state", "peer", p.id, "err", err)
	}
}

// shutdown halts the peer for a host close, keeping its recorded state.
func (p *peer) shutdown(save bool) error {
	p.life.Lock()
	defer p.life.Unlock()
	p.halt()
	if save {
		if _, err := os.Stat(p.h.peerDir(p.id)); err == nil {
			return p.saveMeta()
		}
	}
	return nil
}

// call serves one request.
func (p *peer) call(ctx context.Context, req []byte) ([]byte, error) {
	p.mu.Lock()
	if p.state != kinds.StateRunning {
		st, why := p.state, p.reason
		p.mu.Unlock()
		if st == kinds.StateStopped {
			return nil, fmt.Errorf("%w: %s: %s", ErrStopped, p.b.Manifest.Name, why)
		}
		return nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, p.b.Manifest.Name, st)
	}
	g := p.grant
	p.mu.Unlock()
	p.h.mu.Lock()
	why := p.h.idx.dead(g, p.h.cfg.Now())
	p.h.mu.Unlock()
	if why != "" {
		p.stopFor(why)
		return nil, fmt.Errorf("%w: %s: %s", ErrStopped, p.b.Manifest.Name, why)
	}
	p.mu.Lock()
	if p.rt == nil {
		// Started lazily (after a host restart or a resume).
		p.mu.Unlock()
		p.life.Lock()
		p.mu.Lock()
		var err error
		if p.state == kinds.StateRunning {
			err = p.start(ctx)
		}
		p.life.Unlock()
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		if p.rt == nil {
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, p.b.Manifest.Name, p.state)
		}
	}
	rt, cm, runCtx, slots, lim := p.rt, p.compiled, p.ctx, p.slots, p.limits
	p.calls.Add(1)
	p.mu.Unlock()
	defer p.calls.Done()

	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-runCtx.Done():
		return nil, fmt.Errorf("%w: %s", ErrStopped, p.b.Manifest.Name)
	}
	defer func() { <-slots }()

	p.mu.Lock()
	var inst *instance
	if n := len(p.idle); n > 0 && p.ctx == runCtx {
		inst, p.idle = p.idle[n-1], p.idle[:n-1]
	}
	p.mu.Unlock()
	if inst == nil {
		var err error
		if inst, err = p.instantiate(rt, cm, runCtx); err != nil {
			if errors.Is(err, ErrStopped) {
				return nil, err
			}
			return nil, p.failed(err)
		}
	}

	cs := &callState{req: req}
	res, _, err := p.guarded(ctx, inst, inst.handle, time.Duration(lim.CPUReqMS)*time.Millisecond, cs, uint64(len(req)))
	p.mu.Lock()
	overTotal := lim.CPUTotalMS != 0 && uint64(p.cpuNS/1e6)+p.cpuMS > lim.CPUTotalMS
	p.mu.Unlock()

	if err != nil {
		p.discard(inst)
		if runCtx.Err() != nil {
			return nil, fmt.Errorf("%w: %s", ErrStopped, p.b.Manifest.Name)
		}
		if cs.gaveUp.Load() && !cs.timedOut.Load() {
			return nil, ctx.Err() // the caller gave up: not the peer's failure
		}
		err = p.classify(cs, inst.out, inst.mod, err, "serving")
		err = p.failed(err)
		if overTotal {
			go p.stopFor(fmt.Sprintf("CPU total cap of %d ms used up", lim.CPUTotalMS))
		}
		return nil, err
	}
	if cs.writes != nil {
		if err := p.commit(cs.writes); err != nil {
			p.discard(inst)
			return nil, err
		}
	}
	p.mu.Lock()
	p.failures = 0
	if p.ctx == runCtx && !cs.timedOut.Load() && !cs.gaveUp.Load() {
		// (An instance the watchdog closed just as the call returned is
		// not reused.)
		p.idle = append(p.idle, inst)
	} else {
		defer p.discard(inst)
	}
	p.mu.Unlock()
	if overTotal {
		go p.stopFor(fmt.Sprintf("CPU total cap of %d ms used up", lim.CPUTotalMS))
	}
	if status := uint32(res[0]); status != 0 {
		return cs.resp, fmt.Errorf("%w %d: %s", ErrAppStatus, status, truncate(cs.resp, 200))
	}
	return cs.resp, nil
}

// commit applies a request's key-value writes and makes them durable.
func (p *peer) commit(w map[string][]byte) error {
	p.kvmu.Lock()
	defer p.kvmu.Unlock()
	next := make(map[string][]byte, len(p.kv)+len(w))
	for k, v := range p.kv {
		next[k] = v
	}
	for k, v := range w {
		if v == nil {
			delete(next, k)
		} else {
			next[k] = v
		}
	}
	if err := p.h.writeKV(p.id, next); err != nil {
		return fmt.Errorf("exec: saving %s state: %w", p.b.Manifest.Name, err)
	}
	p.kv = next
	return nil
}

// failed records a failed request and stops a crash-looping peer.
func (p *peer) failed(err error) error {
	p.mu.Lock()
	p.failures++
	n, g := p.failures, p.grant
	p.mu.Unlock()
	reason := err.Error()
	if rerr := p.h.record(p.b, g, kinds.StateFailed, truncate([]byte(reason), 512), nil, p.usage()); rerr != nil {
		p.h.cfg.Logger.Error("exec: recording", "err", rerr)
	}
	if n >= p.h.cfg.MaxFailures {
		go p.stopFor(fmt.Sprintf("%d requests failed in a row; last: %s", n, truncate([]byte(reason), 200)))
	}
	return err
}

// classify turns a trap into one of the package's errors with a clear reason.
func (p *peer) classify(cs *callState, out *output, m api.Module, err error, doing string) error {
	name := p.b.Manifest.Name
	var exit *sys.ExitError
	tail := out.text()
	switch {
	case cs.fault != nil:
		return fmt.Errorf("%s: %w", name, cs.fault)
	case m != nil && m.ExportedGlobal(stackGlobal) != nil && int32(m.ExportedGlobal(stackGlobal).Get()) < 0:
		return fmt.Errorf("%w: %s: %s recursed deeper than its call-stack budget of %d bytes (1/8 of its memory cap)", ErrStackCap, name, doing, stackBudget(p.limits.Memory))
	case cs.timedOut.Load():
		limit := time.Duration(p.limits.CPUReqMS) * time.Millisecond
		if doing == "starting" {
			limit = p.startCap()
		}
		return fmt.Errorf("%w: %s: %s took over %v and was stopped", ErrCPUCap, name, doing, limit)
	case strings.Contains(tail, "out of memory") || (m != nil && m.Memory() != nil &&
		uint64(m.Memory().Size())+max(p.limits.Memory/8, bundle.PageSize) > p.limits.Memory):
		return fmt.Errorf("%w: %s: %s needed more than %d bytes of memory", ErrMemoryCap, name, doing, p.limits.Memory)
	case errors.As(err, &exit):
		return fmt.Errorf("%w: %s: exited with code %d while %s%s", ErrTrap, name, exit.ExitCode(), doing, lastLine(tail))
	}
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("%w: %s: %s: %s", ErrTrap, name, doing, msg)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "fatal error") || strings.HasPrefix(l, "panic") {
			return " (" + strings.TrimSpace(l) + ")"
		}
	}
	return " (" + lines[len(lines)-1] + ")"
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Deploy verifies a bundle file (against want, unless want is zero), finds a
// live grant of this host that covers it and allows what it asks, starts it
// (so a module that cannot run is refused now) and records `deployed`.
func (h *Host) Deploy(ctx context.Context, raw []byte, want bundle.Hash) (Status, error) {
	b, err := decodeBundle(raw, want)
	if err != nil {
		return Status{}, err
	}
	return h.install(ctx, b, map[string][]byte{}, "", As{})
}

// DeployAs is Deploy of a replica of an owner's service, as a placement
// asks: grants naming that service admit it too (kinds.GrantBody.Admits).
// The caller has checked that the placement is the owner's (or a device
// it delegated for the service).
func (h *Host) DeployAs(ctx context.Context, raw []byte, want bundle.Hash, as As) (Status, error) {
	if as.Service == "" {
		return Status{}, fmt.Errorf("%w: DeployAs needs a service", ErrBadGrant)
	}
	b, err := decodeBundle(raw, want)
	if err != nil {
		return Status{}, err
	}
	return h.install(ctx, b, map[string][]byte{}, "", as)
}

func decodeBundle(raw []byte, want bundle.Hash) (*bundle.Bundle, error) {
	if want.IsZero() {
		return bundle.Decode(raw)
	}
	return bundle.Open(raw, want)
}

func (h *Host) install(ctx context.Context, b *bundle.Bundle, kv map[string][]byte, from string, as As) (Status, error) {
	if err := h.refresh(); err != nil {
		return Status{}, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return Status{}, ErrClosed
	}
	if _, ok := h.peers[b.Peer()]; ok {
		h.mu.Unlock()
		return Status{}, fmt.Errorf("%w: %s (%s)", ErrExists, b.Peer(), b.Manifest.Name)
	}
	if _, err := os.Stat(h.peerDir(b.Peer())); err == nil {
		h.mu.Unlock()
		return Status{}, fmt.Errorf("%w: %s (%s)", ErrExists, b.Peer(), b.Manifest.Name)
	}
	g, err := h.idx.match(b, as, h.cfg.Now())
	h.mu.Unlock()
	if err != nil {
		return Status{}, err
	}
	p := newPeer(h, b, kv)
	p.as = as
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	p.adopt(g)
	p.state = kinds.StateRunning
	err = p.start(ctx)
	p.mu.Unlock()
	if err == nil {
		// One instance now, so a module that cannot start is refused here.
		var inst *instance
		if inst, err = p.instantiate(p.rt, p.compiled, p.ctx); err == nil {
			p.idle = append(p.idle, inst)
		}
	}
	if err != nil {
		p.halt()
		return Status{}, err
	}
	h.mu.Lock()
	if _, ok := h.peers[b.Peer()]; ok {
		h.mu.Unlock()
		p.halt()
		return Status{}, fmt.Errorf("%w: %s", ErrExists, b.Peer())
	}
	h.peers[b.Peer()] = p
	h.mu.Unlock()
	werr := writeFileAtomic(filepath.Join(h.peerDir(p.id), "bundle"), b.Bytes())
	if werr == nil {
		werr = h.writeKV(p.id, kv)
	}
	if werr == nil {
		werr = p.saveMeta()
	}
	if werr != nil {
		p.halt()
		h.forget(p.id)
		return Status{}, fmt.Errorf("exec: saving peer %s: %w", b.Manifest.Name, werr)
	}
	reason := fmt.Sprintf("deployed under grant %s", g.id)
	if from != "" {
		reason = fmt.Sprintf("moved here from host %s; under grant %s", from, g.id)
	}
	if err := h.record(b, g, kinds.StateDeployed, reason, nil, nil); err != nil {
		return p.status(), err
	}
	return p.status(), nil
}

func (h *Host) forget(id key.ID) {
	h.mu.Lock()
	delete(h.peers, id)
	h.mu.Unlock()
	os.RemoveAll(h.peerDir(id))
}

// Call serves one request to a running peer and returns its response.
func (h *Host) Call(ctx context.Context, id key.ID, req []byte) ([]byte, error) {
	p, err := h.load(id)
	if err != nil {
		return nil, err
	}
	return p.call(ctx, req)
}

// Suspend stops a running peer's instances, keeps its state on disk and
// records `suspended`.
func (h *Host) Suspend(ctx context.Context, id key.ID) error {
	p, err := h.load(id)
	if err != nil {
		return err
	}
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.state != kinds.StateRunning {
		st := p.state
		p.mu.Unlock()
		return fmt.Errorf("%w: %s is %s", ErrNotRunning, p.b.Manifest.Name, st)
	}
	p.state, p.reason = kinds.StateSuspended, ""
	g := p.grant
	p.mu.Unlock()
	p.halt()
	if err := p.saveMeta(); err != nil {
		return err
	}
	return h.record(p.b, g, kinds.StateSuspended, "suspended by the host", nil, p.usage())
}

// Resume runs a suspended or stopped peer again, under a grant live now (a
// revoked or expired grant does not do), and records `running`.
func (h *Host) Resume(ctx context.Context, id key.ID) error {
	p, err := h.load(id)
	if err != nil {
		return err
	}
	if err := h.refresh(); err != nil {
		return err
	}
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.state == kinds.StateRunning {
		p.mu.Unlock()
		return nil
	}
	if p.state == kinds.StateMoved {
		reason := p.reason
		p.mu.Unlock()
		return fmt.Errorf("%w: %s: %s", ErrHandedOver, p.b.Manifest.Name, reason)
	}
	h.mu.Lock()
	g, err := h.idx.match(p.b, p.as, h.cfg.Now())
	h.mu.Unlock()
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.adopt(g)
	p.state, p.reason = kinds.StateRunning, ""
	p.failures = 0
	if p.limits.CPUTotalMS != 0 && p.cpuMS+uint64(p.cpuNS/1e6) >= p.limits.CPUTotalMS && g.id != p.grantIDFromMeta() {
		p.cpuMS, p.cpuNS = 0, 0 // a new grant gives a new CPU budget
	}
	p.mu.Unlock()
	if err := p.saveMeta(); err != nil {
		return err
	}
	return h.record(p.b, g, kinds.StateRunning, fmt.Sprintf("resumed under grant %s", g.id), nil, nil)
}

func (p *peer) grantIDFromMeta() (id [32]byte) {
	if p.grant != nil {
		return p.grant.id
	}
	return
}

// Remove stops a peer and deletes everything this host holds of it (bundle,
// state, meta), and records `removed`.
func (h *Host) Remove(ctx context.Context, id key.ID) error {
	p, err := h.load(id)
	if err != nil {
		return err
	}
	p.life.Lock()
	defer p.life.Unlock()
	p.halt()
	p.mu.Lock()
	p.state = kinds.StateRemoved
	g := p.grant
	p.mu.Unlock()
	h.mu.Lock()
	delete(h.peers, id)
	h.mu.Unlock()
	if err := os.RemoveAll(h.peerDir(id)); err != nil {
		return fmt.Errorf("exec: removing %s: %w", p.b.Manifest.Name, err)
	}
	return h.record(p.b, g, kinds.StateRemoved, "removed by the host; state deleted", nil, p.usage())
}

// Run deploys a bundle if this host does not hold its peer yet (resuming it
// if it is suspended), then serves one request: `sublog run`.
func (h *Host) Run(ctx context.Context, raw []byte, req []byte) ([]byte, error) {
	b, err := bundle.Decode(raw)
	if err != nil {
		return nil, err
	}
	st, err := h.Status(b.Peer())
	switch {
	case errors.Is(err, ErrUnknownPeer):
		if _, err := h.install(ctx, b, map[string][]byte{}, "", As{}); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case st.Bundle != b.Hash():
		return nil, fmt.Errorf("%w: %s runs bundle %s here, not %s", ErrExists, b.Peer().Short(), st.Bundle, b.Hash())
	case st.State != kinds.StateRunning:
		if err := h.Resume(ctx, b.Peer()); err != nil {
			return nil, err
		}
	}
	return h.Call(ctx, b.Peer(), req)
}
