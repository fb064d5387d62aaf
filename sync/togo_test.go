package sync

import (
	"context"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/transport"
)

// gatedStore holds a round at two points the test controls: the first
// Scan (where a push starts reading the cards it sends: nothing of it has
// gone yet) and every ImportBatch (where received cards are stored: the
// cards before it are counted, its own not yet).
type gatedStore struct {
	Store
	once     stdsync.Once
	scanning chan struct{} // closed at the first Scan
	scanGo   chan struct{} // closed by the test to let it on
	batches  chan int      // each ImportBatch's card count, on entry
	batchGo  chan struct{} // one per ImportBatch to let it on
}

func gated(st Store) *gatedStore {
	return &gatedStore{Store: st, scanning: make(chan struct{}), scanGo: make(chan struct{}),
		batches: make(chan int), batchGo: make(chan struct{})}
}

func (g *gatedStore) Scan(author key.ID, from uint64, fn func(*card.Card) error) error {
	g.once.Do(func() {
		close(g.scanning)
		<-g.scanGo
	})
	return g.Store.Scan(author, from, fn)
}

func (g *gatedStore) ImportBatch(raw [][]byte) (sublog.ImportResult, error) {
	g.batches <- len(raw)
	<-g.batchGo
	return g.Store.ImportBatch(raw)
}

// appendBig appends n cards of sk's log of about 60 KiB each (four fit a
// Cards message: n of them take several messages and store batches).
func appendBig(t testing.TB, st Store, sk *key.Secret, n int) {
	t.Helper()
	for i := range n {
		h, ok := st.Head(sk.ID())
		seq, prev := uint64(1), card.ID{}
		if ok {
			seq, prev = h.Seq+1, h.ID
		}
		c, err := card.Sign(sk, seq, prev, card.Draft{Kind: card.KindNote, TS: 1700000000 + int64(seq),
			Body: map[string]string{"text": strings.Repeat(string(rune('a'+i%26)), 60_000)}}, testCaps)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Import(c.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLinkCardsToGo: once a round has compared heads, the receiving side
// knows how many cards are to come (the peer's announced head less its
// own) and the sending side how many it pushes; both count down as cards
// are stored and sent, and are 0 when the round is over. The receiver
// (b) starts the round, so it has learnt a's heads before a pushes: the
// first gate (a's push about to read its first card) finds all N to go
// on both sides, each store batch the N less what was stored before it.
func TestLinkCardsToGo(t *testing.T) {
	const n = 10
	a, b := secret(t, "a"), secret(t, "b")
	sa, sb := gated(newStore()), gated(newStore())
	appendBig(t, sa.Store, a, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca, cb := transport.Pipe()
	type linked struct {
		l   *Link
		err error
	}
	lc := make(chan linked, 1)
	go func() {
		l, err := Connect(ctx, ca, true, sa, Options{Secret: a, Rand: newRand(1), Timeout: 20 * time.Second,
			Policy: NewLists([]key.ID{a.ID()}, []key.ID{b.ID()}, nil)})
		lc <- linked{l, err}
	}()
	lb, err := Connect(ctx, cb, false, sb, Options{Secret: b, Rand: newRand(2), Timeout: 20 * time.Second,
		Policy: NewLists([]key.ID{b.ID()}, []key.ID{a.ID()}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	r := <-lc
	if r.err != nil {
		t.Fatal(r.err)
	}
	la := r.l
	defer la.Close()
	go la.Serve(ctx, nil)
	if ta, _, _ := la.Totals(); ta.ToSend != 0 || ta.ToReceive != 0 {
		t.Fatalf("before any round a has %d to send, %d to receive", ta.ToSend, ta.ToReceive)
	}
	done := make(chan result, 1)
	go func() {
		st, err := lb.Round(ctx)
		done <- result{st, err}
	}()

	<-sa.scanning
	ta, _, _ := la.Totals()
	tb, _, _ := lb.Totals()
	if ta.ToSend != n || ta.ToReceive != 0 || tb.ToReceive != n || tb.ToSend != 0 {
		t.Fatalf("before a's push: a to send %d, to receive %d; b to receive %d, to send %d (want %d, 0, %d, 0)",
			ta.ToSend, ta.ToReceive, tb.ToReceive, tb.ToSend, n, n)
	}
	close(sa.scanGo)

	stored, calls := 0, 0
	var res result
	for waiting := true; waiting; {
		select {
		case k := <-sb.batches:
			calls++
			if tb, _, _ := lb.Totals(); tb.ToReceive != n-stored {
				t.Errorf("store batch %d (%d cards) with %d stored before it: b has %d to receive, want %d",
					calls, k, stored, tb.ToReceive, n-stored)
			}
			stored += k
			sb.batchGo <- struct{}{}
		case res = <-done:
			waiting = false
		}
	}
	if res.err != nil || res.st.Received != n {
		t.Fatalf("round: %v, received %d of %d", res.err, res.st.Received, n)
	}
	if calls < 2 || stored != n {
		t.Fatalf("%d cards came in %d store batches: the test wants them in several", stored, calls)
	}
	ta, _, _ = la.Totals()
	tb, _, _ = lb.Totals()
	if ta.ToSend != 0 || tb.ToReceive != 0 || res.st.ToReceive != 0 || tb.Received != n || ta.Sent != n {
		t.Fatalf("after the round: a to send %d (sent %d), b to receive %d (received %d), round stats %+v",
			ta.ToSend, ta.Sent, tb.ToReceive, tb.Received, res.st)
	}
}

// TestProgressReportsCardsToGo: a one-shot session's Progress reports carry
// the cards to go: on the receiver each report after a stored batch has
// fewer to receive, down to 0; on the sender each report after a sent
// message fewer to send, down to 0.
func TestProgressReportsCardsToGo(t *testing.T) {
	const n = 10
	a, b := secret(t, "a"), secret(t, "b")
	sa, sb := newStore(), newStore()
	appendBig(t, sa, a, n)
	na := node{st: sa, sk: a, pol: NewLists([]key.ID{a.ID()}, []key.ID{b.ID()}, nil)}
	nb := node{st: sb, sk: b, pol: NewLists([]key.ID{b.ID()}, []key.ID{a.ID()}, nil)}
	var mu stdsync.Mutex
	var toSend, toReceive []int
	oa, ob := opts(na, 1), opts(nb, 2)
	oa.Progress = func(s Stats) { mu.Lock(); toSend = append(toSend, s.ToSend); mu.Unlock() }
	ob.Progress = func(s Stats) { mu.Lock(); toReceive = append(toReceive, s.ToReceive); mu.Unlock() }
	ca, cb := transport.Pipe()
	ra, rb := runPair(t, ca, cb, na, nb, oa, ob)
	if ra.err != nil || rb.err != nil || rb.st.Received != n {
		t.Fatalf("session: %v, %v, received %d", ra.err, rb.err, rb.st.Received)
	}
	mu.Lock()
	defer mu.Unlock()
	for what, seen := range map[string][]int{"to send on a": toSend, "to receive on b": toReceive} {
		if len(seen) < 2 || seen[0] >= n || seen[len(seen)-1] != 0 {
			t.Errorf("%s: reports %v, want several, falling from under %d to 0", what, seen, n)
		}
		for i := 1; i < len(seen); i++ {
			if seen[i] >= seen[i-1] {
				t.Errorf("%s: reports %v do not fall", what, seen)
				break
			}
		}
	}
}
