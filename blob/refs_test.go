package blob

import (
	"bytes"
	"slices"
	"testing"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

type anyCaps struct{}

func (anyCaps) Require([]string) error { return nil }

func TestRefs(t *testing.T) {
	sk, err := key.FromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := Sum([]byte("a")), Sum([]byte("b")), Sum([]byte("c"))
	cases := []struct {
		d    card.Draft
		want []Hash
	}{
		{card.Draft{Kind: card.KindBundle, Body: map[string]any{"hash": a[:], "name": "x"}}, []Hash{a}},
		{card.Draft{Kind: card.KindGrant, Body: map[string]any{"bundle": a[:]}}, []Hash{a}},
		{card.Draft{Kind: card.KindObserve, Body: map[string]any{"bundle": b[:], "state": "running"}}, []Hash{b}},
		{card.Draft{Kind: kinds.KindHandoff, Body: map[string]any{"bundle": a[:], "state": c[:]}}, []Hash{a, c}},
		{card.Draft{Kind: "placement", Body: map[string]any{"bundle": a[:], "state": b[:]}}, []Hash{a, b}},
		{card.Draft{Kind: card.KindNote, ContentHash: c[:], Body: map[string]any{"hash": a[:]}}, []Hash{c}},
		// A field of the wrong length or type names nothing.
		{card.Draft{Kind: card.KindGrant, Body: map[string]any{"bundle": a[:31]}}, nil},
		{card.Draft{Kind: card.KindBundle, Body: map[string]any{"hash": "sha256:..."}}, nil},
	}
	for i, tc := range cases {
		tc.d.TS = 1
		cd, err := card.Sign(sk, 1, card.ID{}, tc.d, anyCaps{})
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		got := Refs(cd)
		slices.SortFunc(got, func(x, y Hash) int { return bytes.Compare(x[:], y[:]) })
		slices.SortFunc(tc.want, func(x, y Hash) int { return bytes.Compare(x[:], y[:]) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("%d (%s): refs %v, want %v", i, tc.d.Kind, got, tc.want)
		}
	}
}
