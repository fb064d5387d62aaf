package proto

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// ids makes n distinct valid identities (deterministically).
func ids(t testing.TB, n int) []key.ID {
	t.Helper()
	out := make([]key.ID, n)
	for i := range n {
		sk, err := key.FromSeed(key.DeriveSeed([]byte("proto-test"), string(binary.BigEndian.AppendUint32(nil, uint32(i)))))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = sk.ID()
	}
	return out
}

// cid is the model's card ID at (author, seq) on branch br.
func cid(a key.ID, seq uint64, br byte) card.ID {
	return sha256.Sum256(append(binary.BigEndian.AppendUint64(a.Bytes(), seq), br))
}

// side is one peer of the model: log lengths and a fork branch per author.
type side struct {
	seqs   map[key.ID]uint64
	branch map[key.ID]byte   // card IDs from forkAt on use this branch
	forkAt map[key.ID]uint64 // 0: no divergence
}

func newSide() *side {
	return &side{seqs: map[key.ID]uint64{}, branch: map[key.ID]byte{}, forkAt: map[key.ID]uint64{}}
}

func (s *side) id(a key.ID, seq uint64) card.ID {
	if f := s.forkAt[a]; f != 0 && seq >= f {
		return cid(a, seq, s.branch[a])
	}
	return cid(a, seq, 0)
}

func (s *side) config(initiator bool) Config {
	var heads []Head
	for a, n := range s.seqs {
		heads = append(heads, Head{Author: a, Seq: n, ID: s.id(a, n)})
	}
	return Config{Initiator: initiator, Heads: heads, Lookup: func(a key.ID, seq uint64) (card.ID, bool) {
		if seq == 0 || seq > s.seqs[a] {
			return card.ID{}, false
		}
		return s.id(a, seq), true
	}}
}

type outcome struct {
	pushA, pushB []Push // what A pushes to B and B to A
	witA, witB   []WitnessOut
	rounds       int // Ranges messages in total
	bytes        int // encoded bytes of all Ranges messages

	expA, expB []Push // what A expects from B and B from A
}

// converse runs two machines against each other through Encode/Decode until
// reconciliation ends on both sides.
func converse(t testing.TB, a, b *Machine) outcome {
	t.Helper()
	var o outcome
	type envelope struct {
		toB bool
		m   *Msg
	}
	var q []envelope
	post := func(toB bool, out Output) {
		for _, m := range out.Send {
			b, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			o.bytes += len(b)
			o.rounds++
			d, err := Decode(b)
			if err != nil {
				t.Fatalf("decode own message: %v", err)
			}
			q = append(q, envelope{toB, d})
		}
		if toB {
			o.pushA = append(o.pushA, out.Push...)
			o.witA = append(o.witA, out.Witness...)
			o.expA = append(o.expA, out.Expect...)
		} else {
			o.pushB = append(o.pushB, out.Push...)
			o.witB = append(o.witB, out.Witness...)
			o.expB = append(o.expB, out.Expect...)
		}
	}
	post(true, a.Start())
	for steps := 0; len(q) > 0; steps++ {
		if steps > 100 {
			t.Fatal("no end to the conversation")
		}
		e := q[0]
		q = q[1:]
		var out Output
		var err error
		if e.toB {
			out, err = b.Step(e.m)
			post(false, out)
		} else {
			out, err = a.Step(e.m)
			post(true, out)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !a.recon || !b.recon {
		t.Fatal("reconciliation did not end on both sides")
	}
	return o
}

// apply gives dst what the pushes carry from src.
func apply(t testing.TB, src, dst *side, pushes []Push) {
	t.Helper()
	for _, p := range pushes {
		if p.From != dst.seqs[p.Author]+1 || p.To != src.seqs[p.Author] {
			t.Fatalf("push %s %d..%d onto %d (source has %d)", p.Author.Short(), p.From, p.To, dst.seqs[p.Author], src.seqs[p.Author])
		}
		dst.seqs[p.Author] = p.To
	}
}

func TestReconcileRandomSets(t *testing.T) {
	all := ids(t, 3000)
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 99))
		n := []int{0, 1, 5, 17, 300, 3000}[seed%6]
		a, b := newSide(), newSide()
		for _, id := range all[:n] {
			base := uint64(r.IntN(20))
			switch r.IntN(6) {
			case 0: // only a
				a.seqs[id] = base + 1
			case 1: // only b
				b.seqs[id] = base + 1
			case 2: // a ahead
				a.seqs[id], b.seqs[id] = base+1+uint64(r.IntN(5)), base+1
				if a.seqs[id] == b.seqs[id] {
					a.seqs[id]++
				}
			case 3: // b ahead
				a.seqs[id], b.seqs[id] = base+1, base+2
			default: // in step
				a.seqs[id], b.seqs[id] = base+1, base+1
			}
		}
		o := converse(t, New(a.config(true)), New(b.config(false)))
		if len(o.witA)+len(o.witB) != 0 {
			t.Fatalf("seed %d: witnesses without forks", seed)
		}
		// Each side expects exactly what the other pushes (no forks here).
		samePushes(t, "b expects what a pushes", o.expB, o.pushA)
		samePushes(t, "a expects what b pushes", o.expA, o.pushB)
		apply(t, a, b, o.pushA)
		apply(t, b, a, o.pushB)
		for _, id := range all[:n] {
			if a.seqs[id] != b.seqs[id] {
				t.Fatalf("seed %d: %s at %d vs %d after sync", seed, id.Short(), a.seqs[id], b.seqs[id])
			}
		}
		// And now in step: one round trip, whatever the size.
		o2 := converse(t, New(a.config(true)), New(b.config(false)))
		if o2.rounds != 2 || len(o2.pushA)+len(o2.pushB) != 0 {
			t.Fatalf("seed %d: in-step sync took %d messages, %d pushes", seed, o2.rounds, len(o2.pushA)+len(o2.pushB))
		}
		t.Logf("n=%d: %d messages, %d bytes; in step: %d bytes", n, o.rounds, o.bytes, o2.bytes)
	}
}

// samePushes fails unless got and want hold the same ranges in any order.
func samePushes(t testing.TB, what string, got, want []Push) {
	t.Helper()
	cmp := func(x, y Push) int { return x.Author.Compare(y.Author) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// TestExpectOnlyWantedLogs: the cards a side expects leave out the logs it
// does not take from the peer (their pushes are dropped unread), and count a
// log it holds but does not show the peer from seq 1 (the peer pushes all).
func TestExpectOnlyWantedLogs(t *testing.T) {
	all := ids(t, 3)
	x, y, z := all[0], all[1], all[2]
	a, b := newSide(), newSide()
	a.seqs[x], a.seqs[y], a.seqs[z] = 4, 6, 3
	b.seqs[x], b.seqs[z] = 1, 2
	cb := b.config(false)
	cb.Want = func(id key.ID) bool { return id != y }
	cb.Heads = slices.DeleteFunc(cb.Heads, func(h Head) bool { return h.Author == z }) // z held, not shown
	o := converse(t, New(a.config(true)), New(cb))
	samePushes(t, "b expects", o.expB, []Push{{Author: x, From: 2, To: 4}, {Author: z, From: 1, To: 3}})
	if len(o.expA) != 0 {
		t.Fatalf("a expects %v from a peer that is behind", o.expA)
	}
}

func TestInStepThousandLogsOneRoundTrip(t *testing.T) {
	a, b := newSide(), newSide()
	for i, id := range ids(t, 1000) {
		a.seqs[id], b.seqs[id] = uint64(i%7+1), uint64(i%7+1)
	}
	o := converse(t, New(a.config(true)), New(b.config(false)))
	if o.rounds != 2 || o.bytes > 100 {
		t.Fatalf("in step: %d messages, %d bytes", o.rounds, o.bytes)
	}
}

func TestForkWitnesses(t *testing.T) {
	all := ids(t, 2)
	x, y := all[0], all[1]
	a, b := newSide(), newSide()
	// x: same seq, different card. y: b is behind on a branch of its own.
	a.seqs[x], b.seqs[x] = 5, 5
	b.forkAt[x], b.branch[x] = 5, 1
	a.seqs[y], b.seqs[y] = 9, 4
	b.forkAt[y], b.branch[y] = 3, 1
	ma := New(a.config(true))
	o := converse(t, ma, New(b.config(false)))
	if len(o.pushA)+len(o.pushB) != 0 {
		t.Fatalf("pushed onto a fork: %v %v", o.pushA, o.pushB)
	}
	// a asked b for its card at y@4 and is not done until it arrives.
	if ma.ReconDone() {
		t.Fatal("done while a witness reply is outstanding")
	}
	if _, err := ma.Step(&Msg{T: TDone}); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("peer done before answering: %v", err)
	}
	ma = New(a.config(true))
	converse(t, ma, New(b.config(false)))
	if _, err := ma.Step(&Msg{T: TWitness, Author: y.Bytes(), From: 4, Cards: [][]byte{{1}}}); err != nil || !ma.ReconDone() {
		t.Fatalf("witness reply: %v, done %v", err, ma.ReconDone())
	}
	want := map[WitnessOut]bool{{Author: x, Seq: 5}: true, {Author: y, Seq: 4, Reply: true}: true}
	for _, w := range o.witA {
		if !want[w] {
			t.Fatalf("unexpected witness from a: %+v", w)
		}
		delete(want, w)
	}
	if len(want) != 0 || len(o.witB) != 1 || o.witB[0] != (WitnessOut{Author: x, Seq: 5}) {
		t.Fatalf("witnesses: a %+v, b %+v, missing %v", o.witA, o.witB, want)
	}
	// b answers a witness that asks back with its own card, and stores a's.
	out, err := New(b.config(false)).Step(&Msg{T: TWitness, Author: y.Bytes(), From: 4, Reply: true, Cards: [][]byte{{1}}})
	if err != nil || len(out.Witness) != 1 || out.Witness[0] != (WitnessOut{Author: y, Seq: 4}) || len(out.Received) != 1 {
		t.Fatalf("witness step: %+v %v", out, err)
	}
	// A witness request for a log not shown to the peer, or past the head, is not answered.
	for _, m := range []*Msg{
		{T: TWitness, Author: x.Bytes(), From: 6, Reply: true, Cards: [][]byte{{1}}},
		{T: TWitness, Author: ids(t, 3)[2].Bytes(), From: 1, Reply: true, Cards: [][]byte{{1}}},
	} {
		out, err := New(b.config(false)).Step(m)
		if err != nil || len(out.Witness) != 0 {
			t.Fatalf("answered a witness request it should not: %+v %v", out, err)
		}
	}
}

func TestForkedFlagSendsProof(t *testing.T) {
	x := ids(t, 1)[0]
	a, b := newSide(), newSide()
	a.seqs[x], b.seqs[x] = 3, 3
	ca := a.config(true)
	ca.Heads[0].Forked = true
	o := Output{}
	ma, mb := New(ca), New(b.config(false))
	out := ma.Start()
	for len(out.Send) > 0 {
		m := out.Send[0]
		if out, _ = mb.Step(m); len(out.Send) == 0 {
			break
		}
		o.merge(out)
		out, _ = ma.Step(out.Send[0])
		o.merge(out)
	}
	if len(o.Forks) != 1 || o.Forks[0] != x {
		t.Fatalf("fork proof not sent: %+v", o)
	}
}

func TestStepRefusesOutOfTurnAndAfterDone(t *testing.T) {
	m := New(Config{Initiator: true})
	if _, err := m.Step(&Msg{T: TRanges, V: Version}); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("ranges before start: %v", err)
	}
	m.Start()
	if _, err := m.Step(&Msg{T: TDone}); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("done before reconciliation: %v", err)
	}
	if _, err := m.Step(&Msg{T: TRanges, V: Version}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Step(&Msg{T: TDone}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Step(&Msg{T: TCards, Author: ids(t, 1)[0].Bytes(), From: 1, Cards: [][]byte{{1}}}); !errors.Is(err, ErrUnexpected) {
		t.Fatalf("cards after done: %v", err)
	}
}

func TestWantFiltersCards(t *testing.T) {
	x := ids(t, 1)[0]
	m := New(Config{Want: func(key.ID) bool { return false }})
	out, err := m.Step(&Msg{T: TCards, Author: x.Bytes(), From: 1, Cards: [][]byte{{1}}})
	if err != nil || len(out.Received) != 0 {
		t.Fatalf("unwanted cards passed on: %+v %v", out, err)
	}
}

// A Want names seqs of a log the sender holds as stubs: the machine answers
// with card-only pushes of those seqs for logs it shows, up to their head,
// and ignores the rest; malformed Wants are refused.
func TestWantMessage(t *testing.T) {
	x := ids(t, 2)
	m := New(Config{Heads: []Head{{Author: x[0], Seq: 5}}})
	out, err := m.Step(&Msg{T: TWant, Author: x[0].Bytes(), Seqs: []uint64{2, 4, 6}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Push{{Author: x[0], From: 2, To: 2, Only: true}, {Author: x[0], From: 4, To: 4, Only: true}}
	if len(out.Push) != len(want) || out.Push[0] != want[0] || out.Push[1] != want[1] {
		t.Fatalf("pushes %+v", out.Push)
	}
	if out, err := m.Step(&Msg{T: TWant, Author: x[1].Bytes(), Seqs: []uint64{1}}); err != nil || len(out.Push) != 0 {
		t.Fatalf("a log not shown: %+v %v", out, err)
	}
	for name, bad := range map[string]*Msg{
		"no seqs":        {T: TWant, Author: x[0].Bytes()},
		"seq 0":          {T: TWant, Author: x[0].Bytes(), Seqs: []uint64{0}},
		"not increasing": {T: TWant, Author: x[0].Bytes(), Seqs: []uint64{3, 3}},
		"too many":       {T: TWant, Author: x[0].Bytes(), Seqs: seqsUpTo(MaxWant + 1)},
		"with cards":     {T: TWant, Author: x[0].Bytes(), Seqs: []uint64{1}, Cards: [][]byte{{1}}},
		"seqs on cards":  {T: TCards, Author: x[0].Bytes(), From: 1, Cards: [][]byte{{1}}, Seqs: []uint64{1}},
		"no author":      {T: TWant, Seqs: []uint64{1}},
	} {
		b, err := canon.Marshal(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A session answers at most MaxWanted seqs.
	big := New(Config{Heads: []Head{{Author: x[0], Seq: 1 << 20}}})
	n := 0
	for i := uint64(0); i < 2*MaxWanted/MaxWant; i++ {
		out, err := big.Step(&Msg{T: TWant, Author: x[0].Bytes(), Seqs: seqsFrom(i*MaxWant+1, MaxWant)})
		if err != nil {
			t.Fatal(err)
		}
		n += len(out.Push)
	}
	if n != MaxWanted {
		t.Fatalf("answered %d seqs, bound %d", n, MaxWanted)
	}
}

func seqsUpTo(n int) []uint64 { return seqsFrom(1, n) }

func seqsFrom(first uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = first + uint64(i)
	}
	return out
}
