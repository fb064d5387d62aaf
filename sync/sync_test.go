package sync

import (
	"github.com/sublog/sublog/log/card"
	"testing"

	"github.com/sublog/sublog/log/key"
)

func TestConvergeBothWays(t *testing.T) {
	alice, bob, carol := secret(t, "alice"), secret(t, "bob"), secret(t, "carol")
	a, b := newStore(), newStore()
	appendN(t, a, alice, 50)
	appendN(t, b, bob, 30)
	appendN(t, a, carol, 10)
	// b gets carol's first 10 too, then a moves on to 25.
	a.Scan(carol.ID(), 1, func(c *card.Card) error { _, err := b.Import(c.Bytes()); return err })
	appendN(t, a, carol, 15)
	everyone := NewLists([]key.ID{alice.ID(), bob.ID()}, nil, nil)
	ra, rb := syncPipe(t, node{a, alice, everyone}, node{b, bob, everyone})
	if ra.err != nil || rb.err != nil {
		t.Fatalf("sync: %v / %v", ra.err, rb.err)
	}
	mustHeadsEqual(t, a, b)
	if ra.st.Sent != 65 || rb.st.Received != 65 || rb.st.Sent != 30 || ra.st.Received != 30 {
		t.Fatalf("a %+v\nb %+v", ra.st, rb.st)
	}
	if ra.st.Logs != 1 || rb.st.Logs != 2 || ra.st.Rejected+rb.st.Rejected != 0 {
		t.Fatalf("a %+v\nb %+v", ra.st, rb.st)
	}
	t.Logf("a: %s; b: %s", ra.st, rb.st)
	// A second sync finds nothing to do in one round each way.
	ra, rb = syncPipe(t, node{a, alice, everyone}, node{b, bob, everyone})
	if ra.err != nil || rb.err != nil || ra.st.Sent+rb.st.Sent != 0 || ra.st.Rounds != 1 || rb.st.Rounds != 1 {
		t.Fatalf("resync: %#v %v / %#v %v", ra.st, ra.err, rb.st, rb.err)
	}
}
