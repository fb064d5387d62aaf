package exec

import (
	"context"
	"errors"
	"github.com/sublog/sublog/log/kinds"
	"os"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/card"
)

var reqKV = []string{bundle.CapKV, bundle.CapReq}

// TestLifecycle: count to 5, suspend, resume (6), move to a second home (7
// there, nothing left here), remove (state gone).
func TestLifecycle(t *testing.T) {
	a := newEnv(t, "host-a", nil, nil)
	b := newEnv(t, "host-b", nil, nil)
	raw := example(t, "counter")
	a.grantPeer(raw, reqKV, bundle.Limits{})
	b.grantPeer(raw, reqKV, bundle.Limits{})
	p := a.deploy(raw)
	for i := 1; i <= 5; i++ {
		if got := a.mustCall(p, "inc"); got != strconv.Itoa(i) {
			t.Fatalf("inc %d: %q", i, got)
		}
	}
	ctx := context.Background()
	if err := a.host.Suspend(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := a.call(p, "inc"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("call while suspended: %v", err)
	}
	if err := a.host.Resume(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := a.mustCall(p, "inc"); got != "6" {
		t.Fatalf("after resume: %q", got)
	}

	if err := a.host.Move(ctx, p, b.host); err != nil {
		t.Fatal(err)
	}
	if got := b.mustCall(p, "inc"); got != "7" {
		t.Fatalf("after move: %q", got)
	}
	if _, err := a.host.Status(p); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("first home still knows the peer: %v", err)
	}
	if _, err := os.Stat(a.host.peerDir(p)); !os.IsNotExist(err) {
		t.Fatalf("first home keeps files of the moved peer: %v", err)
	}
	if _, err := a.call(p, "get"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("call on the first home after the move: %v", err)
	}
	if err := b.host.Remove(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.host.peerDir(p)); !os.IsNotExist(err) {
		t.Fatalf("state left after remove: %v", err)
	}
	if _, err := b.call(p, "get"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("call after remove: %v", err)
	}
	// Deployed again, it starts from nothing.
	b.deploy(raw)
	if got := b.mustCall(p, "get"); got != "0" {
		t.Fatalf("state survived remove: %q", got)
	}

	want := []string{kinds.StateDeployed, kinds.StateSuspended, kinds.StateRunning, kinds.StateMoved}
	if got := a.states(); !slices.Equal(got, want) {
		t.Fatalf("host a recorded %v, want %v", got, want)
	}
	obs := a.observed()
	if to := obs[len(obs)-1].To; string(to) != string(b.key.ID().Bytes()) {
		t.Fatalf("moved card names %x, not host b", to)
	}
	want = []string{kinds.StateDeployed, kinds.StateRemoved, kinds.StateDeployed}
	if got := b.states(); !slices.Equal(got, want) {
		t.Fatalf("host b recorded %v, want %v", got, want)
	}
	if !strings.Contains(b.observed()[0].Reason, a.key.ID().String()) {
		t.Fatalf("host b's deploy does not say where from: %q", b.observed()[0].Reason)
	}
}

// TestMoveNeedsGrantThere: a grant on one host gives nothing on another; a
// refused move leaves the peer here, suspended, state intact.
func TestMoveNeedsGrantThere(t *testing.T) {
	a := newEnv(t, "host-a", nil, nil)
	b := newEnv(t, "host-b", a.log, nil) // even sharing a log, b needs its own grant
	raw := example(t, "counter")
	a.grantPeer(raw, reqKV, bundle.Limits{})
	p := a.deploy(raw)
	a.mustCall(p, "inc")
	ctx := context.Background()
	if err := a.host.Move(ctx, p, b.host); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("move without a grant there: %v", err)
	}
	st, err := a.host.Status(p)
	if err != nil || st.State != kinds.StateSuspended {
		t.Fatalf("after a refused move: %+v %v", st, err)
	}
	if err := a.host.Resume(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := a.mustCall(p, "inc"); got != "2" {
		t.Fatalf("state lost by a refused move: %q", got)
	}
}

func TestHostRestart(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := example(t, "counter")
	e.grantPeer(raw, reqKV, bundle.Limits{})
	p := e.deploy(raw)
	e.mustCall(p, "inc")
	e.mustCall(p, "inc")
	if err := e.host.Close(); err != nil {
		t.Fatal(err)
	}
	e.open()
	if got := e.mustCall(p, "inc"); got != "3" {
		t.Fatalf("after restart: %q", got)
	}
}

func TestNoGrantNothingRuns(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	other := newEnv(t, "other-host", e.log, nil)
	raw := example(t, "greeter")
	ctx := context.Background()
	if _, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw)); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("no grant: %v", err)
	}
	// A grant by another host is not consent from this one.
	other.grantPeer(raw, reqLog, bundle.Limits{Instances: 2})
	if _, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw)); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("someone else's grant: %v", err)
	}
	// A grant for another peer or another bundle does not cover it.
	e.grant(GrantBody{Peer: secret(t, "someone").ID().Bytes(), Caps: reqLog, Limits: bundle.Limits{Instances: 2}})
	var h bundle.Hash
	h[0] = 1
	e.grant(GrantBody{Bundle: h[:], Caps: reqLog, Limits: bundle.Limits{Instances: 2}})
	if _, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw)); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("grant for others: %v", err)
	}
	if _, err := e.host.Run(ctx, raw, []byte("x")); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("run: %v", err)
	}
	if len(e.observed()) != 0 {
		t.Fatal("something was recorded as running")
	}
	// A grant naming only a service is consent for placement (the
	// projections read it), not consent to run a bundle.
	e.grant(GrantBody{Service: "greeter", Caps: reqLog, Limits: bundle.Limits{Instances: 2}})
	if _, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw)); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("service-only grant: %v", err)
	}
	// A grant by bundle hash does.
	bh := bundle.HashOf(raw)
	e.grant(GrantBody{Bundle: bh[:], Caps: reqLog, Limits: bundle.Limits{Instances: 2}})
	out, err := e.host.Run(ctx, raw, []byte("x"))
	if err != nil || string(out) != "hello, x" {
		t.Fatalf("run under a bundle grant: %q %v", out, err)
	}
}

func TestRefusedBundles(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := example(t, "counter")
	ctx := context.Background()
	e.grantPeer(raw, []string{bundle.CapReq}, bundle.Limits{Memory: 16 << 20})

	// Bytes that do not match the hash.
	bad := append([]byte{}, raw...)
	bad[len(bad)-1] ^= 1
	if _, err := e.host.Deploy(ctx, bad, bundle.HashOf(raw)); !errors.Is(err, bundle.ErrHashMismatch) {
		t.Fatalf("tampered: %v", err)
	}
	// A malformed manifest.
	if _, err := e.host.Deploy(ctx, raw[:len(raw)/2], bundle.Hash{}); !errors.Is(err, bundle.ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
	// More than the grant allows: caps, then memory.
	_, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw))
	if !errors.Is(err, ErrExceedsGrant) || !strings.Contains(err.Error(), `"kv"`) {
		t.Fatalf("caps over the grant: %v", err)
	}
	e.grantPeer(raw, reqKV, bundle.Limits{Memory: 16 << 20})
	_, err = e.host.Deploy(ctx, raw, bundle.HashOf(raw))
	if !errors.Is(err, ErrExceedsGrant) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("memory over the grant: %v", err)
	}
	for _, l := range []bundle.Limits{{CPUReqMS: 100}, {Instances: 1}, {Disk: 1024}, {CPUTotalMS: 10}} {
		e := newEnv(t, "host-limits", nil, nil)
		e.grantPeer(raw, reqKV, l)
		asking := rebuild(t, raw, func(m *bundle.Manifest) {
			m.Limits = bundle.Limits{CPUReqMS: l.CPUReqMS * 2, Instances: l.Instances * 2, Disk: l.Disk * 2, CPUTotalMS: l.CPUTotalMS * 2}
		})
		e.prove(asking)
		if _, err := e.host.Deploy(ctx, asking, bundle.Hash{}); !errors.Is(err, ErrExceedsGrant) {
			t.Fatalf("%+v: %v", l, err)
		}
	}
	// A module whose minimum memory is over the cap is refused at deploy.
	e.grantPeer(raw, reqKV, bundle.Limits{Memory: 1 << 20})
	tiny := rebuild(t, raw, func(m *bundle.Manifest) { m.Limits = bundle.Limits{Memory: 1 << 20} })
	e.prove(tiny)
	if _, err := e.host.Deploy(ctx, tiny, bundle.Hash{}); !errors.Is(err, ErrMemoryCap) {
		t.Fatalf("memory under the module's minimum: %v", err)
	}
	if _, err := e.host.Status(secret(t, "x").ID()); !errors.Is(err, ErrUnknownPeer) {
		t.Fatal(err)
	}
}

// TestRevoke: revoking the grant stops the peer (even mid-request) within a
// second, records why, and it cannot be resumed.
func TestRevoke(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := rebuild(t, example(t, "misbehave"), func(m *bundle.Manifest) { m.Limits.CPUReqMS = 20000 })
	gid := e.grantPeer(raw, reqLog, bundle.Limits{CPUReqMS: 20000})
	p := e.deploy(raw)
	var wg stdsync.WaitGroup
	var callErr error
	var callTook time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		t0 := time.Now()
		_, callErr = e.call(p, "loop")
		callTook = time.Since(t0)
	}()
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	e.revoke(gid, "host owner needs the machine back")
	for {
		st, err := e.host.Status(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == kinds.StateStopped {
			break
		}
		if time.Since(t0) > time.Second {
			t.Fatalf("still %s a second after the revoke", st.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if !errors.Is(callErr, ErrStopped) || time.Since(t0) > time.Second {
		t.Fatalf("in-flight request: %v after %v", callErr, callTook)
	}
	t.Logf("stopped %v after the revoke", time.Since(t0))
	obs := e.observed()
	last := obs[len(obs)-1]
	if last.State != kinds.StateStopped || !strings.Contains(last.Reason, "revoked: host owner needs the machine back") {
		t.Fatalf("recorded %+v", last)
	}
	if err := e.host.Resume(context.Background(), p); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("resume after revoke: %v", err)
	}
	if _, err := e.call(p, "ok"); !errors.Is(err, ErrStopped) {
		t.Fatalf("call after revoke: %v", err)
	}
	// A new grant is new consent.
	e.grantPeer(raw, reqLog, bundle.Limits{CPUReqMS: 20000})
	if err := e.host.Resume(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if got := e.mustCall(p, "ok"); got != "ok" {
		t.Fatal(got)
	}
}

// TestExpiry: an expired grant behaves like a revoked one.
func TestExpiry(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := example(t, "counter")
	b, _ := bundle.Decode(raw)
	e.prove(raw)
	e.grant(GrantBody{Peer: b.Manifest.Peer, Caps: reqKV, Expires: e.clock.Unix(time.Hour)})
	p := e.deploy(raw)
	e.mustCall(p, "inc")
	e.clock.Add(2 * time.Hour)
	deadline := time.Now().Add(time.Second)
	for {
		st, _ := e.host.Status(p)
		if st.State == kinds.StateStopped {
			if !strings.Contains(st.Reason, "expired") {
				t.Fatalf("reason %q", st.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s a second after expiry", st.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.host.Resume(context.Background(), p); !errors.Is(err, ErrNoGrant) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("resume: %v", err)
	}
	// Nor does an expired grant let a bundle deploy.
	e2 := newEnv(t, "host2", nil, e.clock)
	e2.grant(GrantBody{Peer: b.Manifest.Peer, Caps: reqKV, Expires: e.clock.Unix(-time.Minute)})
	if _, err := e2.host.Deploy(context.Background(), raw, bundle.Hash{}); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("deploy under an expired grant: %v", err)
	}
}

func TestCPUTotal(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := rebuild(t, example(t, "misbehave"), func(m *bundle.Manifest) { m.Limits.CPUReqMS = 100 })
	e.grantPeer(raw, reqLog, bundle.Limits{CPUTotalMS: 150})
	p := e.deploy(raw)
	// Each request is stopped at its 100ms cap; the second uses up the
	// 150ms total (the instances' start time counts too).
	for i := 0; i < 2; i++ {
		if _, err := e.call(p, "loop"); !errors.Is(err, ErrCPUCap) && !errors.Is(err, ErrStopped) {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Second)
	for {
		st, _ := e.host.Status(p)
		if st.State == kinds.StateStopped && strings.Contains(st.Reason, "CPU total") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not stopped for CPU total: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInstancesCap: with one instance, concurrent requests are served one at
// a time, so no increment is lost.
func TestInstancesCap(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := example(t, "counter")
	e.grantPeer(raw, reqKV, bundle.Limits{})
	p := e.deploy(raw)
	var wg stdsync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.mustCall(p, "inc")
		}()
	}
	wg.Wait()
	if got := e.mustCall(p, "get"); got != "20" {
		t.Fatalf("count %q", got)
	}
}

// TestStateScopedToPeer: two peers running the same code keep separate
// state; a peer's state survives only through its own requests.
func TestStateScopedToPeer(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := example(t, "counter")
	other := rebuild(t, raw, func(m *bundle.Manifest) { m.Peer = secret(t, "counter-2").ID().Bytes() })
	e.grantPeer(raw, reqKV, bundle.Limits{})
	e.grantPeer(other, reqKV, bundle.Limits{})
	p1, p2 := e.deploy(raw), e.deploy(other)
	e.mustCall(p1, "inc")
	e.mustCall(p1, "inc")
	if got := e.mustCall(p2, "inc"); got != "1" {
		t.Fatalf("second peer saw the first's state: %q", got)
	}
	// Only observe cards by the host were written: the peers wrote nothing.
	for _, c := range e.log.Cards(e.key.ID()) {
		if c.Kind() != card.KindGrant && c.Kind() != card.KindObserve {
			t.Fatalf("unexpected %s card", c.Kind())
		}
	}
	if _, err := e.host.Deploy(context.Background(), raw, bundle.Hash{}); !errors.Is(err, ErrExists) {
		t.Fatalf("deploying twice: %v", err)
	}
}

// TestCRLRevokes: a crl card of the host naming the grant withdraws it too.
func TestCRLRevokes(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := example(t, "greeter")
	gid := e.grantPeer(raw, reqLog, bundle.Limits{Instances: 2})
	p := e.deploy(raw)
	if _, err := e.log.Append(e.key, card.Draft{Kind: card.KindCRL, TS: e.clock.Now().Unix(),
		Body: map[string]any{"revoked": [][]byte{gid[:]}}}); err != nil {
		t.Fatal(err)
	}
	e.host.Check()
	if _, err := e.call(p, "x"); !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "crl") {
		t.Fatalf("call after crl: %v", err)
	}
}

// A grant naming only a service admits the bundle when it is deployed as
// that owner's service (a placement, DeployAs), and nothing else: the
// definition the plan uses (kinds.GrantBody.Admits).
func TestServiceGrantAdmitsOnlyAsItsService(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := example(t, "greeter")
	ctx := context.Background()
	owner := secret(t, "owner").ID()
	e.grant(GrantBody{Service: "greeter", Owner: owner.Bytes(), Caps: reqLog, Limits: bundle.Limits{Instances: 2}})
	if _, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw)); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("bare deploy under a service-only grant: %v", err)
	}
	if _, err := e.host.DeployAs(ctx, raw, bundle.HashOf(raw), As{Owner: owner, Service: "other"}); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("another service: %v", err)
	}
	if _, err := e.host.DeployAs(ctx, raw, bundle.HashOf(raw), As{Owner: secret(t, "stranger").ID(), Service: "greeter"}); !errors.Is(err, ErrNoGrant) {
		t.Fatalf("another owner's service: %v", err)
	}
	if _, err := e.host.DeployAs(ctx, raw, bundle.HashOf(raw), As{}); !errors.Is(err, ErrBadGrant) {
		t.Fatalf("DeployAs with no service: %v", err)
	}
	st, err := e.host.DeployAs(ctx, raw, bundle.HashOf(raw), As{Owner: owner, Service: "greeter"})
	if err != nil {
		t.Fatalf("deploy as the granted service: %v", err)
	}
	out, err := e.host.Call(ctx, st.Peer, []byte("x"))
	if err != nil || string(out) != "hello, x" {
		t.Fatalf("call: %q %v", out, err)
	}
}
