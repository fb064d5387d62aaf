package sync

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

// forkPair signs two different cards of sk at seq 1 and their fork proof.
func forkPair(t *testing.T, sk *key.Secret) (a, b *card.Card, proof []byte) {
	t.Helper()
	a = signNext(t, newStore(), sk, "left")
	b = signNext(t, newStore(), sk, "right")
	p, err := sublog.NewForkProof(a.Bytes(), b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return a, b, p.Encode()
}

// A home that holds only a fork proof (none of the contested cards) shows
// the author as forked and passes the proof on: along a line of three homes
// it reaches the far end within two rounds, whatever order the pairs sync in.
func TestForkProofWithoutCardsSpreadsInTwoRounds(t *testing.T) {
	mallory := secret(t, "mallory")
	_, right, proof := forkPair(t, mallory)
	var n [3]node
	for i, name := range []string{"home-a", "home-b", "home-c"} {
		n[i] = node{st: newStore(), sk: secret(t, name), pol: Everyone{}}
	}
	if _, err := n[0].st.ImportForkProof(proof); err != nil {
		t.Fatal(err)
	}
	hs := n[0].st.Heads()
	if len(hs) != 1 || hs[0].Author != mallory.ID() || !hs[0].Forked || hs[0].Seq != 0 {
		t.Fatalf("a proof-only author must show as a forked head with no cards: %+v", hs)
	}
	// Home c holds one branch: it must end up refusing to extend it.
	if _, err := n[2].st.Import(right.Bytes()); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		// The far pair first, so one round alone cannot carry the proof.
		for _, p := range [][2]int{{1, 2}, {0, 1}} {
			ra, rb := syncPipe(t, n[p[0]], n[p[1]])
			if ra.err != nil || rb.err != nil {
				t.Fatal(ra.err, rb.err)
			}
		}
	}
	for i := range n {
		if _, err := n[i].st.ForkProof(mallory.ID()); err != nil {
			t.Fatalf("home %d has no proof after two rounds: %v", i, err)
		}
		h := n[i].st.Heads()
		if len(h) != 1 || !h[0].Forked {
			t.Fatalf("home %d does not show mallory forked: %+v", i, h)
		}
	}
	// A bundle export carries the proof too.
	var buf bytes.Buffer
	if _, err := Export(&buf, n[0].st, ExportOptions{Secret: n[0].sk}); err != nil {
		t.Fatal(err)
	}
	fresh := newStore()
	stats, rej, err := Import(&buf, fresh, ImportOptions{})
	if err != nil || len(rej) != 0 || stats.Forks != 1 || len(stats.Forked) != 1 || stats.Forked[0] != mallory.ID() {
		t.Fatalf("%+v %v %v", stats, rej, err)
	}
	if _, err := fresh.ForkProof(mallory.ID()); err != nil {
		t.Fatal(err)
	}
}

// A sync that finds a fork names the author in Stats.Forked.
func TestSyncNamesForkedAuthor(t *testing.T) {
	mallory := secret(t, "mallory")
	left, right, _ := forkPair(t, mallory)
	a := node{st: newStore(), sk: secret(t, "home-a"), pol: Everyone{}}
	b := node{st: newStore(), sk: secret(t, "home-b"), pol: Everyone{}}
	a.st.Import(left.Bytes())
	b.st.Import(right.Bytes())
	ra, rb := syncPipe(t, a, b)
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	for _, r := range []result{ra, rb} {
		if r.st.Forks != 1 || len(r.st.Forked) != 1 || r.st.Forked[0] != mallory.ID() {
			t.Fatalf("%+v", r.st)
		}
	}
}

// A malformed envelope is refused with the defect the card decoder names,
// not as "a card of another author".
func TestMalformedEnvelopeNamesItsDefect(t *testing.T) {
	honest, alice := secret(t, "honest"), secret(t, "alice")
	good := signNext(t, newStore(), alice, "one").Bytes()
	if good[43] != 0x58 && good[43] != 0x59 {
		t.Fatalf("unexpected layout %x", good[:46])
	}
	// The payload bstr's length in a longer head than needed.
	var nonShortest []byte
	if good[43] == 0x58 {
		nonShortest = append(append(bytes.Clone(good[:43]), 0x59, 0, good[44]), good[45:]...)
	} else {
		nonShortest = append(append(bytes.Clone(good[:43]), 0x5a, 0, 0), good[44:]...)
	}
	// The payload as an indefinite-length byte string of one chunk.
	indef := bytes.Clone(good[:43])
	indef = append(indef, 0x5f)
	indef = append(indef, good[43:len(good)-66]...)
	indef = append(indef, 0xff)
	indef = append(indef, good[len(good)-66:]...)
	// The protected header with kid before alg: {4: kid, 1: -8}.
	ph := append([]byte{0xa2, 0x04, 0x58, 0x20}, good[10:42]...)
	ph = append(ph, 0x01, 0x27)
	unsorted := append(append([]byte{0xd2, 0x84, 0x58, 0x26}, ph...), good[42:]...)
	trailing := append(bytes.Clone(good), 0x00)
	cases := []struct {
		name, bytes string
		b           []byte
		sentinel    error
	}{
		{"non-shortest length", "deterministic", nonShortest, canon.ErrNonCanonical},
		{"indefinite item", "indefinite", indef, nil},
		{"unsorted protected header", "COSE header", unsorted, card.ErrBadHeader},
		{"trailing bytes", "after the item", trailing, canon.ErrTrailing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, derr := card.Decode(tc.b, testCaps)
			if derr == nil {
				t.Fatal("the decoder accepts the bad bytes")
			}
			st := newStore()
			before := snapshot(t, st)
			stats, err := attack(t, st, honest, alice, []*proto.Msg{{T: proto.TCards, Author: alice.ID().Bytes(), From: 1, Cards: [][]byte{tc.b}}})
			if err != nil {
				t.Fatal(err)
			}
			if stats.Rejected != 1 || stats.Received != 0 || len(stats.Refused) != 1 {
				t.Fatalf("%+v", stats)
			}
			r := stats.Refused[0]
			if errors.Is(r.Err, ErrWrongOwner) || strings.Contains(r.Reason, "another author") {
				t.Fatalf("reported as the wrong author: %s", r.Reason)
			}
			if !errors.Is(r.Err, sublog.ErrInvalid) || !strings.Contains(r.Reason, derr.Error()) || !strings.Contains(r.Reason, tc.bytes) {
				t.Fatalf("refusal %q does not name the decoder's defect %q", r.Reason, derr)
			}
			if tc.sentinel != nil && !errors.Is(r.Err, tc.sentinel) {
				t.Fatalf("%q is not %v", r.Reason, tc.sentinel)
			}
			if !bytes.Equal(before, snapshot(t, st)) {
				t.Fatal("store changed")
			}
		})
	}
	// A well-formed card of another log is still named as such.
	st := newStore()
	bob := secret(t, "bob")
	stats, err := attack(t, st, honest, alice, []*proto.Msg{{T: proto.TCards, Author: bob.ID().Bytes(), From: 1, Cards: [][]byte{good}}})
	if err != nil || len(stats.Refused) != 1 || !errors.Is(stats.Refused[0].Err, ErrWrongOwner) {
		t.Fatalf("%+v %v", stats, err)
	}
}
