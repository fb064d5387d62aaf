package sync

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/bundle"
)

func openStore(t *testing.T) *sublog.Store {
	t.Helper()
	st, err := sublog.Open(t.TempDir(), sublog.Options{Caps: testCaps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestDivergedHomesConverge is the acceptance scenario: two homes
// diverge offline (both append; one imports a bundle from a third), then one
// bidirectional sync makes them agree on every head, and both verify clean.
func TestDivergedHomesConverge(t *testing.T) {
	alice, laptop, carol := secret(t, "alice"), secret(t, "alice-laptop"), secret(t, "carol")
	desk, lap, third := openStore(t), openStore(t), openStore(t)
	// Shared history first.
	appendN(t, desk, alice, 20)
	copyStore(t, desk, lap)
	// Offline: both append, to the shared log and their own.
	appendN(t, desk, alice, 7)
	appendN(t, lap, laptop, 12)
	// Carol hands the desk a bundle, encrypted to alice.
	appendN(t, third, carol, 15)
	var file bytes.Buffer
	aid := alice.ID()
	if _, err := Export(&file, third, ExportOptions{Secret: carol, Rand: rand.Reader, For: &aid, Policy: Everyone{}}); err != nil {
		t.Fatal(err)
	}
	st, rej, err := Import(bytes.NewReader(file.Bytes()), desk, ImportOptions{Secret: alice})
	if err != nil || st.Received != 15 || len(rej) != 0 {
		t.Fatalf("import: %+v %v %v", st, rej, err)
	}
	// One sync between the two devices of one user.
	self := NewLists([]key.ID{alice.ID(), laptop.ID()}, nil, []key.ID{carol.ID()})
	ra, rb := syncPipe(t, node{desk, alice, self}, node{lap, laptop, self})
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	t.Logf("desk: %#v\nlap: %#v", ra.st, rb.st)
	mustHeadsEqual(t, desk, lap)
	for _, s := range []*sublog.Store{desk, lap} {
		if rep, err := s.Verify(nil, nil); err != nil || !rep.OK() {
			t.Fatalf("verify: %v %+v", err, rep)
		}
	}
	if ra.st.String() != "received 12 cards in 1 logs, sent 22, rejected 0" {
		t.Fatalf("desk: %s", ra.st)
	}
}

func TestBundleImportTwiceHarmless(t *testing.T) {
	carol, alice := secret(t, "carol"), secret(t, "alice")
	src, dst := newStore(), newStore()
	appendN(t, src, carol, 30)
	var file bytes.Buffer
	if _, err := Export(&file, src, ExportOptions{Secret: carol, Policy: Everyone{}}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		st, rej, err := Import(bytes.NewReader(file.Bytes()), dst, ImportOptions{})
		if err != nil || len(rej) != 0 || st.Received != []int{30, 0}[i] {
			t.Fatalf("import %d: %+v %v %v", i, st, rej, err)
		}
	}
	mustHeadsEqual(t, src, dst)
	_ = alice
}

func TestBundleSinceHeads(t *testing.T) {
	carol := secret(t, "carol")
	src, dst := newStore(), newStore()
	appendN(t, src, carol, 10)
	copyStore(t, src, dst)
	appendN(t, src, carol, 5)
	var file bytes.Buffer
	st, err := Export(&file, src, ExportOptions{Secret: carol, Policy: Everyone{}, Since: dst.Heads()})
	if err != nil || st.Sent != 5 {
		t.Fatalf("%+v %v", st, err)
	}
	got, _, err := Import(&file, dst, ImportOptions{})
	if err != nil || got.Received != 5 {
		t.Fatalf("%+v %v", got, err)
	}
	mustHeadsEqual(t, src, dst)
}

func TestBundleTruncatedOrTamperedImportsNothing(t *testing.T) {
	carol, alice, eve := secret(t, "carol"), secret(t, "alice"), secret(t, "eve")
	src := newStore()
	appendN(t, src, carol, 40)
	aid := alice.ID()
	for _, enc := range []bool{false, true} {
		var file bytes.Buffer
		o := ExportOptions{Secret: carol, Rand: rand.Reader, Policy: Everyone{}}
		if enc {
			o.For = &aid
		}
		if _, err := Export(&file, src, o); err != nil {
			t.Fatal(err)
		}
		b := file.Bytes()
		try := func(what string, data []byte, sk *key.Secret) error {
			dst := newStore()
			st, _, err := Import(bytes.NewReader(data), dst, ImportOptions{Secret: sk})
			if len(dst.Heads()) != 0 || st.Received != 0 {
				t.Fatalf("enc=%v %s: imported %d cards", enc, what, st.Received)
			}
			if err == nil {
				t.Fatalf("enc=%v %s: no error", enc, what)
			}
			return err
		}
		for _, cut := range []int{0, 5, 20, 60, len(b) / 3, len(b) / 2, len(b) - 70, len(b) - 1} {
			try("truncated", b[:cut], alice)
		}
		for _, at := range []int{30, 100, len(b) / 2, len(b) - 40, len(b) - 2} {
			bad := append([]byte(nil), b...)
			bad[at] ^= 0x04
			try("tampered", bad, alice)
		}
		try("trailing bytes", append(append([]byte(nil), b...), 0), alice)
		if enc {
			if err := try("wrong recipient", b, eve); !errors.Is(err, bundle.ErrNotForYou) {
				t.Fatalf("wrong recipient: %v", err)
			}
			if err := try("no key", b, nil); !errors.Is(err, bundle.ErrNeedSecret) {
				t.Fatalf("no key: %v", err)
			}
			if bytes.Contains(b, carol.ID().Bytes()) {
				t.Fatal("encrypted bundle shows the exporter in the clear")
			}
		}
		// Untouched, it imports.
		dst := newStore()
		if st, _, err := Import(bytes.NewReader(b), dst, ImportOptions{Secret: alice}); err != nil || st.Received != 40 {
			t.Fatalf("enc=%v: %+v %v", enc, st, err)
		}
	}
}

func TestBundleSignedByAnotherIsRefused(t *testing.T) {
	carol, mallory := secret(t, "carol"), secret(t, "mallory")
	src := newStore()
	appendN(t, src, carol, 3)
	var file bytes.Buffer
	if _, err := Export(&file, src, ExportOptions{Secret: carol, Policy: Everyone{}}); err != nil {
		t.Fatal(err)
	}
	// Mallory swaps the exporter in the header for herself.
	b := bytes.Replace(file.Bytes(), carol.ID().Bytes(), mallory.ID().Bytes(), 1)
	if _, _, err := Import(bytes.NewReader(b), newStore(), ImportOptions{}); !errors.Is(err, bundle.ErrSignature) {
		t.Fatalf("re-attributed bundle: %v", err)
	}
}

func TestBundleRejectsBadCardsAndSaysWhich(t *testing.T) {
	carol, mallory := secret(t, "carol"), secret(t, "mallory")
	src := newStore()
	appendN(t, src, carol, 3)
	// An exporter that signs a bundle holding a bad card: the bundle is
	// authentic, the card is not; the card is refused and named.
	var file bytes.Buffer
	w, err := bundle.NewWriter(&file, mallory, bundle.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c1, c2, c3 := mustGet(t, src, carol.ID(), 1), mustGet(t, src, carol.ID(), 2), mustGet(t, src, carol.ID(), 3)
	bad := append([]byte(nil), c3.Bytes()...)
	bad[len(bad)-3] ^= 1
	w.Msg(cardsMsg(carol.ID(), 1, c1, c2))
	w.Msg(protoMsgCards{carol.ID(), 3, [][]byte{bad}}.msg())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dst := newStore()
	st, rej, err := Import(&file, dst, ImportOptions{})
	if err != nil || st.Received != 2 || len(rej) != 1 || rej[0].Seq != 3 || !errors.Is(rej[0].Err, sublog.ErrInvalid) {
		t.Fatalf("%+v %v %v", st, rej, err)
	}
	t.Logf("rejected: %s", rej[0])
}
