package log_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// stubSource is an author's log of n notes in a store of its own, for
// other stores to receive with some cards withheld.
func stubSource(t *testing.T, n int) (*key.Secret, []*card.Card) {
	t.Helper()
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("stub"), "owner"))
	src := open(t, filepath.Join(t.TempDir(), "src"))
	var cards []*card.Card
	for i := range n {
		c, err := src.Append(sk, note("card", int64(1700000000+i)))
		if err != nil {
			t.Fatal(err)
		}
		cards = append(cards, c)
	}
	return sk, cards
}

func stubOf(c *card.Card) []byte { id := c.ID(); return bytes.Clone(id[:]) }

// importAll is ImportBatch that fails the test on a commit error and
// returns the per-index refusals.
func importAll(t *testing.T, st *sublog.Store, raw ...[]byte) sublog.ImportResult {
	t.Helper()
	res, err := st.ImportBatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A withheld card travels as its ID: the store keeps it as a stub, proven
// by the next card's signed prev, and the chain goes on past it.
func TestStubKeepsTheChain(t *testing.T) {
	sk, c := stubSource(t, 3)
	st := open(t, t.TempDir())
	res := importAll(t, st, c[0].Bytes(), stubOf(c[1]), c[2].Bytes())
	if len(res.Errs) != 0 || len(res.Accepted) != 2 || len(res.Stubs) != 1 {
		t.Fatalf("accepted %d, stubs %d, errs %v", len(res.Accepted), len(res.Stubs), res.Errs)
	}
	if h, _ := st.Head(sk.ID()); h.Seq != 3 || h.ID != c[2].ID() {
		t.Fatalf("head %d %s", h.Seq, h.ID)
	}
	if _, err := st.Get(sk.ID(), 2); !errors.Is(err, sublog.ErrWithheld) {
		t.Fatalf("Get of the stub's seq: %v", err)
	}
	stubs, err := st.Stubs(sk.ID(), 1)
	if err != nil || len(stubs) != 1 || stubs[0].Seq != 2 || stubs[0].ID != c[1].ID() || !stubs[0].Proven {
		t.Fatalf("stubs %+v %v", stubs, err)
	}
	var seqs []uint64
	st.Scan(sk.ID(), 1, func(c *card.Card) error { seqs = append(seqs, c.Seq()); return nil })
	if len(seqs) != 2 || seqs[0] != 1 || seqs[1] != 3 {
		t.Fatalf("Scan saw %v: a stub is never a card", seqs)
	}
	if n, _ := st.Count(); n != 2 {
		t.Fatalf("Count %d, want 2 cards", n)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil || !rep.OK() || rep.Withheld != 1 || rep.Proven != 1 || rep.Cards != 2 {
		t.Fatalf("verify %+v %v", rep, err)
	}
	if _, probs, err := st.CheckChains(); err != nil || len(probs) != 0 {
		t.Fatalf("check chains: %v %v", probs, err)
	}
	if _, ok, _ := st.StubByID(c[1].ID()); !ok {
		t.Fatal("StubByID does not find the stub")
	}
	// The same again is harmless.
	before := snapshot(t, st)
	importAll(t, st, c[0].Bytes(), stubOf(c[1]), c[2].Bytes())
	if snapshot(t, st) != before {
		t.Fatal("a replay changed the store")
	}
}

// A run of stubs keeps only the last ID as proven; the earlier ones are
// held by position (their IDs would be proven only by cards not held).
func TestStubRunProvesOnlyTheLast(t *testing.T) {
	sk, c := stubSource(t, 4)
	st := open(t, t.TempDir())
	res := importAll(t, st, c[0].Bytes(), stubOf(c[1]), stubOf(c[2]), c[3].Bytes())
	if len(res.Errs) != 0 {
		t.Fatal(res.Errs)
	}
	stubs, _ := st.Stubs(sk.ID(), 1)
	if len(stubs) != 2 || stubs[0].Proven || !stubs[0].ID.IsZero() || !stubs[1].Proven || stubs[1].ID != c[2].ID() {
		t.Fatalf("stubs %+v", stubs)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil || !rep.OK() || rep.Withheld != 2 || rep.Proven != 1 {
		t.Fatalf("verify %+v %v", rep, err)
	}
	// The card of seq 3 arrives (granted later): it takes its stub's place
	// because it is the card seq 4 names, and it proves seq 2's stub.
	if _, err := st.Import(c[2].Bytes()); err != nil {
		t.Fatal(err)
	}
	stubs, _ = st.Stubs(sk.ID(), 1)
	if len(stubs) != 1 || stubs[0].Seq != 2 || !stubs[0].Proven || stubs[0].ID != c[1].ID() {
		t.Fatalf("after the card of seq 3: stubs %+v", stubs)
	}
	if got, err := st.Get(sk.ID(), 3); err != nil || got.ID() != c[2].ID() {
		t.Fatalf("Get 3: %v", err)
	}
	if _, err := st.Import(c[1].Bytes()); err != nil {
		t.Fatal(err)
	}
	if stubs, _ := st.Stubs(sk.ID(), 1); len(stubs) != 0 {
		t.Fatalf("stubs left: %+v", stubs)
	}
	if h, _ := st.Head(sk.ID()); h.Seq != 4 || h.ID != c[3].ID() {
		t.Fatalf("replacing moved the head: %d", h.Seq)
	}
	rep, err = st.Verify(nil, nil)
	if err != nil || !rep.OK() || rep.Withheld != 0 || rep.Cards != 4 {
		t.Fatalf("verify %+v %v", rep, err)
	}
}

// A stub no later card proves is not stored: the receiver learns what it
// does not receive, and keeps nothing it cannot check.
func TestStubAloneIsNotStored(t *testing.T) {
	sk, c := stubSource(t, 2)
	st := open(t, t.TempDir())
	res := importAll(t, st, c[0].Bytes(), stubOf(c[1]))
	if !errors.Is(res.Errs[1], sublog.ErrStubUnproven) || len(res.Accepted) != 1 {
		t.Fatalf("errs %v", res.Errs)
	}
	if _, err := st.Import(stubOf(c[1])); !errors.Is(err, sublog.ErrStubUnproven) {
		t.Fatalf("Import of a stub: %v", err)
	}
	if stubs, _ := st.Stubs(sk.ID(), 1); len(stubs) != 0 {
		t.Fatalf("stored %+v", stubs)
	}
	if h, _ := st.Head(sk.ID()); h.Seq != 1 {
		t.Fatalf("head %d", h.Seq)
	}
}

// The attacks on stubs, each with real bytes, each refused with a clear
// error and the store unchanged.
func TestStubAttacksRefused(t *testing.T) {
	sk, c := stubSource(t, 5)
	forged := bytes.Repeat([]byte{0x5a}, 32)
	cases := []struct {
		name  string
		given [][]byte // stored first
		feed  [][]byte
		want  error
		say   string
	}{
		{"forged ID before its card", [][]byte{c[0].Bytes()}, [][]byte{forged, c[2].Bytes()},
			sublog.ErrStubContradicted, "(signed) names"},
		{"contradicted by the next card's prev", [][]byte{c[0].Bytes()}, [][]byte{stubOf(c[0]), c[2].Bytes()},
			sublog.ErrStubContradicted, "that ID is the card at seq 1"},
		{"replayed at another seq", [][]byte{c[0].Bytes(), stubOf(c[1]), c[2].Bytes()}, [][]byte{stubOf(c[1]), c[4].Bytes()},
			sublog.ErrStubContradicted, "replayed at another seq"},
		{"forged ID at a held seq", [][]byte{c[0].Bytes(), stubOf(c[1]), c[2].Bytes()}, [][]byte{forged, stubOf(c[3]), c[4].Bytes()},
			sublog.ErrStubConflict, "this store holds"},
		{"stub over a stored card", [][]byte{c[0].Bytes(), c[1].Bytes(), c[2].Bytes()}, [][]byte{stubOf(c[0]), stubOf(c[3]), c[4].Bytes()},
			sublog.ErrStubConflict, "this store holds"},
		{"stubs before seq 1", nil, [][]byte{forged, c[0].Bytes()}, sublog.ErrStubContradicted, "before seq 1"},
		{"stubs leaving a gap", [][]byte{c[0].Bytes()}, [][]byte{stubOf(c[3]), c[4].Bytes()}, sublog.ErrGap, "after seq 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t, t.TempDir())
			if len(tc.given) > 0 {
				if res := importAll(t, st, tc.given...); len(res.Errs) != 0 {
					t.Fatal(res.Errs)
				}
			}
			before := snapshot(t, st)
			res := importAll(t, st, tc.feed...)
			last := res.Errs[len(tc.feed)-1]
			if !errors.Is(last, tc.want) || !strings.Contains(last.Error(), tc.say) {
				t.Fatalf("refused as %v, want %v (%q)", last, tc.want, tc.say)
			}
			for i := range tc.feed {
				if res.Errs[i] == nil {
					t.Fatalf("element %d accepted", i)
				}
			}
			if len(res.Accepted) != 0 || snapshot(t, st) != before {
				t.Fatal("the store changed")
			}
			if rep, err := st.Verify(nil, nil); err != nil || !rep.OK() {
				t.Fatalf("verify %+v %v", rep, err)
			}
		})
	}
	_ = sk
}

// A real card at a stub's seq replaces it only if it is the card the next
// card names; another card the author signed there is refused (a stub is
// no evidence of a fork), and two signed cards at one seq are a fork as
// ever.
func TestStubReplacedOnlyByItsCard(t *testing.T) {
	sk, c := stubSource(t, 3)
	st := open(t, t.TempDir())
	importAll(t, st, c[0].Bytes(), stubOf(c[1]), c[2].Bytes())
	other, err := card.Sign(sk, 2, c[0].ID(), note("another card at seq 2", 1), st.Caps())
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, st)
	if _, err := st.Import(other.Bytes()); !errors.Is(err, sublog.ErrBadChain) || !strings.Contains(err.Error(), "next card's signed prev names") {
		t.Fatalf("another card at the stub's seq: %v", err)
	}
	if res := importAll(t, st, other.Bytes()); !errors.Is(res.Errs[0], sublog.ErrBadChain) {
		t.Fatalf("batch: %v", res.Errs)
	}
	if snapshot(t, st) != before {
		t.Fatal("the store changed")
	}
	// Another signed card at seq 3 (after a stub) is a fork, kept as proof.
	fork3, err := card.Sign(sk, 3, c[1].ID(), note("fork", 2), st.Caps())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(fork3.Bytes()); !errors.Is(err, sublog.ErrFork) {
		t.Fatalf("fork across a stub: %v", err)
	}
	if h, _ := st.Head(sk.ID()); !h.Forked {
		t.Fatal("not forked")
	}
}

// FuzzStubRun feeds arbitrary runs of real cards and 32-byte stubs to a
// store holding a log with a stub: whatever it accepts, the chains still
// check, the head is a real card, and Verify passes.
func FuzzStubRun(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4}, []byte{})
	f.Add([]byte{3, 4}, bytes.Repeat([]byte{7}, 32))
	f.Add([]byte{9, 9, 3, 1}, []byte{})
	f.Add([]byte{1, 2, 9, 4}, bytes.Repeat([]byte{0}, 32))
	f.Fuzz(func(t *testing.T, plan, junk []byte) {
		if len(plan) > 12 {
			return
		}
		sk, c := fuzzSource(f, t)
		st := open(t, t.TempDir())
		importAll(t, st, c[0].Bytes(), stubOf(c[1]), c[2].Bytes())
		var feed [][]byte
		for _, p := range plan {
			switch k := int(p % 12); {
			case k < len(c):
				feed = append(feed, c[k].Bytes())
			case k < 2*len(c):
				feed = append(feed, stubOf(c[k-len(c)]))
			case k == 10 && len(junk) >= 32:
				feed = append(feed, junk[:32])
			default:
				feed = append(feed, bytes.Repeat([]byte{p}, 32))
			}
		}
		if len(feed) == 0 {
			return
		}
		if _, err := st.ImportBatch(feed); err != nil {
			t.Fatal(err)
		}
		if _, probs, err := st.CheckChains(); err != nil || len(probs) != 0 {
			t.Fatalf("chains: %v %v", probs, err)
		}
		rep, err := st.Verify(nil, nil)
		if err != nil || !rep.OK() {
			t.Fatalf("verify %+v %v", rep, err)
		}
		h, _ := st.Head(sk.ID())
		if got, err := st.Get(sk.ID(), h.Seq); err != nil || got.ID() != h.ID {
			t.Fatalf("head %d is no card: %v", h.Seq, err)
		}
	})
}

var fuzzChain []*card.Card

// fuzzSource is the fuzz target's source log (5 cards), signed once.
func fuzzSource(f *testing.F, t *testing.T) (*key.Secret, []*card.Card) {
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("stub"), "owner"))
	if fuzzChain == nil {
		_, fuzzChain = stubSource(t, 5)
	}
	return sk, fuzzChain
}
