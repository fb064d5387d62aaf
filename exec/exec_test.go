package exec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"github.com/sublog/sublog/log/kinds"
	"os"
	osexec "os/exec"
	"path/filepath"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

var cacheDir string

// TestMain brings the example bundles up to date (`make examples`), and gives
// every host of the run one compilation cache, so each module compiles once.
func TestMain(m *testing.M) {
	// Always through make: it rebuilds only what is out of date, so a
	// bundle older than its manifest (a changed peer: key) is never used.
	root, _ := filepath.Abs("..")
	cmd := osexec.Command("make", "-s", "examples")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		panic("building the example bundles: " + err.Error())
	}
	dir, err := os.MkdirTemp("", "sublog-exec-cache-")
	if err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func example(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name, name+".bundle"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rebuild repacks a bundle with a changed manifest (same module).
func rebuild(t testing.TB, raw []byte, edit func(*bundle.Manifest)) []byte {
	t.Helper()
	b, err := bundle.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	m := b.Manifest
	edit(&m)
	out, err := bundle.Build(m, b.Module)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func secret(t testing.TB, name string) *key.Secret {
	s := sha256.Sum256([]byte("exec test " + name))
	k, err := key.FromSeed(s[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time             { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration)        { c.ns.Add(int64(d)) }
func (c *clock) Unix(d time.Duration) int64 { return c.Now().Add(d).Unix() }

type lineBuf struct {
	mu stdsync.Mutex
	b  bytes.Buffer
}

func (l *lineBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lineBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type env struct {
	t     testing.TB
	log   *MemLog
	key   *key.Secret
	clock *clock
	host  *Host
	dir   string
	plog  *lineBuf
}

func newEnv(t testing.TB, name string, log *MemLog, c *clock) *env {
	t.Helper()
	if log == nil {
		log = NewMemLog()
	}
	if c == nil {
		c = newClock()
	}
	e := &env{t: t, log: log, key: secret(t, name), clock: c, dir: t.TempDir(), plog: &lineBuf{}}
	e.open()
	t.Cleanup(func() { e.host.Close() })
	return e
}

func (e *env) open() {
	h, err := Open(Config{Dir: e.dir, Key: e.key, Log: e.log, Now: e.clock.Now, CacheDir: cacheDir,
		PeerLog: e.plog, Watch: 50 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	e.host = h
}

// grant appends a grant card by this host.
func (e *env) grant(g GrantBody) card.ID {
	e.t.Helper()
	c, err := e.log.Append(e.key, card.Draft{Kind: card.KindGrant, TS: e.clock.Now().Unix(), Body: g})
	if err != nil {
		e.t.Fatal(err)
	}
	return c.ID()
}

func (e *env) grantPeer(raw []byte, caps []string, l bundle.Limits) card.ID {
	e.t.Helper()
	b, err := bundle.Decode(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	e.prove(raw)
	return e.grant(GrantBody{Peer: b.Manifest.Peer, Caps: caps, Limits: l, Owner: secret(e.t, "owner").ID().Bytes()})
}

// examplePeer is the secret key of an example bundle's peer (the demo keys
// in examples/NAME/peer.key, derived from public seeds), or nil.
func examplePeer(t testing.TB, peer key.ID) *key.Secret {
	t.Helper()
	for _, n := range []string{"greeter", "counter", "misbehave"} {
		sk, err := key.FromSeed(key.DeriveSeed([]byte("sublog-examples"), n))
		if err != nil {
			t.Fatal(err)
		}
		if sk.ID() == peer {
			return sk
		}
	}
	for _, n := range []string{"counter-2", "loopfree", "recurse"} { // peers the tests make
		if sk := secret(t, n); sk.ID() == peer {
			return sk
		}
	}
	return nil
}

// prove publishes raw's bundle card signed by its peer's key, into the
// shared log: the proof a grant by peer identity needs.
func (e *env) prove(raw []byte) {
	e.t.Helper()
	b, err := bundle.Decode(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	sk := examplePeer(e.t, b.Peer())
	if sk == nil {
		e.t.Fatalf("no key for peer %s", b.Peer())
	}
	h := b.Hash()
	if _, err := e.log.Append(sk, card.Draft{Kind: card.KindBundle, TS: e.clock.Now().Unix(), ContentHash: h[:],
		Body: BundleBody{Hash: h[:], Name: b.Manifest.Name, Version: b.Manifest.Version, Peer: b.Manifest.Peer, Size: uint64(b.Size())}}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) revoke(id card.ID, reason string) {
	e.t.Helper()
	if _, err := e.log.Append(e.key, card.Draft{Kind: card.KindRevoke, TS: e.clock.Now().Unix(),
		Body: RevokeBody{Card: id[:], Reason: reason}}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deploy(raw []byte) key.ID {
	e.t.Helper()
	st, err := e.host.Deploy(context.Background(), raw, bundle.HashOf(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Peer
}

func (e *env) call(p key.ID, req string) (string, error) {
	out, err := e.host.Call(context.Background(), p, []byte(req))
	return string(out), err
}

func (e *env) mustCall(p key.ID, req string) string {
	e.t.Helper()
	out, err := e.call(p, req)
	if err != nil {
		e.t.Fatalf("call %q: %v", req, err)
	}
	return out
}

// observed lists the host's observe cards as "state: reason".
func (e *env) observed() []ObserveBody {
	var out []ObserveBody
	for _, c := range e.log.Cards(e.key.ID()) {
		if c.Kind() != card.KindObserve {
			continue
		}
		var o ObserveBody
		if err := c.DecodeBody(&o); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

func (e *env) states() []string {
	var s []string
	for _, o := range e.observed() {
		s = append(s, o.State)
	}
	return s
}

var reqLog = []string{bundle.CapLog, bundle.CapReq}

func TestGreeter(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	raw := example(t, "greeter")
	gid := e.grantPeer(raw, reqLog, bundle.Limits{Memory: 64 << 20, Instances: 4})
	p := e.deploy(raw)
	if got := e.mustCall(p, "bob"); got != "hello, bob" {
		t.Fatalf("got %q", got)
	}
	if got := e.mustCall(p, ""); got != "hello, world" {
		t.Fatalf("got %q", got)
	}
	obs := e.observed()
	if len(obs) != 1 || obs[0].State != kinds.StateDeployed || !bytes.Equal(obs[0].Grant, gid[:]) {
		t.Fatalf("observations %+v", obs)
	}
	// Execution does not transfer ownership: the record names the grant's
	// owner, not the host.
	if !bytes.Equal(obs[0].Owner, secret(t, "owner").ID().Bytes()) {
		t.Fatalf("owner %x", obs[0].Owner)
	}
	st, err := e.host.Status(p)
	if err != nil || st.State != kinds.StateRunning || st.Limits.Memory != 32<<20 || st.Limits.Instances != 2 {
		t.Fatalf("status %+v %v", st, err)
	}
}
