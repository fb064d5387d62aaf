package capsule

import (
	"errors"
	"testing"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
)

func TestRevocationBodies(t *testing.T) {
	alice, bob := sk(t, "alice"), sk(t, "bob")
	set := caps.Builtin()
	first, err := card.Sign(alice, 1, card.ID{}, card.Draft{Kind: "note", Body: map[string]int{"a": 1}}, set)
	if err != nil {
		t.Fatal(err)
	}
	prev := first.ID()
	seq := uint64(1)
	next := func(kind string, body []byte) *card.Card {
		t.Helper()
		seq++
		c, err := card.Sign(alice, seq, prev, card.Draft{Kind: kind, RawBody: body}, set)
		if err != nil {
			t.Fatal(err)
		}
		prev = c.ID()
		return c
	}
	id := first.ID()
	rv := next(card.KindRevoke, canon.MustMarshal(RevokeBody{Card: id[:], Reason: "x"}))
	if by, kind := Revoked(first, []*card.Card{rv}); kind != "revoke" || by != rv.ID() {
		t.Fatalf("revoke: %q %v", kind, by)
	}
	crlBody, err := MarshalCRL([]card.ID{id})
	if err != nil {
		t.Fatal(err)
	}
	crl := next(card.KindCRL, crlBody)
	if by, kind := Revoked(first, []*card.Card{rv, crl}); kind != "crl" || by != crl.ID() {
		t.Fatalf("crl wins: %q %v", kind, by)
	}
	// Someone else's crl naming alice's card does not count.
	bobs, _ := card.Sign(bob, 1, card.ID{}, card.Draft{Kind: card.KindCRL, RawBody: crlBody}, set)
	if _, kind := Revoked(first, []*card.Card{bobs}); kind != "" {
		t.Fatalf("bob revoked alice's card: %q", kind)
	}
	for name, body := range map[string]any{
		"empty":     map[string]any{"revoked": []any{}},
		"short":     map[string]any{"revoked": [][]byte{id[:31]}},
		"duplicate": map[string]any{"revoked": [][]byte{id[:], id[:]}},
	} {
		c := next(card.KindCRL, canon.MustMarshal(body))
		if _, err := DecodeCRL(c); !errors.Is(err, ErrBadRevocation) {
			t.Errorf("%s: %v", name, err)
		}
	}
	c := next(card.KindCRL, canon.MustMarshal(map[string]any{"revoked": [][]byte{id[:]}, "x": 1}))
	if _, err := DecodeCRL(c); !errors.Is(err, canon.ErrUnknownField) {
		t.Errorf("unknown field: %v", err)
	}
	c = next(card.KindRevoke, canon.MustMarshal(map[string]any{"card": id[:16]}))
	if _, err := DecodeRevoke(c); !errors.Is(err, ErrBadRevocation) {
		t.Errorf("short revoke: %v", err)
	}
	if _, err := MarshalCRL(nil); !errors.Is(err, ErrBadRevocation) {
		t.Errorf("empty MarshalCRL: %v", err)
	}
}
