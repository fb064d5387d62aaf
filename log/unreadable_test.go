package log

import (
	"errors"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// deepNote is the card of the issue: a note whose body nests 15 lists in
// its map, which an earlier append signed and the decoder refuses (16
// levels counting payload and body). Signed for real by sk at seq.
func deepNote(t *testing.T, sk *key.Secret, seq uint64, prev card.ID) []byte {
	t.Helper()
	var x any = []any{}
	for range 14 {
		x = []any{x}
	}
	b, err := card.SignUnchecked(sk, seq, prev, card.Draft{Kind: card.KindNote, TS: 9, Body: map[string]any{"x": x}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := card.Decode(b, nil); !errors.Is(err, canon.ErrTooDeep) {
		t.Fatalf("the planted card must be one the decoder refuses: %v", err)
	}
	return b
}

// A home that holds such a card keeps working: Append refuses to make one,
// readers skip the planted one and name it, the log goes on after it, and
// Verify reports it with the decoder's reason.
func TestUnreadableCardIsSkippedAndNamed(t *testing.T) {
	st, sk, cs := seeded(t)
	if _, err := st.Append(sk, card.Draft{Kind: card.KindNote, Body: map[string]any{"x": nestList(15)}}); !errors.Is(err, canon.ErrTooDeep) {
		t.Fatalf("Append of the 77-byte note: %v, want ErrTooDeep", err)
	}
	bad := deepNote(t, sk, 6, cs[4].ID())
	if err := st.PlantRawForTest(sk.ID(), 6, bad); err != nil {
		t.Fatal(err)
	}
	// Appending goes on past it (the chain links the planted card's ID).
	after, err := st.Append(sk, card.Draft{Kind: card.KindNote, Body: map[string]any{"after": true}})
	if err != nil || after.Seq() != 7 {
		t.Fatalf("append after the unreadable card: %v", err)
	}
	var seqs []uint64
	if err := st.Scan(sk.ID(), 1, func(c *card.Card) error { seqs = append(seqs, c.Seq()); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 6 || seqs[5] != 7 {
		t.Fatalf("Scan saw %v, want 1..5 and 7", seqs)
	}
	n := 0
	if err := st.All(func(*card.Card) error { n++; return nil }); err != nil || n != 6 {
		t.Fatalf("All: %v, %d cards", err, n)
	}
	if _, err := st.Get(sk.ID(), 6); !errors.Is(err, ErrUnreadable) || !errors.Is(err, canon.ErrTooDeep) {
		t.Fatalf("Get: %v", err)
	}
	u := st.Unreadable()
	if len(u) != 1 || u[0].Author != sk.ID() || u[0].Seq != 6 || u[0].ID != card.IDOf(bad) || !errors.Is(u[0].Err, canon.ErrTooDeep) {
		t.Fatalf("Unreadable: %+v", u)
	}
	rep, err := st.Verify(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Seq != 6 || !strings.Contains(rep.Problems[0].Reason, "nesting") {
		t.Fatalf("Verify: %+v", rep.Problems)
	}
}

func nestList(n int) any {
	var v any = []any{}
	for range n - 1 {
		v = []any{v}
	}
	return v
}
