package sync

import (
	"bufio"
	"context"
	"errors"
	"io"
	stdsync "sync"
	"testing"
	"time"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/proto"
	"github.com/sublog/sublog/sync/transport"
)

// verifyCounter counts, per author, the cards handed to the store to verify.
type verifyCounter struct {
	Store
	mu stdsync.Mutex
	n  map[key.ID]int
}

func (v *verifyCounter) count(raw ...[]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, b := range raw {
		a, _ := PeekAuthor(b)
		v.n[a]++
	}
}

func (v *verifyCounter) Import(b []byte) (*card.Card, error) {
	v.count(b)
	return v.Store.Import(b)
}

func (v *verifyCounter) ImportBatch(raw [][]byte) (sublog.ImportResult, error) {
	v.count(raw...)
	return v.Store.ImportBatch(raw)
}

func (v *verifyCounter) of(a key.ID) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.n[a]
}

// forgedRun is n cards of sk's log from seq 1 with every signature broken.
func forgedRun(t *testing.T, sk *key.Secret, n int) [][]byte {
	t.Helper()
	var out [][]byte
	prev := card.ID{}
	for seq := 1; seq <= n; seq++ {
		c, err := card.Sign(sk, uint64(seq), prev, card.Draft{Kind: card.KindNote, TS: int64(seq)}, testCaps)
		if err != nil {
			t.Fatal(err)
		}
		b := append([]byte(nil), c.Bytes()...)
		b[len(b)-1] ^= 1
		prev = card.IDOf(b)
		out = append(out, b)
	}
	return out
}

// pushRaw authenticates to addr as sk, starts a session, sends msgs and
// returns once the server closes (or a Refuse comes, whose reason it returns).
func pushRaw(t *testing.T, addr string, sk *key.Secret, msgs []*proto.Msg) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := transport.TCP{}.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := channel.Client(ctx, c, channel.Config{Secret: sk, Rand: newRand(31)})
	if err != nil {
		t.Fatal(err)
	}
	mux, err := transport.Mux(ch, true)
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	st, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte{StreamSync}); err != nil { // the stream's kind
		t.Fatal(err)
	}
	reason := make(chan string, 1)
	go func() {
		r := bufio.NewReader(st)
		for {
			m, _, err := proto.ReadMsg(r)
			if err != nil {
				reason <- ""
				return
			}
			if m.T == proto.TRefuse {
				reason <- m.Reason
				return
			}
		}
	}()
	w := bufio.NewWriter(st)
	proto.WriteMsg(w, &proto.Msg{T: proto.TRanges, V: proto.Version, Ranges: []proto.Range{{Mode: proto.ModeFP, FP: make([]byte, 16)}}})
	for _, m := range msgs {
		proto.WriteMsg(w, m)
	}
	w.Flush()
	// Half-close: the server reads every message before it sees the end of
	// the stream, and then ends the session (or it refused before); wait
	// for that rather than for a while.
	st.Close()
	select {
	case r := <-reason:
		return r
	case <-ctx.Done():
		t.Fatal("no end from the server")
	}
	return ""
}

// issue 18: forged cards claiming the server's own identity (or any log a
// peer has no reason to send) are dropped on their announced author before
// any signature is checked, while a legitimate sync runs beside them.
func TestUnwantedLogsRefusedBeforeVerification(t *testing.T) {
	srv, friend, stranger, nobody := secret(t, "srv"), secret(t, "friend"), secret(t, "stranger"), secret(t, "nobody")
	st := &verifyCounter{Store: newStore(), n: map[key.ID]int{}}
	appendN(t, st.Store, srv, 3)
	pol := NewLists([]key.ID{srv.ID()}, []key.ID{friend.ID()}, nil)
	l, err := transport.TCP{}.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu stdsync.Mutex
	byPeer := map[key.ID]Stats{}
	served := make(chan struct{}, 8)
	go Serve(ctx, l, st, Options{Secret: srv, Rand: newRand(5), Policy: pol}, func(s Stats, err error) {
		mu.Lock()
		byPeer[s.Peer] = s
		mu.Unlock()
		served <- struct{}{}
	})

	// The stranger (served, as on --open: no Accept) sends 2,000 forged
	// cards of the server's own log, a log nobody follows, and its own.
	forgedSelf := forgedRun(t, srv, 2000)
	var msgs []*proto.Msg
	for i := 0; i < len(forgedSelf); i += proto.MaxBatch {
		j := min(i+proto.MaxBatch, len(forgedSelf))
		msgs = append(msgs, &proto.Msg{T: proto.TCards, Author: srv.ID().Bytes(), From: uint64(i + 1), Cards: forgedSelf[i:j]})
	}
	msgs = append(msgs,
		&proto.Msg{T: proto.TCards, Author: nobody.ID().Bytes(), From: 1, Cards: forgedRun(t, nobody, 10)},
		&proto.Msg{T: proto.TWitness, Author: srv.ID().Bytes(), From: 1, Cards: forgedSelf[:1]},
		&proto.Msg{T: proto.TCards, Author: stranger.ID().Bytes(), From: 1, Cards: forgedRun(t, stranger, 10)})
	done := make(chan struct{})
	go func() { defer close(done); pushRaw(t, l.Addr(), stranger, msgs) }()

	// Meanwhile the trusted friend syncs 200 real cards.
	fst := newStore()
	appendN(t, fst, friend, 200)
	fs, err := Dial(ctx, transport.TCP{}, l.Addr(), fst, Options{Secret: friend, Rand: newRand(6), Policy: NewLists([]key.ID{friend.ID()}, []key.ID{srv.ID()}, nil)})
	if err != nil || fs.Sent != 200 {
		t.Fatalf("legitimate sync: %+v %v", fs, err)
	}
	<-done
	for range 2 {
		<-served
	}
	if n := st.of(srv.ID()) + st.of(nobody.ID()) + st.of(stranger.ID()); n != 0 {
		t.Fatalf("%d signature checks spent on the stranger's cards", n)
	}
	if n := st.of(friend.ID()); n != 200 {
		t.Fatalf("the friend's 200 cards took %d checks", n)
	}
	mu.Lock()
	ss := byPeer[stranger.ID()]
	mu.Unlock()
	if ss.Checked != 0 || ss.Dropped != 2000+10+1+10 {
		t.Fatalf("stranger session: %+v checked %d dropped %d", ss, ss.Checked, ss.Dropped)
	}
	if h, _ := st.Head(srv.ID()); h.Seq != 3 {
		t.Fatalf("own log changed: %+v", h)
	}
}

// The trusted friend is the exception: it may give this side's own log back
// (a home restored from an old copy), and those cards are verified.
func TestOwnLogTakenBackFromTrustedPeer(t *testing.T) {
	srv, friend := secret(t, "srv"), secret(t, "friend")
	full, lost := newStore(), newStore()
	appendN(t, full, srv, 5)
	for seq := uint64(1); seq <= 2; seq++ {
		c, _ := full.Get(srv.ID(), seq)
		if _, err := lost.Import(c.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	pol := NewLists([]key.ID{srv.ID()}, []key.ID{friend.ID()}, nil)
	ra, rb := syncPipe(t, node{lost, srv, pol}, node{full, friend, NewLists([]key.ID{friend.ID()}, []key.ID{srv.ID()}, []key.ID{srv.ID()})})
	if ra.err != nil || rb.err != nil || ra.st.Received != 3 {
		t.Fatalf("%+v %+v", ra, rb)
	}
	if pol.Accept(secret(t, "stranger").ID(), srv.ID()) {
		t.Fatal("a stranger may give this side's own log")
	}
}

func TestConnsForFDLimit(t *testing.T) {
	for _, c := range []struct {
		nofile uint64
		want   int
	}{{128, 64}, {100, 52}, {49, 1}, {10, 1}, {1 << 20, MaxConnsCap}} {
		if got := ConnsForFDLimit(c.nofile); got != c.want {
			t.Errorf("ConnsForFDLimit(%d) = %d, want %d", c.nofile, got, c.want)
		}
	}
	if d := DefaultLimits(); d.MaxConns < 1 || d.MaxConns > MaxConnsCap || d.MaxHalfOpen > d.MaxConns {
		t.Fatalf("defaults %+v", d)
	}
}

type fakeConn struct {
	io.ReadWriter
	closed bool
}

func (f *fakeConn) Close() error { f.closed = true; return nil }

func TestAdmissionCapsAndEviction(t *testing.T) {
	a := newAdmission(Limits{MaxConns: 6, MaxConnsPerSource: 3, MaxHalfOpen: 4, MaxHalfOpenPerSource: 2}.withDefaults())
	conn := func() *fakeConn { return &fakeConn{} }
	a1, a2, a3 := conn(), conn(), conn()
	s1, _ := a.admit(a1, "10.0.0.1")
	s2, _ := a.admit(a2, "10.0.0.1")
	// A third half-open one from the source takes the place of its oldest.
	s3, _ := a.admit(a3, "10.0.0.1")
	if s3 == nil || !a1.closed || a2.closed {
		t.Fatalf("per-source half-open cap: %v %v %v", a1.closed, a2.closed, s3)
	}
	if a.established(s1) {
		t.Fatal("an evicted connection finished its handshake")
	}
	if !a.established(s2) || !a.established(s3) {
		t.Fatal("established")
	}
	// Two established from the source: one more half-open fits (3 per
	// source); a fourth takes its place; once all three are established,
	// a fourth has nothing to evict and is turned away.
	a4, a5 := conn(), conn()
	if s, _ := a.admit(a4, "10.0.0.1"); s == nil {
		t.Fatal("third connection of the source refused")
	}
	s5, _ := a.admit(a5, "10.0.0.1")
	if s5 == nil || !a4.closed {
		t.Fatal("a new half-open connection did not take the place of the source's oldest")
	}
	a.established(s5)
	if s, why := a.admit(conn(), "10.0.0.1"); s != nil || why != "over 3 connections from one source" {
		t.Fatalf("fourth established from one source: %v %q", s, why)
	}
	// Half-open in all: other sources fill the rest, then evict the
	// busiest source's oldest.
	b := []*fakeConn{conn(), conn(), conn(), conn()}
	for i, c := range b {
		if s, why := a.admit(c, []string{"10.0.0.2", "10.0.0.2", "10.0.0.3", "10.0.0.4"}[i]); s == nil {
			t.Fatalf("admit %d: %s", i, why)
		}
	}
	total, half := a.counts()
	if total > 6 || half > 4 {
		t.Fatalf("over the caps: %d in all, %d half-open", total, half)
	}
	a.release(s2)
	a.release(s2) // twice is harmless
	if total2, _ := a.counts(); total2 != total-1 {
		t.Fatalf("release: %d -> %d", total, total2)
	}
	// No source (pipes): only the caps in all apply.
	p := newAdmission(Limits{MaxConns: 2, MaxHalfOpen: 2}.withDefaults())
	x, y := conn(), conn()
	sx, _ := p.admit(x, "")
	sy, _ := p.admit(y, "")
	p.established(sx)
	p.established(sy)
	if s, _ := p.admit(conn(), ""); s != nil {
		t.Fatal("over MaxConns with nothing to evict")
	}
}

func TestGuardBackoffGrowsAndIsForgotten(t *testing.T) {
	g := NewGuard(Limits{BackoffMin: time.Second, BackoffMax: 8 * time.Second}, Quota{})
	now := time.Unix(1_700_000_000, 0)
	g.now = func() time.Time { return now }
	id := secret(t, "mallory").ID()
	for i, want := range []time.Duration{1, 2, 4, 8, 8} {
		if d := g.Penalize(id, "10.1.1.1"); d != want*time.Second {
			t.Fatalf("failure %d: %v, want %v", i, d, want*time.Second)
		}
		if d, ok := g.BackedOff(id); !ok || d != want*time.Second {
			t.Fatalf("backed off %v %v", d, ok)
		}
		if _, ok := g.SourceBackedOff("10.1.1.1"); !ok {
			t.Fatal("source not backed off")
		}
	}
	if _, ok := g.SourceBackedOff(""); ok {
		t.Fatal("the empty source is backed off")
	}
	now = now.Add(9 * time.Second)
	if _, ok := g.BackedOff(id); ok {
		t.Fatal("still backed off after the delay")
	}
	// Quiet for longer than BackoffMax: the next failure starts again.
	now = now.Add(20 * time.Second)
	if d := g.Penalize(id, ""); d != time.Second {
		t.Fatalf("after a quiet spell: %v", d)
	}
	// The table is bounded.
	for i := range maxRemembered + 10 {
		g.Penalize(key.ID{}, "10.2."+string(rune('a'+i%26))+string(rune(i)))
	}
	if len(g.backoff) > maxRemembered {
		t.Fatalf("%d backoff entries", len(g.backoff))
	}
}

func TestQuotaSessionAndWindow(t *testing.T) {
	g := NewGuard(Limits{}, Quota{SessionLogs: 2, SessionCards: 10, SessionBytes: 1000, Window: time.Hour, WindowLogs: 3, WindowCards: 100, WindowBytes: 1 << 20})
	now := time.Unix(1_700_000_000, 0)
	g.now = func() time.Time { return now }
	peer := secret(t, "pusher").ID()
	la, lb, lc, ld := secret(t, "a").ID(), secret(t, "b").ID(), secret(t, "c").ID(), secret(t, "d").ID()
	q := &sessionQuota{g: g, peer: peer}
	if r := q.charge(la, true, 3, 100); r != nil {
		t.Fatal(r)
	}
	if r := q.charge(la, true, 3, 100); r != nil { // same log again: not new twice
		t.Fatal(r)
	}
	if r := q.charge(lb, true, 1, 100); r != nil {
		t.Fatal(r)
	}
	if r := q.charge(lc, true, 1, 10); r == nil || r.Reason != "quota: more than 2 new logs in one session" {
		t.Fatalf("logs: %v", r)
	}
	if r := q.charge(la, false, 4, 10); r == nil || r.Reason != "quota: more than 10 cards in one session" {
		t.Fatalf("cards: %v", r)
	}
	if r := q.charge(la, false, 1, 800); r == nil || r.Reason != "quota: more than 1000 card bytes in one session" {
		t.Fatalf("bytes: %v", r)
	}
	// A new session: the window remembers 2 new logs of 3.
	q2 := &sessionQuota{g: g, peer: peer}
	if r := q2.charge(lc, true, 1, 10); r != nil {
		t.Fatal(r)
	}
	r := q2.charge(ld, true, 1, 10)
	if r == nil || r.Reason != "quota: more than 3 new logs per 1h0m0s" || r.Retry != time.Hour {
		t.Fatalf("window: %+v", r)
	}
	if r := g.windowFull(peer); r == nil || r.Retry != time.Hour {
		t.Fatalf("spent window: %v", r)
	}
	if r := g.windowFull(secret(t, "other").ID()); r != nil {
		t.Fatalf("another peer: %v", r)
	}
	now = now.Add(time.Hour)
	if r := g.windowFull(peer); r != nil {
		t.Fatalf("next window: %v", r)
	}
}

// A refusal reaches the peer as a Refuse message and ends its session with
// ErrPeerRefused and the reason; a remote refusal never backs anybody off.
func TestRefusalReachesInitiator(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	a, b := newStore(), newStore()
	for i := range 5 {
		appendN(t, a, secret(t, "log"+string(rune('a'+i))), 2)
	}
	na, nb := node{a, alice, Everyone{}}, node{b, bob, Everyone{}}
	ca, cb := transport.Pipe()
	ob := opts(nb, 2)
	ob.Quota = &Quota{SessionLogs: 3}
	ra, rb := runPair(t, ca, cb, na, nb, opts(na, 1), ob)
	if !errors.Is(ra.err, ErrPeerRefused) || !errors.Is(rb.err, ErrRefused) {
		t.Fatalf("%v / %v", ra.err, rb.err)
	}
	var r *Refusal
	if !errors.As(ra.err, &r) || r.Reason != "quota: more than 3 new logs in one session" || !r.Remote {
		t.Fatalf("%#v", r)
	}
	if rb.st.Received != 6 || rb.st.Logs != 3 {
		t.Fatalf("stored past the quota: %+v", rb.st)
	}
}
