package log_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"

	"github.com/sublog/sublog/golden"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func open(t testing.TB, dir string) *sublog.Store {
	t.Helper()
	st, err := sublog.Open(dir, sublog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func note(msg string, ts int64) card.Draft {
	return card.Draft{Kind: card.KindNote, TS: ts, Body: map[string]any{"msg": msg}}
}

// snapshot is everything observable in a store: heads, every card's bytes
// and every fork proof.
func snapshot(t *testing.T, st *sublog.Store) string {
	t.Helper()
	var b bytes.Buffer
	for _, h := range st.Heads() {
		fmt.Fprintf(&b, "head %s %d %s %v\n", h.Author, h.Seq, h.ID, h.Forked)
	}
	if err := st.ScanRaw(func(a key.ID, seq uint64, raw []byte) error {
		fmt.Fprintf(&b, "card %s %d %x\n", a, seq, raw)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ps, err := st.ForkProofs()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		fmt.Fprintf(&b, "fork %x\n", p.Encode())
	}
	stubs, err := st.AllStubs()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stubs {
		fmt.Fprintf(&b, "stub %s %d %s %v\n", s.Author, s.Seq, s.ID, s.Proven)
	}
	return b.String()
}

func TestAppendChainsAndReads(t *testing.T) {
	st := open(t, t.TempDir())
	sk := golden.Fixture("alice")
	var ids []card.ID
	for i := range 5 {
		c, err := st.Append(sk, note(fmt.Sprint("n", i), golden.BaseTS+int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		if c.Seq() != uint64(i+1) {
			t.Fatalf("seq %d, want %d", c.Seq(), i+1)
		}
		if p, ok := c.Prev(); i > 0 && (!ok || p != ids[i-1]) {
			t.Fatalf("card %d does not chain to %s", i+1, ids[i-1])
		}
		ids = append(ids, c.ID())
	}
	h, ok := st.Head(sk.ID())
	if !ok || h.Seq != 5 || h.ID != ids[4] {
		t.Fatalf("head %+v", h)
	}
	for i, id := range ids {
		c, err := st.GetByID(id)
		if err != nil || c.Seq() != uint64(i+1) {
			t.Fatalf("GetByID %s: %v", id, err)
		}
		g, err := st.Get(sk.ID(), uint64(i+1))
		if err != nil || g.ID() != id {
			t.Fatalf("Get %d: %v", i+1, err)
		}
	}
	if _, err := st.Get(sk.ID(), 6); !errors.Is(err, sublog.ErrNotFound) {
		t.Fatalf("Get beyond head: %v", err)
	}
	if _, err := st.GetByID(card.ID{1}); !errors.Is(err, sublog.ErrNotFound) {
		t.Fatalf("GetByID unknown: %v", err)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil || !rep.OK() || rep.Cards != 5 || rep.Logs != 1 {
		t.Fatalf("verify %+v %v", rep, err)
	}
}

func TestHeadsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	st, err := sublog.Open(dir, sublog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alice", "bob", "carol"} {
		for i := range 3 {
			if _, err := st.Append(golden.Fixture(n), note(n, int64(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := st.Heads()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2 := open(t, dir)
	after := st2.Heads()
	if fmt.Sprint(before) != fmt.Sprint(after) || len(after) != 3 {
		t.Fatalf("heads changed across reopen:\n%v\n%v", before, after)
	}
	c, err := st2.Append(golden.Fixture("bob"), note("again", 9))
	if err != nil || c.Seq() != 4 {
		t.Fatalf("append after reopen: %v", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if _, err := sublog.Open(dir, sublog.Options{}); !errors.Is(err, sublog.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func TestImportInChainOrderOnly(t *testing.T) {
	chain, err := golden.Chain()
	if err != nil {
		t.Fatal(err)
	}
	st := open(t, t.TempDir())
	if _, err := st.Import(chain[1].Bytes()); !errors.Is(err, sublog.ErrGap) {
		t.Fatalf("seq 2 first: %v", err)
	}
	for _, c := range chain {
		if _, err := st.Import(c.Bytes()); err != nil {
			t.Fatalf("import %d: %v", c.Seq(), err)
		}
	}
	h, _ := st.Head(chain[0].Author())
	if h.Seq != uint64(len(chain)) {
		t.Fatalf("head %d", h.Seq)
	}
}

// TestRejectionsLeaveStoreUnchanged feeds each negative vector's real bytes
// to a store holding the vector's given cards, and checks the reason and
// that nothing observable changed (a fork adds exactly its proof).
func TestRejectionsLeaveStoreUnchanged(t *testing.T) {
	vs, _, err := golden.LoadDir(filepath.Join("..", "golden", "vectors", "card-reject"))
	if err != nil || len(vs) < 15 {
		t.Fatalf("vectors: %v (%d)", err, len(vs))
	}
	seen := map[string]bool{}
	for _, v := range vs {
		t.Run(v.ID(), func(t *testing.T) {
			_, reason, _ := v.Expect()
			seen[reason] = true
			st := open(t, t.TempDir())
			for i := 1; ; i++ {
				g, err := v.Hex(fmt.Sprintf("given.%d", i))
				if err != nil {
					break
				}
				if _, err := st.Import(g); err != nil {
					t.Fatal(err)
				}
			}
			// Something of our own too, so "unchanged" covers other logs.
			if _, err := st.Append(golden.Fixture("carol"), note("mine", 1)); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, st)
			b, _ := v.Hex("card")
			_, err := st.Import(b)
			if got := golden.Reason(err); got != reason {
				t.Fatalf("reason %q (%v), want %q", got, err, reason)
			}
			after := snapshot(t, st)
			if reason == "fork" {
				if !bytes.HasPrefix([]byte(after), []byte(before[:0])) || after == before {
					t.Fatal("fork stored no proof")
				}
				ps, _ := st.ForkProofs()
				if len(ps) != 1 {
					t.Fatalf("%d proofs", len(ps))
				}
				return
			}
			if before != after {
				t.Fatalf("store changed by a rejected card:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	for _, r := range []string{"bad-signature", "kid-mismatch", "duplicate-key", "indefinite-length", "non-canonical", "too-large", "bad-chain", "gap", "replayed", "fork", "unsupported-cap", "tag"} {
		if !seen[r] {
			t.Errorf("no vector for rejection %q", r)
		}
	}
}

func TestForkStopsTheLogAndProofTravels(t *testing.T) {
	chain, _ := golden.Chain()
	alice := golden.Fixture("alice")
	a := open(t, t.TempDir())
	for _, c := range chain[:3] {
		if _, err := a.Import(c.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	other, err := card.Sign(alice, 2, chain[0].ID(), note("other history", 5), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Import(other.Bytes()); !errors.Is(err, sublog.ErrFork) {
		t.Fatalf("fork: %v", err)
	}
	// Not extended past the fork, by import or by append.
	if _, err := a.Import(chain[3].Bytes()); !errors.Is(err, sublog.ErrForked) {
		t.Fatalf("extend after fork: %v", err)
	}
	if _, err := a.Append(alice, note("x", 1)); !errors.Is(err, sublog.ErrForked) {
		t.Fatalf("append after fork: %v", err)
	}
	p, err := a.ForkProof(alice.ID())
	if err != nil {
		t.Fatal(err)
	}
	// A store that never saw either card verifies the proof offline.
	c := open(t, t.TempDir())
	got, err := c.ImportForkProof(p.Encode())
	if err != nil || got.Author() != alice.ID() || got.Seq() != 2 {
		t.Fatalf("import proof: %v", err)
	}
	if _, err := c.Import(chain[0].Bytes()); err != nil {
		t.Fatalf("cards before the fork are fine: %v", err)
	}
	if _, err := c.Import(chain[1].Bytes()); !errors.Is(err, sublog.ErrForked) {
		t.Fatalf("the contested seq 2 in the third store: %v", err)
	}
	// A tampered proof is refused.
	bad := p.Encode()
	bad[len(bad)-3] ^= 1
	if _, err := sublog.DecodeForkProof(bad); !errors.Is(err, sublog.ErrBadProof) {
		t.Fatalf("tampered proof: %v", err)
	}
}

func TestConcurrentAppendsShareSyncs(t *testing.T) {
	st := open(t, t.TempDir())
	const writers, each = 8, 40
	var wg stdsync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sk := golden.Fixture(fmt.Sprint("w", w%4)) // two writers per log
			for i := range each {
				if _, err := st.Append(sk, note("c", int64(i))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil || !rep.OK() || rep.Cards != writers*each || rep.Logs != 4 {
		t.Fatalf("%+v %v", rep, err)
	}
}

// More writers than the write queue holds, with a committer held to one
// write per sync so that the queue fills: every append still completes (a
// writer waiting for room in the queue must not hold what the committer
// needs after each sync).
func TestAppendsBeyondQueueCapacity(t *testing.T) {
	st, err := sublog.Open(t.TempDir(), sublog.Options{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const writers = 2500
	keys := make([]*key.Secret, 4)
	for i := range keys {
		keys[i] = golden.Fixture(fmt.Sprint("q", i))
	}
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			_, err := st.Append(keys[w%len(keys)], note("q", int64(w)))
			errs <- err
		}()
	}
	timeout := time.After(2 * time.Minute)
	for range writers {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("appends stopped: the store is deadlocked")
		}
	}
	if rep, err := st.Verify(nil, nil); err != nil || !rep.OK() || rep.Cards != writers {
		t.Fatalf("%+v %v", rep, err)
	}
}

// Close while appends are on their way: each append either lands (and is
// there after reopening) or says the store is closed; nothing hangs.
func TestCloseDuringAppends(t *testing.T) {
	dir := t.TempDir()
	st, err := sublog.Open(dir, sublog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sk := golden.Fixture("closing")
	type res struct {
		c   *card.Card
		err error
	}
	out := make(chan res, 64)
	for w := range 64 {
		go func() {
			c, err := st.Append(sk, note("c", int64(w)))
			out <- res{c, err}
		}()
	}
	time.Sleep(time.Millisecond)
	closes := make(chan error, 2)
	for range 2 { // two at once: both return once the store is closed
		go func() { closes <- st.Close() }()
	}
	for range 2 {
		if err := <-closes; err != nil {
			t.Fatal(err)
		}
		// Whichever returned first, the database is closed by now.
		if _, err := st.Verify(nil, nil); !errors.Is(err, sublog.ErrClosed) {
			t.Fatalf("Verify after Close returned: %v", err)
		}
	}
	var landed []*card.Card
	for range 64 {
		r := <-out
		switch {
		case r.err == nil:
			landed = append(landed, r.c)
		case !errors.Is(r.err, sublog.ErrClosed):
			t.Fatal(r.err)
		}
	}
	st = open(t, dir)
	for _, c := range landed {
		if got, err := st.GetByID(c.ID()); err != nil || got.Seq() != c.Seq() {
			t.Fatalf("acknowledged card %d lost: %v", c.Seq(), err)
		}
	}
	if rep, err := st.Verify(nil, nil); err != nil || !rep.OK() || rep.Cards != len(landed) {
		t.Fatalf("%+v %v", rep, err)
	}
}

func TestImportBatch(t *testing.T) {
	src := open(t, t.TempDir())
	var raw [][]byte
	for _, n := range []string{"alice", "bob"} {
		for i := range 20 {
			c, err := src.Append(golden.Fixture(n), note(n, int64(i)))
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, c.Bytes())
		}
	}
	bad := append([]byte(nil), raw[5]...)
	bad[len(bad)-1] ^= 1
	dst := open(t, t.TempDir())
	in := append([][]byte{bad}, raw...)
	in = append(in, raw[0]) // replay
	res, err := dst.ImportBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) != 40 {
		t.Fatalf("accepted %d", len(res.Accepted))
	}
	if golden.Reason(res.Errs[0]) != "bad-signature" || golden.Reason(res.Errs[len(in)-1]) != "replayed" || len(res.Errs) != 2 {
		t.Fatalf("errs %v", res.Errs)
	}
	if fmt.Sprint(src.Heads()) != fmt.Sprint(dst.Heads()) {
		t.Fatal("heads differ after batch import")
	}
}

// Cards handed out by scans must own their bytes: iterator buffers are
// reused after the callback returns.
func TestScannedCardsKeepTheirBytes(t *testing.T) {
	st := open(t, t.TempDir())
	sk := golden.Fixture("alice")
	for i := range 50 {
		if _, err := st.Append(sk, note(fmt.Sprint("n", i), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	var kept []*card.Card
	if err := st.All(func(c *card.Card) error { kept = append(kept, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := st.Scan(sk.ID(), 1, func(c *card.Card) error { kept = append(kept, c); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, c := range kept {
		if card.IDOf(c.Bytes()) != c.ID() {
			t.Fatalf("seq %d: bytes changed after the scan", c.Seq())
		}
	}
}
