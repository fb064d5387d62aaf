package sync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/proto"
	"github.com/sublog/sublog/sync/transport"
)

// evilResponder authenticates as sk, ends reconciliation at once, sends the
// given messages and Done, and returns what it read.
func evilResponder(t *testing.T, conn transport.Conn, sk *key.Secret, msgs []*proto.Msg) {
	evilScript(t, conn, sk, func(w io.Writer) {
		for _, m := range msgs {
			proto.WriteMsg(w, m)
		}
	})
}

// evilScript is evilResponder with a free hand after "all in step".
func evilScript(t *testing.T, conn transport.Conn, sk *key.Secret, script func(w io.Writer)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := channel.Server(ctx, conn, channel.Config{Secret: sk, Rand: newRand(66)})
	if err != nil {
		t.Error(err)
		return
	}
	mux, err := transport.Mux(ch, false)
	if err != nil {
		t.Error(err)
		return
	}
	defer mux.Close()
	st, err := mux.AcceptStreamWithContext(ctx)
	if err != nil {
		t.Error(err)
		return
	}
	r := bufio.NewReader(st)
	if k, err := r.ReadByte(); err != nil || k != StreamSync { // the stream's kind
		t.Errorf("stream kind %d, %v", k, err)
		return
	}
	if _, _, err := proto.ReadMsg(r); err != nil { // the initiator's fingerprint
		t.Error(err)
		return
	}
	proto.WriteMsg(st, &proto.Msg{T: proto.TRanges, V: proto.Version}) // "all in step"
	script(st)
	proto.WriteMsg(st, &proto.Msg{T: proto.TDone})
	for {
		if m, _, err := proto.ReadMsg(r); err != nil || m.T == proto.TDone {
			return
		}
	}
}

// attack runs an honest initiator over st against an evil responder.
func attack(t *testing.T, st Store, honest, evil *key.Secret, msgs []*proto.Msg) (Stats, error) {
	t.Helper()
	ca, cb := transport.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); evilResponder(t, cb, evil, msgs); cb.Close() }()
	stats, err := Run(context.Background(), ca, true, st, Options{Secret: honest, Rand: newRand(7), Policy: Everyone{}, Timeout: 5 * time.Second})
	<-done
	return stats, err
}

func cardsMsg(a key.ID, from uint64, cs ...*card.Card) *proto.Msg {
	m := &proto.Msg{T: proto.TCards, Author: a.Bytes(), From: from}
	for _, c := range cs {
		m.Cards = append(m.Cards, c.Bytes())
	}
	return m
}

func TestAttacksLeaveHonestStoreUnchanged(t *testing.T) {
	honest, mallory, alice := secret(t, "honest"), secret(t, "mallory"), secret(t, "alice")
	base := newStore()
	appendN(t, base, alice, 5)
	appendN(t, base, mallory, 3)
	a5, _ := base.Get(alice.ID(), 5)
	a2, _ := base.Get(alice.ID(), 2)
	next := signNext(t, base, alice, "six") // a valid alice@6, for tampering

	badSig := append([]byte(nil), next.Bytes()...)
	badSig[len(badSig)-1] ^= 1
	// alice@6 whose prev is not alice@5 (chained onto a made-up history).
	offChain, err := card.Sign(alice, 6, card.IDOf([]byte("elsewhere")), card.Draft{Kind: "note", TS: 1}, testCaps)
	if err != nil {
		t.Fatal(err)
	}
	seven, err := card.Sign(alice, 7, next.ID(), card.Draft{Kind: "note", TS: 1}, testCaps)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		msgs  []*proto.Msg
		check func(t *testing.T, st *MemStore, s Stats)
	}{
		{"bad signature", []*proto.Msg{{T: proto.TCards, Author: alice.ID().Bytes(), From: 6, Cards: [][]byte{badSig}}},
			func(t *testing.T, st *MemStore, s Stats) {
				if s.Rejected != 1 || s.Received != 0 {
					t.Fatalf("%+v", s)
				}
			}},
		{"rewound head (old cards as if new)", []*proto.Msg{cardsMsg(alice.ID(), 1, mustGet(t, base, alice.ID(), 1), a2)},
			func(t *testing.T, st *MemStore, s Stats) {
				if s.Received != 0 || s.Rejected != 0 {
					t.Fatalf("%+v", s)
				}
			}},
		{"replayed old card", []*proto.Msg{cardsMsg(alice.ID(), 5, a5), {T: proto.TWitness, Author: alice.ID().Bytes(), From: 2, Cards: [][]byte{a2.Bytes()}}},
			func(t *testing.T, st *MemStore, s Stats) {
				if s.Received != 0 || s.Rejected != 0 || s.Forks != 0 {
					t.Fatalf("%+v", s)
				}
			}},
		{"card of another author in a batch", []*proto.Msg{{T: proto.TCards, Author: mallory.ID().Bytes(), From: 4, Cards: [][]byte{next.Bytes()}}},
			func(t *testing.T, st *MemStore, s Stats) {
				if s.Rejected != 1 || s.Received != 0 {
					t.Fatalf("%+v", s)
				}
			}},
		{"gap", []*proto.Msg{cardsMsg(alice.ID(), 7, seven)},
			func(t *testing.T, st *MemStore, s Stats) {
				if s.Received != 0 {
					t.Fatalf("%+v", s)
				}
			}},
		{"forged fork proof", []*proto.Msg{{T: proto.TFork, Author: alice.ID().Bytes(), Proof: []byte{0xa0}}},
			func(t *testing.T, st *MemStore, s Stats) {
				if _, err := st.ForkProof(alice.ID()); err == nil {
					t.Fatal("a forged proof was kept")
				}
			}},
		{"unknown message", []*proto.Msg{{T: 9}},
			func(t *testing.T, st *MemStore, s Stats) {}},
		{"off-chain card", []*proto.Msg{cardsMsg(alice.ID(), 6, offChain)},
			func(t *testing.T, st *MemStore, s Stats) {
				if s.Received != 0 || s.Rejected != 1 {
					t.Fatalf("%+v", s)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore()
			copyStore(t, base, st)
			before := snapshot(t, st)
			stats, _ := attack(t, st, honest, mallory, tc.msgs)
			after := snapshot(t, st)
			if !bytes.Equal(before, after) {
				t.Fatal("honest store changed")
			}
			tc.check(t, st, stats)
		})
	}
}

func TestSameSeqDifferentIDBecomesForkProof(t *testing.T) {
	honest, mallory := secret(t, "honest"), secret(t, "mallory")
	st := newStore()
	appendN(t, st, mallory, 4)
	// Mallory signs another card at seq 3 and serves it, and then more.
	c2, _ := st.Get(mallory.ID(), 2)
	other, err := card.Sign(mallory, 3, c2.ID(), card.Draft{Kind: "note", TS: 99, Body: map[string]string{"x": "y"}}, testCaps)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, st)
	stats, err := attack(t, st, honest, mallory, []*proto.Msg{cardsMsg(mallory.ID(), 3, other)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := st.ForkProof(mallory.ID())
	if err != nil || stats.Forks != 1 {
		t.Fatalf("no fork proof: %v %+v", err, stats)
	}
	// The proof verifies offline from its bytes alone.
	if _, err := sublog.DecodeForkProof(p.Encode()); err != nil {
		t.Fatal(err)
	}
	if h, _ := st.Head(mallory.ID()); !h.Forked || h.Seq != 4 {
		t.Fatalf("head %+v", h)
	}
	// The log's cards are unchanged, and it is not extended past the fork.
	if after := snapshot(t, st); !bytes.Equal(bytes.Replace(after, []byte("forked"), nil, 1), before) {
		t.Fatal("chain changed")
	}
	if _, err := st.Import(signNext(t, st, mallory, "more").Bytes()); !errors.Is(err, sublog.ErrForked) {
		t.Fatalf("extended past a fork: %v", err)
	}

	// And the proof travels: a third store learns it by syncing.
	third, carol := newStore(), secret(t, "carol")
	ra, rb := syncPipe(t, node{st, honest, Everyone{}}, node{third, carol, Everyone{}})
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	if _, err := third.ForkProof(mallory.ID()); err != nil {
		t.Fatalf("fork proof did not travel: %v", err)
	}
	// Only the uncontested part of the log travels with it: the third store
	// takes neither branch as honest.
	if h, _ := third.Head(mallory.ID()); !h.Forked || h.Seq != 2 {
		t.Fatalf("third store's head %+v, want seq 2 forked", h)
	}
}

func TestForkDiscoveredBySyncBothSidesGetProof(t *testing.T) {
	alice, bob, mallory := secret(t, "alice"), secret(t, "bob"), secret(t, "mallory")
	a, b := newStore(), newStore()
	appendN(t, a, mallory, 2)
	copyStore(t, a, b)
	// Mallory tells a and b different stories from seq 3 on; b is behind.
	appendN(t, a, mallory, 3)
	c2, _ := b.Get(mallory.ID(), 2)
	other, _ := card.Sign(mallory, 3, c2.ID(), card.Draft{Kind: "note", TS: 5}, testCaps)
	if _, err := b.Import(other.Bytes()); err != nil {
		t.Fatal(err)
	}
	ra, rb := syncPipe(t, node{a, alice, Everyone{}}, node{b, bob, Everyone{}})
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	for name, st := range map[string]Store{"a": a, "b": b} {
		if _, err := st.ForkProof(mallory.ID()); err != nil {
			t.Fatalf("%s has no fork proof", name)
		}
	}
}

func mustGet(t *testing.T, st Store, a key.ID, seq uint64) *card.Card {
	t.Helper()
	c, err := st.Get(a, seq)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func copyStore(t *testing.T, from, to Store) {
	t.Helper()
	for _, h := range from.Heads() {
		from.Scan(h.Author, 1, func(c *card.Card) error {
			if _, err := to.Import(c.Bytes()); err != nil {
				t.Fatal(err)
			}
			return nil
		})
	}
}

func TestOversizedAndEndlessMessagesRefused(t *testing.T) {
	honest, mallory := secret(t, "honest"), secret(t, "mallory")
	scripts := map[string]func(w io.Writer){
		// A length prefix over the 4 MiB limit: refused before any buffering.
		"oversized": func(w io.Writer) { w.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0}) },
		// A message that never ends: a 4 MiB prefix and then endless bytes
		// (the reader holds at most one message).
		"endless": func(w io.Writer) {
			w.Write([]byte{0x00, 0x40, 0x00, 0x00})
			junk := make([]byte, 64<<10)
			for range 80 {
				if _, err := w.Write(junk); err != nil {
					return
				}
			}
		},
	}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			st := newStore()
			appendN(t, st, honest, 3)
			before := snapshot(t, st)
			ca, cb := transport.Pipe()
			done := make(chan struct{})
			go func() { defer close(done); evilScript(t, cb, mallory, script); cb.Close() }()
			_, err := Run(context.Background(), ca, true, st, Options{Secret: honest, Rand: newRand(9), Policy: Everyone{}, Timeout: 5 * time.Second})
			<-done
			if !errors.Is(err, proto.ErrTooLarge) && !errors.Is(err, proto.ErrMalformed) {
				t.Fatalf("session ended with %v", err)
			}
			t.Log(err)
			if !bytes.Equal(before, snapshot(t, st)) {
				t.Fatal("store changed")
			}
		})
	}
}

type protoMsgCards struct {
	a     key.ID
	from  uint64
	cards [][]byte
}

func (p protoMsgCards) msg() *proto.Msg {
	return &proto.Msg{T: proto.TCards, Author: p.a.Bytes(), From: p.from, Cards: p.cards}
}
