package card

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

// samplePayloads are payloads of cards with every optional field used.
func samplePayloads(t testing.TB) [][]byte {
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("fast"), "payload"))
	h := bytes.Repeat([]byte{7}, 32)
	drafts := []Draft{
		{Kind: KindNote, TS: 1767225600, Body: map[string]any{"msg": "hello", "i": 3}},
		{Kind: KindNote, TS: 0},
		{Kind: "x-y", TS: 1 << 40, Net: "net:other", Body: []any{1, -2, "three", []byte{4}, map[string]any{"n": []any{true, false, nil, 1.5}}}},
		{Kind: KindNote, TS: 5, Reqs: []string{"card", "capsule"}, Prov: []string{"card"}, PolicyRef: h, ContentURI: "blob:x", ContentHash: h, DistTag: []byte{1, 2}, Body: "text"},
		{Kind: KindNote, TS: 5, Reqs: []string{"card"}, RID: bytes.Repeat([]byte{9}, RIDSize), Body: bytes.Repeat([]byte{1}, 300)},
	}
	var out [][]byte
	prev := ID{}
	for i, d := range drafts {
		c, err := Sign(sk, uint64(i+1), prev, d, anyCaps{})
		if err != nil {
			t.Fatal(err)
		}
		prev = c.ID()
		out = append(out, c.Payload())
	}
	return out
}

// generalPayload is the general path: strict decode, canonical re-encode,
// and the body's canonical check.
func generalPayload(b []byte) (payload, error) {
	var p payload
	if err := canon.UnmarshalExact(b, &p); err != nil {
		return payload{}, err
	}
	if p.Body != nil {
		if err := canon.Check(p.Body); err != nil {
			return payload{}, err
		}
	}
	return p, nil
}

func TestPayloadFastPathTaken(t *testing.T) {
	for i, b := range samplePayloads(t) {
		fp, ok := fastPayload(b)
		if !ok {
			t.Fatalf("payload %d: a card made by Sign does not take the fast path", i)
		}
		gp, err := generalPayload(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fp, gp) {
			t.Fatalf("payload %d: fast %+v, general %+v", i, fp, gp)
		}
	}
}

// TestPayloadFastPathGivesUp feeds the fast path real bad payloads; each
// must be left to the general path (which refuses them).
func TestPayloadFastPathGivesUp(t *testing.T) {
	good := samplePayloads(t)[0]
	mutate := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"truncated":     good[:len(good)-1],
		"trailing byte": append(bytes.Clone(good), 0),
		"long map head": mutate(func(b []byte) []byte { return append([]byte{0xb8, b[0] & 0x1f}, b[1:]...) }),
		"key renamed":   bytes.Replace(good, []byte("\x62ts"), []byte("\x62tt"), 1),
		"negative ts":   bytes.Replace(good, []byte("\x62ts\x1a"), []byte("\x62ts\x3a"), 1),
		"indefinite":    mutate(func(b []byte) []byte { return append([]byte{0xbf}, b[1:]...) }),
	}
	for name, b := range cases {
		if bytes.Equal(b, good) {
			t.Fatalf("%s: mutation did not apply", name)
		}
		if _, ok := fastPayload(b); ok {
			t.Errorf("%s: fast path accepted it", name)
		}
		if p, err := generalPayload(b); err == nil && p.validate() == nil {
			t.Errorf("%s: general path accepts it (bad test case)", name)
		}
	}
}

// FuzzPayloadFastPath: the decoder with its fast path and the general path
// alone accept the same payloads with the same result (so the fast path
// never accepts what the general path refuses), and the fast path's own
// part is never more lenient than the general decoder.
func FuzzPayloadFastPath(f *testing.F) {
	for _, b := range samplePayloads(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dp, derr := checkPayload(b)
		gp, gerr := generalPayload(b)
		if gerr == nil {
			gerr = gp.validate()
		}
		if (derr == nil) != (gerr == nil) {
			t.Fatalf("decoder and general path disagree on %x: %v vs %v", b, derr, gerr)
		}
		if derr == nil && !reflect.DeepEqual(dp, gp) {
			t.Fatalf("paths differ on %x: decoder %+v, general %+v", b, dp, gp)
		}
		if fp, ok := fastPayload(b); ok {
			var raw payload // the general decoder alone
			if err := canon.UnmarshalExact(b, &raw); err != nil {
				t.Fatalf("fast path reads %x, the general decoder refuses it: %v", b, err)
			}
			if !reflect.DeepEqual(fp, raw) {
				t.Fatalf("fast path reads %x as %+v, the general decoder as %+v", b, fp, raw)
			}
		}
	})
}

// FuzzElideRebuild: Rebuild never panics on any elided bytes, and a card
// that decodes rebuilds exactly from its elided form (with and without its
// prev elided).
func FuzzElideRebuild(f *testing.F) {
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("fast"), "payload"))
	var prev ID
	for i, d := range []Draft{{Kind: KindNote, TS: 1, Body: "x"}, {Kind: KindNote, TS: 2, Reqs: []string{"card"}, ContentURI: "u"}} {
		c, err := Sign(sk, uint64(i+1), prev, d, anyCaps{})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.Bytes(), false)
		if e, ok := Elide(c.Bytes(), sk.ID(), &prev); ok {
			f.Add(e, true)
		}
		prev = c.ID()
	}
	author := sk.ID()
	f.Fuzz(func(t *testing.T, b []byte, withPrev bool) {
		var p *ID
		if withPrev {
			p = &ID{1}
		}
		if c, err := Rebuild(b, author, p); err == nil && len(c) > MaxSize {
			t.Fatalf("rebuilt %d bytes", len(c))
		}
		c, err := DecodeStored(b)
		if err != nil {
			return
		}
		pvs := []*ID{nil}
		if c.Seq() > 1 { // a batch's later cards: prev is put back
			pvs = append(pvs, &c.prev)
		}
		for _, pv := range pvs {
			e, ok := Elide(b, c.Author(), pv)
			if !ok {
				t.Fatal("a stored card does not elide")
			}
			back, err := Rebuild(e, c.Author(), pv)
			if err != nil || !bytes.Equal(back, b) {
				t.Fatalf("elided form does not rebuild: %v", err)
			}
		}
	})
}
