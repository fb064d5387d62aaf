package card_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/sublog/sublog/golden"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
)

func TestSignDecodeEveryKind(t *testing.T) {
	chain, err := golden.Chain()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, c := range chain {
		kinds[c.Kind()] = true
		d, err := card.Decode(c.Bytes(), caps.Builtin())
		if err != nil {
			t.Fatalf("%s: %v", c.Kind(), err)
		}
		if d.ID() != c.ID() || d.Seq() != c.Seq() || d.Author() != c.Author() || !bytes.Equal(d.Body(), c.Body()) || !bytes.Equal(d.Payload(), c.Payload()) {
			t.Fatalf("%s: round trip differs", c.Kind())
		}
		if err := canon.Check(d.Payload()); err != nil {
			t.Fatalf("%s: payload not canonical: %v", c.Kind(), err)
		}
	}
	for _, k := range card.Kinds {
		if !kinds[k] {
			t.Errorf("no card of kind %s in the fixture chain", k)
		}
	}
}

func TestSameInputsSameBytes(t *testing.T) {
	a, _ := golden.Chain()
	b, _ := golden.Chain()
	for i := range a {
		if !bytes.Equal(a[i].Bytes(), b[i].Bytes()) {
			t.Fatalf("card %d differs between two runs", i+1)
		}
	}
}

func TestSignRefusesBadDrafts(t *testing.T) {
	sk := golden.Fixture("alice")
	cases := map[string]struct {
		seq  uint64
		prev card.ID
		d    card.Draft
	}{
		"seq 0":            {0, card.ID{}, card.Draft{Kind: "note"}},
		"prev at seq 1":    {1, card.ID{1}, card.Draft{Kind: "note"}},
		"no prev at seq 2": {2, card.ID{}, card.Draft{Kind: "note"}},
		"bad kind":         {1, card.ID{}, card.Draft{Kind: "Note!"}},
		"negative ts":      {1, card.ID{}, card.Draft{Kind: "note", TS: -1}},
		"long net":         {1, card.ID{}, card.Draft{Kind: "note", Net: strings.Repeat("n", 200)}},
		"short hash":       {1, card.ID{}, card.Draft{Kind: "note", ContentHash: []byte{1, 2}}},
		"oversize body":    {1, card.ID{}, card.Draft{Kind: "note", Body: map[string]any{"b": make([]byte, card.MaxSize)}}},
		"unknown req":      {1, card.ID{}, card.Draft{Kind: "note", Reqs: []string{"bnotacap"}}},
	}
	for name, tc := range cases {
		if _, err := card.Sign(sk, tc.seq, tc.prev, tc.d, caps.Builtin()); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

func TestUnknownCapRejectedThenAccepted(t *testing.T) {
	sk := golden.Fixture("alice")
	spec := caps.Spec{Schema: caps.SchemaV1, Name: "example", Semver: "1.0.0", Purpose: "test"}
	set := caps.Builtin()
	if _, err := card.Sign(sk, 1, card.ID{}, card.Draft{Kind: "note", Reqs: []string{spec.ID()}}, set); !errors.Is(err, card.ErrUnsupportedCp) || !strings.Contains(err.Error(), spec.ID()) {
		t.Fatalf("unknown cap: %v", err)
	}
	set.Add(spec)
	c, err := card.Sign(sk, 1, card.ID{}, card.Draft{Kind: "note", Reqs: []string{spec.ID()}}, set)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := card.Decode(c.Bytes(), caps.Builtin()); !errors.Is(err, card.ErrUnsupportedCp) {
		t.Fatalf("a node without the cap accepted it: %v", err)
	}
	if got := c.Prov(); len(got) != 1 || got[0] != spec.ID() {
		t.Fatalf("prov should default to reqs: %v", got)
	}
}

func TestParseID(t *testing.T) {
	c, _ := golden.Chain()
	id := c[0].ID()
	got, err := card.ParseID(id.String())
	if err != nil || got != id {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "sha256:", id.String()[:70], strings.ToUpper(id.String()), "md5:" + id.String()[7:], id.String() + "0"} {
		if _, err := card.ParseID(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the card decoder, seeded with every
// golden card and negative vector. Anything accepted must be canonical
// (re-decoding gives the same card) and carry a signature that verifies.
func FuzzDecode(f *testing.F) {
	for _, dir := range []string{"card", "card-reject"} {
		vs, _, err := golden.LoadDir(filepath.Join("..", "..", "golden", "vectors", dir))
		if err != nil {
			f.Fatal(err)
		}
		for _, v := range vs {
			if b, err := v.Hex("card"); err == nil {
				f.Add(b)
			}
		}
	}
	set := caps.Builtin()
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := card.Decode(b, set)
		if err != nil {
			if c != nil {
				t.Fatal("card returned with an error")
			}
			return
		}
		if c.ID() != card.IDOf(b) {
			t.Fatal("ID is not the hash of the bytes")
		}
		if err := canon.Check(b[1:]); err != nil {
			t.Fatalf("accepted non-canonical envelope: %v", err)
		}
		if err := canon.Check(c.Payload()); err != nil {
			t.Fatalf("accepted a payload the generic canonical check refuses: %v", err)
		}
		again, err := card.DecodeStored(c.Bytes())
		if err != nil || again.ID() != c.ID() {
			t.Fatalf("stored form does not decode: %v", err)
		}
		if _, seq, _, err := card.Links(b); err != nil || seq != c.Seq() {
			t.Fatalf("links: %v", err)
		}
	})
}

func TestLinksFastAndSlowPathsAgree(t *testing.T) {
	chain, _ := golden.Chain()
	for _, c := range chain {
		a, seq, prev, err := card.Links(c.Bytes())
		p, _ := c.Prev()
		if err != nil || seq != c.Seq() || prev != p || !bytes.Equal(a, c.Author().Bytes()) {
			t.Fatalf("%s: links %v", c.Kind(), err)
		}
	}
	// Every truncation of a real card is refused or parsed consistently.
	raw := chain[3].Bytes()
	for i := range raw {
		if a, seq, _, err := card.Links(raw[:i]); err == nil && (seq != chain[3].Seq() || !bytes.Equal(a, chain[3].Author().Bytes())) {
			t.Fatalf("truncated at %d: wrong links", i)
		}
	}
	if _, _, _, err := card.Links([]byte{0xd2, 0x84}); err == nil {
		t.Fatal("truncated card has links")
	}
}

func BenchmarkLinks(b *testing.B) {
	chain, _ := golden.Chain()
	raw := chain[1].Bytes()
	for b.Loop() {
		if _, _, _, err := card.Links(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzLinks: the chain scan's payload walker never panics on any bytes,
// and whenever it and the library decoder both read a payload they agree.
func FuzzLinks(f *testing.F) {
	chain, _ := golden.Chain()
	for _, c := range chain {
		f.Add(c.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, seq, prev, err := card.Links(b)
		if err != nil {
			return
		}
		if c, derr := card.DecodeStored(b); derr == nil {
			p, _ := c.Prev()
			if seq != c.Seq() || prev != p || !bytes.Equal(a, c.Author().Bytes()) {
				t.Fatalf("links disagree with the decoder: seq %d/%d", seq, c.Seq())
			}
		}
	})
}

// The payload is decoded once into its struct and re-encoded for the
// canonical comparison; these payloads are each one re-encoding away from a
// real card and must all be refused, with the body checked on its own since
// the struct carries it as raw bytes.
func TestPayloadOneEncodingOnly(t *testing.T) {
	chain, err := golden.Chain()
	if err != nil {
		t.Fatal(err)
	}
	c := chain[0] // seq 1, with a body
	sk := golden.Fixture("alice")
	if c.Author() != sk.ID() || c.Seq() != 1 || c.Body() == nil {
		t.Fatal("fixture changed: want alice's first card, with a body")
	}
	var base map[any]any
	if err := canon.Unmarshal(c.Payload(), &base); err != nil {
		t.Fatal(err)
	}
	sign := func(t *testing.T, m map[any]any) []byte {
		t.Helper()
		p, err := canon.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		b, err := card.SignPayload(sk, sk.ID().Bytes(), -8, p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got, err := card.Decode(sign(t, base), caps.Builtin()); err != nil || got.ID() != c.ID() {
		t.Fatalf("the unchanged payload: %v", err)
	}
	cases := []struct {
		name string
		edit func(m map[any]any)
		want error
	}{
		{"prev null at seq 1", func(m map[any]any) { m["prev"] = nil }, canon.ErrNonCanonical},
		{"empty reqs", func(m map[any]any) { m["reqs"] = []any{} }, canon.ErrNonCanonical},
		{"empty dist_tag", func(m map[any]any) { m["dist_tag"] = []byte{} }, canon.ErrNonCanonical},
		{"null net", func(m map[any]any) { m["net"] = nil }, canon.ErrNonCanonical},
		{"body int not shortest", func(m map[any]any) { m["body"] = cbor.RawMessage{0xa1, 0x61, 'a', 0x18, 0x01} }, canon.ErrNonCanonical},
		{"body duplicate key", func(m map[any]any) { m["body"] = cbor.RawMessage{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02} }, canon.ErrDuplicateKey},
		{"body unsorted", func(m map[any]any) { m["body"] = cbor.RawMessage{0xa2, 0x61, 'b', 0x01, 0x61, 'a', 0x02} }, canon.ErrNonCanonical},
		{"unknown field", func(m map[any]any) { m["extra"] = 1 }, canon.ErrUnknownField},
		{"byte string for text", func(m map[any]any) { m["kind"] = []byte("note") }, canon.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := map[any]any{}
			for k, v := range base {
				m[k] = v
			}
			tc.edit(m)
			if _, err := card.Decode(sign(t, m), caps.Builtin()); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
