package sync

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/transport"
)

var testCaps = caps.Builtin()

func secret(t testing.TB, name string) *key.Secret {
	t.Helper()
	sk, err := key.FromSeed(key.DeriveSeed([]byte("sync-test"), name))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// signNext signs author's next card on top of st's head (without storing it).
func signNext(t testing.TB, st Store, sk *key.Secret, note string) *card.Card {
	t.Helper()
	h, ok := st.Head(sk.ID())
	seq, prev := uint64(1), card.ID{}
	if ok {
		seq, prev = h.Seq+1, h.ID
	}
	c, err := card.Sign(sk, seq, prev, card.Draft{Kind: card.KindNote, TS: 1700000000 + int64(seq),
		Body: map[string]string{"text": note}}, testCaps)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// appendN appends n cards of sk's log to st.
func appendN(t testing.TB, st Store, sk *key.Secret, n int) {
	t.Helper()
	for i := range n {
		c := signNext(t, st, sk, "card "+string(rune('a'+i%26)))
		if _, err := st.Import(c.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
}

func newStore() *MemStore { return NewMemStore(testCaps) }

// seededRand is a deterministic randomness source for handshakes.
type seededRand struct{ r *rand.ChaCha8 }

func newRand(seed uint64) *seededRand {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return &seededRand{rand.NewChaCha8(s)}
}
func (s *seededRand) Read(p []byte) (int, error) { return s.r.Read(p) }

type node struct {
	st  Store
	sk  *key.Secret
	pol Policy
}

func opts(n node, seed uint64) Options {
	return Options{Secret: n.sk, Rand: newRand(seed), Policy: n.pol, Timeout: 5 * time.Second}
}

type result struct {
	st  Stats
	err error
}

// runPair syncs a (initiator) and b over the two ends of conns.
func runPair(t testing.TB, ca, cb transport.Conn, a, b node, oa, ob Options) (result, result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rb := make(chan result, 1)
	go func() {
		st, err := Run(ctx, cb, false, b.st, ob)
		rb <- result{st, err}
	}()
	st, err := Run(ctx, ca, true, a.st, oa)
	return result{st, err}, <-rb
}

func syncPipe(t testing.TB, a, b node) (result, result) {
	t.Helper()
	ca, cb := transport.Pipe()
	return runPair(t, ca, cb, a, b, opts(a, 1), opts(b, 2))
}

func mustHeadsEqual(t testing.TB, a, b Store) {
	t.Helper()
	ha, hb := a.Heads(), b.Heads()
	if len(ha) != len(hb) {
		t.Fatalf("heads differ: %d logs vs %d", len(ha), len(hb))
	}
	for i := range ha {
		if ha[i] != hb[i] {
			t.Fatalf("head %d differs: %s@%d %v vs %s@%d %v", i, ha[i].Author.Short(), ha[i].Seq, ha[i].Forked,
				hb[i].Author.Short(), hb[i].Seq, hb[i].Forked)
		}
	}
}

// snapshot is every card of a store, for "unchanged" assertions.
func snapshot(t testing.TB, st Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, h := range st.Heads() {
		buf.Write(h.Author.Bytes())
		if h.Forked {
			buf.WriteString("forked")
		}
		st.Scan(h.Author, 1, func(c *card.Card) error { buf.Write(c.Bytes()); return nil })
	}
	return buf.Bytes()
}
