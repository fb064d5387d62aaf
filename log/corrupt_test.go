package log

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// These tests damage the database underneath the store, as a bad disk
// would, and check that Verify and reads report corruption, not panic.

func seeded(t *testing.T) (*Store, *key.Secret, []*card.Card) {
	t.Helper()
	st, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("corrupt"), "a"))
	var cs []*card.Card
	for i := range 5 {
		c, err := st.Append(sk, card.Draft{Kind: card.KindNote, TS: int64(i), Body: map[string]any{"i": i}})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return st, sk, cs
}

func TestVerifyFindsFlippedBit(t *testing.T) {
	st, sk, cs := seeded(t)
	b := append([]byte(nil), cs[2].Bytes()...)
	b[len(b)-10] ^= 0x40 // inside the signature
	if err := st.db.Set(cardKey(sk.ID(), 3), b, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// seq 3 is bad; seq 4 now names a prev that is not seq 3's hash; the head
	// still matches seq 5.
	if len(rep.Problems) != 2 || rep.Problems[0].Seq != 3 || !errors.Is(rep.Problems[0].Err, ErrCorrupt) ||
		rep.Problems[1].Seq != 4 || !errors.Is(rep.Problems[1].Err, ErrBadChain) {
		t.Fatalf("%+v", rep.Problems)
	}
}

func TestVerifyFindsMissingCardAndBadIndex(t *testing.T) {
	st, sk, cs := seeded(t)
	if err := st.db.Delete(cardKey(sk.ID(), 2), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := st.db.Set(indexKey(cs[4].ID()), cardKey(sk.ID(), 1)[1:], pebble.Sync); err != nil {
		t.Fatal(err)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 2 || !errors.Is(rep.Problems[0].Err, ErrGap) || !errors.Is(rep.Problems[1].Err, ErrCorrupt) {
		t.Fatalf("%+v", rep.Problems)
	}
	if _, err := st.GetByID(cs[4].ID()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetByID through a bad index: %v", err)
	}
}

func TestGarbageValueIsCorruptNotPanic(t *testing.T) {
	st, sk, _ := seeded(t)
	if err := st.db.Set(cardKey(sk.ID(), 1), []byte{0xd2, 0x84, 0xff}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(sk.ID(), 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get: %v", err)
	}
	// Readers skip the damaged card and name it instead of failing whole.
	n := 0
	if err := st.All(func(*card.Card) error { n++; return nil }); err != nil || n != 4 {
		t.Fatalf("All: %v after %d cards, want the 4 readable ones", err, n)
	}
	if u := st.Unreadable(); len(u) != 1 || u[0].Seq != 1 || !errors.Is(u[0].Err, ErrCorrupt) {
		t.Fatalf("Unreadable: %+v", u)
	}
}

// A card that is in the database but not yet durable (its batch has not been
// synced, so the store has not advanced the durable head) must be invisible
// to readers: nothing is served that a crash could take back.
func TestUndurableCardIsInvisible(t *testing.T) {
	st, sk, _ := seeded(t)
	next, err := card.Sign(sk, 6, st.durOf(sk.ID()).id, card.Draft{Kind: card.KindNote, TS: 9}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Pebble makes a batch visible before its WAL sync; simulate that moment
	// (enqueue has advanced the log's tip, the sync has not yet returned).
	st.mu.Lock()
	e := st.heads[sk.ID().Array()]
	e.tip = head{seq: next.Seq(), id: next.ID()}
	st.heads[sk.ID().Array()] = e
	st.mu.Unlock()
	for _, p := range cardSets(next) {
		if p.k[0] == pfxCard || p.k[0] == pfxIndex {
			if err := st.db.Set(p.k, p.v, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := st.Get(sk.ID(), 6); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := st.GetByID(next.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetByID: %v", err)
	}
	n := 0
	if err := st.Scan(sk.ID(), 1, func(*card.Card) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("Scan saw %d cards: %v", n, err)
	}
	n = 0
	if err := st.All(func(*card.Card) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("All saw %d cards: %v", n, err)
	}
	if h, _ := st.Head(sk.ID()); h.Seq != 5 {
		t.Fatalf("head %d", h.Seq)
	}
	// The card and its index entry are both there underneath; Verify looks
	// at what readers see and finds nothing wrong.
	if rep, err := st.Verify(nil, nil); err != nil || !rep.OK() || rep.Cards != 5 {
		t.Fatalf("Verify: %v %+v", err, rep)
	}
}

// Index damage that the per-card lookups of old could not see, or that the
// set digest must not miss: each is planted in the database and must be
// named, once, by Verify of the whole store and (for the card-side damage)
// by Verify of the one log.
func TestVerifyIndexDamage(t *testing.T) {
	other, _ := key.FromSeed(key.DeriveSeed([]byte("corrupt"), "nobody"))
	cases := []struct {
		name  string
		plant func(t *testing.T, st *Store, sk *key.Secret, cs []*card.Card)
		want  string
		one   bool // also found when verifying only sk's log
	}{
		{"missing entry", func(t *testing.T, st *Store, sk *key.Secret, cs []*card.Card) {
			must(t, st.db.Delete(indexKey(cs[1].ID()), pebble.Sync))
		}, "no index entry", true},
		{"entry points to another card", func(t *testing.T, st *Store, sk *key.Secret, cs []*card.Card) {
			must(t, st.db.Set(indexKey(cs[3].ID()), cardKey(sk.ID(), 2)[1:], pebble.Sync))
		}, "points elsewhere", true},
		{"entry for a card that does not exist", func(t *testing.T, st *Store, sk *key.Secret, cs []*card.Card) {
			var id card.ID
			id[0] = 7
			must(t, st.db.Set(indexKey(id), cardKey(sk.ID(), 3)[1:], pebble.Sync))
		}, "which holds", false},
		{"entry naming a log that is not there", func(t *testing.T, st *Store, sk *key.Secret, cs []*card.Card) {
			var id card.ID
			id[0] = 8
			must(t, st.db.Set(indexKey(id), cardKey(other.ID(), 1)[1:], pebble.Sync))
		}, "has no log", false},
		{"malformed entry", func(t *testing.T, st *Store, sk *key.Secret, cs []*card.Card) {
			must(t, st.db.Set([]byte{pfxIndex, 1, 2, 3}, []byte("junk"), pebble.Sync))
		}, "malformed index entry", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, sk, cs := seeded(t)
			tc.plant(t, st, sk, cs)
			rep, err := st.Verify(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != 1 || !errors.Is(rep.Problems[0].Err, ErrCorrupt) || !strings.Contains(rep.Problems[0].Reason, tc.want) {
				t.Fatalf("whole store: %+v", rep.Problems)
			}
			id := sk.ID()
			rep, err = st.Verify(&id, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.one != (len(rep.Problems) == 1) || (tc.one && !strings.Contains(rep.Problems[0].Reason, tc.want)) {
				t.Fatalf("one log: %+v", rep.Problems)
			}
		})
	}
}

func TestVerifyFindsLogWithoutCards(t *testing.T) {
	st, sk, _ := seeded(t)
	for seq := uint64(1); seq <= 5; seq++ {
		must(t, st.db.Delete(cardKey(sk.ID(), seq), pebble.Sync))
	}
	rep, err := st.Verify(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Logs != 1 || !strings.Contains(rep.Problems[0].Reason, "log has no cards") {
		t.Fatalf("%+v", rep)
	}
}

// Verify checks a snapshot: appends that land while it runs are not half
// seen (a card without its index entry, or the reverse), so a healthy store
// under load verifies clean every time.
func TestVerifyWhileAppending(t *testing.T) {
	st, _, _ := seeded(t)
	stop := make(chan struct{})
	done := make(chan error, 4)
	for w := range 4 {
		go func() {
			sk, _ := key.FromSeed(key.DeriveSeed([]byte("busy"), fmt.Sprint(w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				if _, err := st.Append(sk, card.Draft{Kind: card.KindNote, TS: int64(i)}); err != nil {
					done <- err
					return
				}
			}
		}()
	}
	for range 20 {
		rep, err := st.Verify(nil, nil)
		if err != nil || !rep.OK() {
			t.Fatalf("%v %+v", err, rep.Problems)
		}
	}
	close(stop)
	for range 4 {
		must(t, <-done)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Damage the set digests alone would miss or under-report: malformed entries
// in pairs, an index entry past its log's head on an idle store, and a log
// whose head record is gone (its cards are past a head of zero).
func TestVerifyDamageBeyondTheDigests(t *testing.T) {
	t.Run("two malformed entries", func(t *testing.T) {
		st, _, _ := seeded(t)
		for i := range 2 {
			must(t, st.db.Set([]byte{pfxIndex, 'x', byte(i)}, []byte("junk"), pebble.Sync))
		}
		rep, err := st.Verify(nil, nil)
		if err != nil || len(rep.Problems) != 2 || !strings.Contains(rep.Problems[1].Reason, "malformed index entry") {
			t.Fatalf("%v %+v", err, rep.Problems)
		}
	})
	t.Run("entry past the head", func(t *testing.T) {
		st, sk, _ := seeded(t)
		var id card.ID
		id[0] = 7
		must(t, st.db.Set(indexKey(id), cardKey(sk.ID(), 99)[1:], pebble.Sync))
		rep, err := st.Verify(nil, nil)
		if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Reason, "past its log's head") {
			t.Fatalf("%v %+v", err, rep.Problems)
		}
	})
	t.Run("card past the head", func(t *testing.T) {
		st, sk, _ := seeded(t)
		next, err := card.Sign(sk, 6, st.durOf(sk.ID()).id, card.Draft{Kind: card.KindNote, TS: 9}, nil)
		must(t, err)
		for _, p := range cardSets(next)[:2] { // the card and its index entry, not the head
			must(t, st.db.Set(p.k, p.v, pebble.Sync))
		}
		rep, err := st.Verify(nil, nil)
		if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Seq != 6 || !strings.Contains(rep.Problems[0].Reason, "past its log's head (seq 5)") {
			t.Fatalf("%v %+v", err, rep.Problems)
		}
	})
	t.Run("lost head record", func(t *testing.T) {
		dir := t.TempDir()
		st, err := Open(dir, Options{})
		must(t, err)
		sk, _ := key.FromSeed(key.DeriveSeed([]byte("corrupt"), "a"))
		for i := range 5 {
			_, err := st.Append(sk, card.Draft{Kind: card.KindNote, TS: int64(i)})
			must(t, err)
		}
		must(t, st.db.Delete(headKey(sk.ID()), pebble.Sync))
		must(t, st.Close())
		st, err = Open(dir, Options{})
		must(t, err)
		defer st.Close()
		rep, err := st.Verify(nil, nil)
		if err != nil || len(rep.Problems) != 5 || !strings.Contains(rep.Problems[0].Reason, "no head record") {
			t.Fatalf("%v %+v", err, rep)
		}
	})
}

// A damaged fork proof does not keep the store from opening: the author
// stays forked where its log ends, Verify names the damage, and the other
// readers leave the proof out.
func TestDamagedForkProof(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, Options{})
	must(t, err)
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("corrupt"), "forker"))
	var cs []*card.Card
	for i := range 3 {
		c, err := st.Append(sk, card.Draft{Kind: card.KindNote, TS: int64(i)})
		must(t, err)
		cs = append(cs, c)
	}
	other, err := card.Sign(sk, 2, cs[0].ID(), card.Draft{Kind: card.KindNote, TS: 99}, nil)
	must(t, err)
	if _, err := st.Import(other.Bytes()); !errors.Is(err, ErrFork) {
		t.Fatalf("fork: %v", err)
	}
	v, closer, err := st.db.Get(forkKey(sk.ID()))
	must(t, err)
	bad := append([]byte(nil), v...)
	closer.Close()
	bad[len(bad)-5] ^= 0x10 // inside the second card's signature
	must(t, st.db.Set(forkKey(sk.ID()), bad, pebble.Sync))
	must(t, st.Close())

	st, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("a damaged fork proof keeps the store shut: %v", err)
	}
	defer st.Close()
	if _, err := st.Append(sk, card.Draft{Kind: card.KindNote, TS: 5}); !errors.Is(err, ErrForked) {
		t.Fatalf("append past a (damaged) fork: %v", err)
	}
	if ps, err := st.ForkProofs(); err != nil || len(ps) != 0 {
		t.Fatalf("ForkProofs: %d %v", len(ps), err)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Author != sk.ID() || !strings.Contains(rep.Problems[0].Reason, "fork proof") {
		t.Fatalf("%v %+v", err, rep.Problems)
	}
}

// A damaged head record does not keep the store from opening: the head is
// rebuilt from the log's cards, Verify says so, and the next append writes a
// good record again.
func TestDamagedHeadRecordIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, Options{})
	must(t, err)
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("corrupt"), "a"))
	var last *card.Card
	for i := range 5 {
		last, err = st.Append(sk, card.Draft{Kind: card.KindNote, TS: int64(i)})
		must(t, err)
	}
	must(t, st.db.Set(headKey(sk.ID()), []byte{1, 2, 3}, pebble.Sync))
	must(t, st.Close())

	st, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("a damaged head record keeps the store shut: %v", err)
	}
	if h, _ := st.Head(sk.ID()); h.Seq != 5 || h.ID != last.ID() {
		t.Fatalf("rebuilt head %+v", h)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Reason, "rebuilt from its cards (seq 5)") {
		t.Fatalf("%v %+v", err, rep.Problems)
	}
	if c, err := st.Append(sk, card.Draft{Kind: card.KindNote, TS: 9}); err != nil || c.Seq() != 6 {
		t.Fatalf("append after the rebuild: %v", err)
	}
	must(t, st.Close())
	st, err = Open(dir, Options{})
	must(t, err)
	defer st.Close()
	if rep, err := st.Verify(nil, nil); err != nil || !rep.OK() || rep.Cards != 6 {
		t.Fatalf("after the next append: %v %+v", err, rep)
	}
}

func TestMalformedHeadKeyIsReported(t *testing.T) {
	dir := t.TempDir()
	st2, err := Open(dir, Options{})
	must(t, err)
	must(t, st2.db.Set([]byte{pfxHead, 1, 2, 3}, []byte("junk"), pebble.Sync))
	must(t, st2.Close())
	st2, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("a malformed head key keeps the store shut: %v", err)
	}
	defer st2.Close()
	rep, err := st2.Verify(nil, nil)
	if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Reason, "no identity") {
		t.Fatalf("%v %+v", err, rep.Problems)
	}
}
