package log

import (
	"errors"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Damage to stub records (a bad disk, or a store written by a buggy
// version) is found by Verify and CheckChains, never taken as a link.
func TestVerifyFindsDamagedStubs(t *testing.T) {
	st, sk, cs := seeded(t)
	a := sk.ID()
	set := func(k, v []byte) {
		t.Helper()
		if err := st.db.Set(k, v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	// Seq 2 held as a stub, as an import would leave it: the chain verifies.
	if err := st.db.Delete(cardKey(a, 2), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	id2 := cs[1].ID()
	if err := st.db.Delete(indexKey(id2), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	set(stubKey(a, 2), id2[:])
	rep, err := st.Verify(nil, nil)
	if err != nil || !rep.OK() || rep.Withheld != 1 || rep.Proven != 1 {
		t.Fatalf("a good stub: %+v %v", rep, err)
	}
	// A stub whose ID the next card contradicts.
	other := cs[3].ID()
	set(stubKey(a, 2), other[:])
	rep, _ = st.Verify(nil, nil)
	if len(rep.Problems) != 1 || rep.Problems[0].Seq != 3 || !errors.Is(rep.Problems[0].Err, ErrBadChain) {
		t.Fatalf("contradicted stub: %+v", rep.Problems)
	}
	if _, probs, err := st.CheckChains(); err != nil || len(probs) != 1 || !errors.Is(probs[0].Err, ErrBadChain) {
		t.Fatalf("check chains: %+v %v", probs, err)
	}
	set(stubKey(a, 2), id2[:])
	// A stub where a card is, one past the head, and a malformed record.
	set(stubKey(a, 4), other[:])
	set(stubKey(a, 9), other[:])
	set(append(stubKey(a, 3), 0), []byte{1})
	rep, _ = st.Verify(nil, nil)
	var reasons []string
	for _, p := range rep.Problems {
		if !errors.Is(p.Err, ErrCorrupt) {
			t.Errorf("not corruption: %v", p.Err)
		}
		reasons = append(reasons, p.Reason)
	}
	all := strings.Join(reasons, "\n")
	for _, want := range []string{"stub at a seq that holds a card", "stub past its log's head", "stub record"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	// Readers still never see a stub as a card.
	if _, err := st.Get(a, 2); !errors.Is(err, ErrWithheld) {
		t.Fatalf("Get: %v", err)
	}
}
