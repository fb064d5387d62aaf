package home

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

func ownerSecret(t *testing.T, n string) *key.Secret {
	t.Helper()
	sk, err := key.FromSeed(key.DeriveSeed([]byte("owners"), n))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func TestPairingsRoundTripAndRefusals(t *testing.T) {
	h := &Home{Dir: t.TempDir()}
	if ps, err := h.Pairings(); err != nil || len(ps) != 0 {
		t.Fatalf("empty home: %v %v", ps, err)
	}
	owner, dev, other := ownerSecret(t, "owner"), ownerSecret(t, "dev"), ownerSecret(t, "other")
	c, err := card.Sign(owner, 1, card.ID{}, card.Draft{Kind: card.KindDelegate, TS: 1, Body: kinds.DelegateBody{Device: dev.ID().Bytes()}}, caps.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	p := Pairing{Owner: owner.ID(), Device: dev.ID(), Delegation: c.Bytes(), Paired: 7}
	for range 2 { // the same pairing twice is kept once
		if err := h.AddPairing(p); err != nil {
			t.Fatal(err)
		}
	}
	cards, err := h.PairedDelegations()
	if err != nil || len(cards) != 1 || cards[0].ID() != c.ID() {
		t.Fatalf("paired delegations %v %v", cards, err)
	}
	if st, _ := os.Stat(filepath.Join(h.Dir, OwnersFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("owners.json mode %v", st.Mode().Perm())
	}
	// Real bad bytes: a damaged card, a card attributed to another owner,
	// a card of another kind, a file that is not JSON.
	damaged := append([]byte(nil), c.Bytes()...)
	damaged[len(damaged)-1] ^= 1
	note, _ := card.Sign(owner, 2, c.ID(), card.Draft{Kind: card.KindNote, TS: 2, Body: map[string]string{"a": "b"}}, caps.Builtin())
	for name, bad := range map[string]Pairing{
		"damaged":       {Owner: owner.ID(), Device: dev.ID(), Delegation: damaged},
		"another owner": {Owner: other.ID(), Device: dev.ID(), Delegation: c.Bytes()},
		"not delegate":  {Owner: owner.ID(), Device: other.ID(), Delegation: note.Bytes()},
	} {
		g := &Home{Dir: t.TempDir()}
		if err := g.AddPairing(bad); err != nil {
			t.Fatal(err)
		}
		if _, err := g.PairedDelegations(); !errors.Is(err, ErrBadOwners) {
			t.Errorf("%s: %v", name, err)
		}
	}
	g := &Home{Dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(g.Dir, OwnersFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Pairings(); !errors.Is(err, ErrBadOwners) {
		t.Fatalf("malformed owners.json: %v", err)
	}
}
