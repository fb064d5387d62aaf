package sync

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	stdsync "sync"
	"testing"
	"time"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/transport"
)

// cutConn closes the connection once limit bytes have been written through
// it (the write that crosses the limit is cut short).
type cutConn struct {
	transport.Conn
	mu    stdsync.Mutex
	limit int
	n     int
}

func (c *cutConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	left := c.limit - c.n
	if left <= 0 {
		c.mu.Unlock()
		c.Conn.Close()
		return 0, io.ErrClosedPipe
	}
	if len(p) > left {
		c.n = c.limit
		c.mu.Unlock()
		c.Conn.Write(p[:left])
		c.Conn.Close()
		return left, io.ErrClosedPipe
	}
	c.n += len(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// mangleConn duplicates or swaps whole writes, as a broken link or a
// hostile middlebox would.
type mangleConn struct {
	transport.Conn
	mu      stdsync.Mutex
	r       *rand.Rand
	held    []byte
	writes  int
	mode    string // "dup" or "swap"
	trigger int
}

func (c *mangleConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	switch {
	case c.writes == c.trigger && c.mode == "dup":
		c.Conn.Write(p)
		return c.Conn.Write(p)
	case c.writes == c.trigger && c.mode == "swap":
		c.held = append([]byte(nil), p...)
		return len(p), nil
	case c.held != nil:
		c.Conn.Write(p)
		_, err := c.Conn.Write(c.held)
		c.held = nil
		return len(p), err
	}
	return c.Conn.Write(p)
}

// allCards maps every card ID in a store, to check that none is lost.
func allCards(st Store) map[card.ID]bool {
	m := map[card.ID]bool{}
	for _, h := range st.Heads() {
		st.Scan(h.Author, 1, func(c *card.Card) error { m[c.ID()] = true; return nil })
	}
	return m
}

// checkSound checks that no card in before went missing, and re-verifies
// every card stored since, and every chain link.
func checkSound(t *testing.T, st Store, before map[card.ID]bool) {
	t.Helper()
	now := allCards(st)
	for id := range before {
		if !now[id] {
			t.Fatalf("card %s lost", id.Short())
		}
	}
	for _, h := range st.Heads() {
		var prev card.ID
		st.Scan(h.Author, 1, func(c *card.Card) error {
			if !before[c.ID()] {
				if _, err := card.Decode(c.Bytes(), testCaps); err != nil {
					t.Fatalf("stored card does not verify: %v", err)
				}
			}
			if p, _ := c.Prev(); p != prev {
				t.Fatalf("broken chain at %s@%d", h.Author.Short(), c.Seq())
			}
			prev = c.ID()
			return nil
		})
	}
}

func TestFaultSeededCuts(t *testing.T) {
	cuts := 220
	if testing.Short() {
		cuts = 40
	}
	alice, bob, carol := secret(t, "alice"), secret(t, "bob"), secret(t, "carol")
	a, b := newStore(), newStore()
	pol := NewLists([]key.ID{alice.ID(), bob.ID()}, nil, nil)
	na, nb := node{a, alice, pol}, node{b, bob, pol}
	r := rand.New(rand.NewPCG(7, 7))
	for trial := range cuts {
		// Both sides move on offline.
		appendN(t, a, alice, r.IntN(4))
		appendN(t, b, bob, r.IntN(4))
		if trial%3 == 0 {
			appendN(t, []Store{a, b}[r.IntN(2)], carol, 1+r.IntN(3))
		}
		beforeA, beforeB := allCards(a), allCards(b)
		ca, cb := transport.Pipe()
		limit := r.IntN(4000)
		var cc *cutConn
		if r.IntN(2) == 0 {
			cc = &cutConn{Conn: ca, limit: limit}
			ca = cc
		} else {
			cc = &cutConn{Conn: cb, limit: limit}
			cb = cc
		}
		oa, ob := opts(na, uint64(trial)), opts(nb, uint64(trial)+1000)
		oa.Timeout, ob.Timeout = 2*time.Second, 2*time.Second
		runPair(t, ca, cb, na, nb, oa, ob) // may fail anywhere: that is the point
		checkSound(t, a, beforeA)
		checkSound(t, b, beforeB)
		// The next sync completes and the two agree.
		ra, rb := syncPipe(t, na, nb)
		if ra.err != nil || rb.err != nil {
			t.Fatalf("trial %d (cut at %d): next sync: %v / %v", trial, limit, ra.err, rb.err)
		}
		mustHeadsEqual(t, a, b)
	}
}

func TestFaultDuplicatedAndReorderedDeliveries(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	a, b := newStore(), newStore()
	appendN(t, a, alice, 300)
	appendN(t, b, bob, 200)
	pol := NewLists([]key.ID{alice.ID(), bob.ID()}, nil, nil)
	na, nb := node{a, alice, pol}, node{b, bob, pol}
	failures := 0
	for i, mode := range []string{"dup", "swap", "dup", "swap", "dup", "swap"} {
		beforeA, beforeB := allCards(a), allCards(b)
		ca, cb := transport.Pipe()
		mc := &mangleConn{Conn: ca, r: rand.New(rand.NewPCG(uint64(i), 1)), mode: mode, trigger: 2 + i}
		oa, ob := opts(na, uint64(i)), opts(nb, uint64(i+50))
		oa.Timeout, ob.Timeout = 500*time.Millisecond, 500*time.Millisecond
		ra, rb := runPair(t, mc, cb, na, nb, oa, ob)
		if ra.err != nil || rb.err != nil {
			failures++
		}
		checkSound(t, a, beforeA)
		checkSound(t, b, beforeB)
		if ra, rb := syncPipe(t, na, nb); ra.err != nil || rb.err != nil {
			t.Fatalf("%s: next sync: %v / %v", mode, ra.err, rb.err)
		}
		mustHeadsEqual(t, a, b)
		appendN(t, a, alice, 20)
		appendN(t, b, bob, 20)
	}
	if failures == 0 {
		t.Fatal("no mangled session was refused: the channel let duplicated or reordered bytes through")
	}
}

// stallConn passes the first limit bytes written, then blocks every write
// until closed, as a peer that stops reading would.
type stallConn struct {
	transport.Conn
	limit, n int
	closed   chan struct{}
	once     stdsync.Once
}

func (s *stallConn) Write(p []byte) (int, error) {
	if s.n+len(p) > s.limit {
		<-s.closed
		return 0, io.ErrClosedPipe
	}
	s.n += len(p)
	return s.Conn.Write(p)
}

func (s *stallConn) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.Conn.Close()
}

func TestStalledPeerIsDropped(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	a, b := newStore(), newStore()
	appendN(t, a, alice, 50)
	appendN(t, b, bob, 50)
	for _, limit := range []int{0, 40, 200, 2000} {
		ca, cb := transport.Pipe()
		stall := &stallConn{Conn: cb, limit: limit, closed: make(chan struct{})}
		// The stalling side never returns on its own; only the honest side's
		// timeout matters. Run the staller in the background.
		go Run(context.Background(), stall, false, b, Options{Secret: bob, Rand: newRand(1), Timeout: time.Hour, Policy: Everyone{}})
		start := time.Now()
		_, err := Run(context.Background(), ca, true, a, Options{Secret: alice, Rand: newRand(2), Timeout: 300 * time.Millisecond, Policy: Everyone{}})
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("limit %d: honest side returned %v, want ErrStalled", limit, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("limit %d: dropped only after %v", limit, d)
		}
		stall.Close()
	}
}

func TestEndlessDataBoundedMemory(t *testing.T) {
	alice := secret(t, "alice")
	a := newStore()
	appendN(t, a, alice, 5)
	// A peer that sends maximal frames of noise forever.
	ca, cb := transport.Pipe()
	go func() {
		junk := make([]byte, 1<<16)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range junk {
			junk[i] = byte(r.Uint32())
		}
		for {
			if _, err := cb.Write(junk); err != nil {
				return
			}
		}
	}()
	_, err := Run(context.Background(), ca, false, a, Options{Secret: alice, Rand: newRand(3), Timeout: 2 * time.Second})
	if err == nil {
		t.Fatal("endless noise accepted")
	}
	cb.Close()
}

func TestLoopbackTCPSync(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := sublog.Open(dirA, sublog.Options{Caps: testCaps})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sublog.Open(dirB, sublog.Options{Caps: testCaps})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	appendN(t, a, alice, 120)
	appendN(t, b, bob, 80)
	l, err := transport.TCP{}.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pol := NewLists([]key.ID{alice.ID(), bob.ID()}, nil, nil)
	served := make(chan result, 4)
	go Serve(ctx, l, b, Options{Secret: bob, Rand: newRand(5), Policy: pol}, func(s Stats, err error) { served <- result{s, err} })
	// Some connections cut early, then a whole one.
	for i, limit := range []int{10, 500, 5000} {
		c, err := transport.TCP{}.Dial(ctx, l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		Run(ctx, &cutConn{Conn: c, limit: limit}, true, a, Options{Secret: alice, Rand: newRand(uint64(10 + i)), Policy: pol, Timeout: 2 * time.Second})
		<-served
	}
	st, err := Dial(ctx, transport.TCP{}, l.Addr(), a, Options{Secret: alice, Rand: newRand(20), Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	if s := <-served; s.err != nil {
		t.Fatal(s.err)
	}
	mustHeadsEqual(t, a, b)
	for _, s := range []*sublog.Store{a, b} {
		if rep, err := s.Verify(nil, nil); err != nil || !rep.OK() {
			t.Fatalf("verify: %v %+v", err, rep)
		}
	}
	t.Logf("final sync: %s", st)
}

func TestCancelEndsSession(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	a, b := newStore(), newStore()
	appendN(t, a, alice, 5)
	ca, cb := transport.Pipe()
	// bob handshakes and then says nothing (a long timeout: only the
	// cancellation can end alice's side).
	stall := &stallConn{Conn: cb, limit: 300, closed: make(chan struct{})}
	go Run(context.Background(), stall, false, b, Options{Secret: bob, Rand: newRand(1), Timeout: time.Hour, Policy: Everyone{}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := Run(ctx, ca, true, a, Options{Secret: alice, Rand: newRand(2), Timeout: time.Hour, Policy: Everyone{}})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("cancel: %v after %v", err, time.Since(start))
	}
	stall.Close()
}
