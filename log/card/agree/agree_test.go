// Package agree_test holds the agreement fuzzer of issue 18: whatever Sign
// accepts, every reader of the store accepts, and the converse. It lives in
// its own directory so that its test binary links only the card packages:
// the fuzzing engine clears and scans every coverage counter of the binary
// on each exec, and log/card's own tests link the whole tree (golden), which
// made each exec about 8 times slower there.
package agree_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// alice is the golden vectors' "alice" (golden.Fixture), derived here so
// that this binary does not link golden and everything it imports.
func alice() *key.Secret {
	sk, err := key.FromSeed(key.DeriveSeed([]byte("sublog golden vectors v1"), "alice"))
	if err != nil {
		panic(err)
	}
	return sk
}

// lenient decodes anything well-formed into Go values the way a careless
// caller might build a draft body: map[any]any with mixed key types,
// floats of any value, deep nesting, big element counts.
var lenient, _ = cbor.DecOptions{MaxNestedLevels: 256, MaxArrayElements: 1 << 17, MaxMapPairs: 1 << 17,
	DupMapKey: cbor.DupMapKeyQuiet, IndefLength: cbor.IndefLengthAllowed, TagsMd: cbor.TagsAllowed}.DecMode()

// signs reports whether Sign accepts d and, when it does, checks that the
// strict decoder accepts the very bytes: the one agreement a home depends
// on (a card that is signed but unreadable breaks every reader of its log).
// With sign false only what Sign decides before signing is run (Build), and
// the payload goes to the decoder in a zero-signature envelope through
// DecodeStored (every check but the signature): a fuzzer then spends its
// time on the limits, not on Ed25519.
func signs(t *testing.T, sk *key.Secret, seq uint64, prev card.ID, d card.Draft, sign bool) []byte {
	t.Helper()
	pb, berr := card.Build(sk.ID(), seq, prev, d)
	if !sign {
		if berr != nil {
			return nil
		}
		env := envelopeOf(sk.ID(), pb)
		got, err := card.DecodeStored(env)
		if err != nil {
			t.Fatalf("Sign would sign a card the decoder refuses: %v\npayload %x", err, pb)
		}
		chainReaders(t, env, sk.ID(), seq, prev)
		if got.Seq() != seq || got.Kind() != d.Kind {
			t.Fatal("decoded card differs from the draft")
		}
		return got.Body()
	}
	c, err := card.Sign(sk, seq, prev, d, caps.Builtin())
	if (err == nil && berr != nil) || (err != nil && berr == nil && !errors.Is(err, card.ErrUnsupportedCp)) {
		t.Fatalf("Sign (%v) and Build (%v) disagree", err, berr)
	}
	if err != nil {
		return nil
	}
	got, err := card.Decode(c.Bytes(), caps.Builtin())
	if err != nil {
		t.Fatalf("Sign accepted a card the decoder refuses: %v\nbody %x", err, c.Body())
	}
	if _, err := card.DecodeAnyCaps(c.Bytes()); err != nil {
		t.Fatalf("Sign accepted a card DecodeAnyCaps (fork proofs) refuses: %v", err)
	}
	if _, err := card.DecodeStored(c.Bytes()); err != nil {
		t.Fatalf("Sign accepted a card DecodeStored (the store's read back) refuses: %v", err)
	}
	chainReaders(t, c.Bytes(), sk.ID(), seq, prev)
	if got.ID() != c.ID() || !bytes.Equal(got.Body(), c.Body()) || got.Seq() != seq || !bytes.Equal(c.Payload(), pb) {
		t.Fatal("decoded card differs from the signed one")
	}
	return c.Body()
}

// chainReaders checks the store's readers that skip the full decode on
// card bytes it accepted: card.Links (the chain scan of verify) must give
// the card's author, seq and prev, and card.Kid (sync.PeekAuthor's fast
// path) the author.
func chainReaders(t *testing.T, b []byte, author key.ID, seq uint64, prev card.ID) {
	t.Helper()
	a, sq, pv, err := card.Links(b)
	if err != nil {
		t.Fatalf("Links refuses a card the decoder accepts: %v", err)
	}
	if !bytes.Equal(a, author.Bytes()) || sq != seq || (seq > 1 && pv != prev) {
		t.Fatalf("Links reads (%x, %d, %v), want (%s, %d, %v)", a, sq, pv, author, seq, prev)
	}
	kid, ok := card.Kid(b)
	if !ok || !bytes.Equal(kid, author.Bytes()) {
		t.Fatalf("Kid reads %x (%v), want the author %s", kid, ok, author)
	}
}

// envelopeOf wraps payload bytes in the canonical COSE_Sign1 layout with a
// zero signature, for DecodeStored (which checks everything but it).
func envelopeOf(kid key.ID, payload []byte) []byte {
	b := append([]byte{0xd2, 0x84, 0x58, 0x26, 0xa2, 0x01, 0x27, 0x04, 0x58, 0x20}, kid.Bytes()...)
	b = append(b, 0xa0)
	b = append(b, canon.MustMarshal(payload)...)
	return append(append(b, 0x58, 0x40), make([]byte, 64)...)
}

// FuzzSignDecode asserts "Sign accepts => every reader accepts" (Decode,
// DecodeAnyCaps, DecodeStored, Links, Kid) for drafts built
// from arbitrary bytes (as a raw body, and as Go values decoded leniently
// from them), and the converse: every card the decoder accepts is signed
// again, byte for byte, from a draft built from the decoded card.
func FuzzSignDecode(f *testing.F) {
	seeds := [][]byte{
		canon.MustMarshal(map[string]any{"text": "hello"}),
		// 15 levels of lists under the body map: the 77-byte note.
		canon.MustMarshal(map[string]any{"x": nest(14)}),
		canon.MustMarshal(map[string]any{"x": nest(15)}),
		{0xa1, 0x61, 0x78, 0xf9, 0x7e, 0x00},                   // {"x": NaN}
		{0xa1, 0x61, 0x78, 0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0}, // {"x": +Inf} as a double
		{0xa2, 0x01, 0x01, 0x01, 0x02},                         // duplicate keys
		{0xa1, 0x61, 0xff, 0x01},                               // invalid UTF-8 key
	}
	// And a note whose hash makes it sign.
	for i := 0; ; i++ {
		if b := canon.MustMarshal(map[string]any{"text": fmt.Sprint("signed ", i)}); crc32.ChecksumIEEE(b)%16 == 0 {
			seeds = append(seeds, b)
			break
		}
	}
	for i, s := range seeds {
		f.Add(s, "note", uint8(i))
	}
	sk := alice()
	prev := card.IDOf([]byte("prev"))
	f.Fuzz(func(t *testing.T, b []byte, kind string, mode uint8) {
		seq, pv := uint64(1), card.ID{}
		if mode&1 == 1 {
			seq, pv = 7, prev
		}
		d := card.Draft{Kind: kind, TS: 1700000000, ContentURI: string(b[:min(len(b), 8)])}
		if mode&2 == 2 {
			d.Reqs = []string{kind}
		}
		raw := d
		raw.RawBody = b
		// One exec in 16 pays for real signatures. The choice is a hash of
		// the body, not a bit of mode the fuzzer picks: inputs that sign
		// reach new code, so a chosen bit ends up set in a quarter of the
		// corpus and of the execs, and signing (some 6 times an exec that
		// does not sign) then takes most of the fuzzing time.
		sign := crc32.ChecksumIEEE(b)%16 == 0
		if body := signs(t, sk, seq, pv, raw, sign); body != nil && !bytes.Equal(body, b) {
			t.Fatal("raw body changed on the way into the card")
		}
		var v any
		if lenient.Unmarshal(b, &v) == nil && v != nil {
			val := d
			val.Body = v
			signs(t, sk, seq, pv, val, sign)
		}
		// The converse: bytes taken as a payload, signed as an envelope;
		// whatever the decoder accepts, Sign makes again from its fields.
		c, err := card.DecodeStored(envelopeOf(sk.ID(), b))
		if err != nil {
			return // refused before any signature matters
		}
		p, _ := c.Prev()
		fields := card.Draft{Kind: c.Kind(), Net: c.Net(), TS: c.TS(), RID: c.RID(),
			RawBody: c.Body(), Reqs: c.Reqs(), Prov: c.Prov(), PolicyRef: c.PolicyRef(), ContentURI: c.ContentURI(),
			ContentHash: c.ContentHash(), DistTag: c.DistTag()}
		if !bytes.Equal(c.Author().Bytes(), sk.ID().Bytes()) {
			return // kid and author differ: refused by Decode, nothing to sign again
		}
		pb, err := card.Build(c.Author(), c.Seq(), p, fields)
		if err != nil {
			t.Fatalf("Sign refuses the fields of a card the decoder accepts: %v", err)
		}
		if !bytes.Equal(pb, b) {
			t.Fatal("Sign makes a different payload from a decoded card's fields")
		}
		if !sign {
			return
		}
		env, err := card.SignPayload(sk, sk.ID().Bytes(), -8, b)
		if err != nil {
			t.Fatal(err)
		}
		dc, derr := card.Decode(env, caps.Builtin())
		again, serr := card.Sign(sk, c.Seq(), p, fields, caps.Builtin())
		if (derr == nil) != (serr == nil) {
			t.Fatalf("Decode (%v) and Sign (%v) disagree on the capabilities", derr, serr)
		}
		if derr == nil && !bytes.Equal(again.Bytes(), dc.Bytes()) {
			t.Fatal("Sign makes different bytes from a decoded card's fields")
		}
	})
}

// nest gives n lists nested inside each other.
func nest(n int) any {
	var v any = []any{}
	for range n - 1 {
		v = []any{v}
	}
	return v
}

// The card limits are the decoder's: a body at the limit signs and reads
// back; one level more, NaN, infinities, too many items or bad UTF-8 are
// refused by Sign with the decoder's own error, so nothing unreadable is
// ever signed.
func TestSignRefusesWhatDecodeRefuses(t *testing.T) {
	sk := alice()
	at := map[string]any{"x": nest(card.MaxBodyDepth - 1)} // the body map is one level
	if c := signs(t, sk, 1, card.ID{}, card.Draft{Kind: "note", Body: at}, true); c == nil {
		t.Fatalf("a body %d levels deep is within the limit and must sign", card.MaxBodyDepth)
	}
	big := make([]any, card.MaxElements+1)
	for i := range big {
		big[i] = 0
	}
	for name, tc := range map[string]struct {
		body any
		raw  []byte
		want error
	}{
		"one level over":   {body: map[string]any{"x": nest(card.MaxBodyDepth)}, want: canon.ErrTooDeep},
		"77-byte note":     {body: map[string]any{"x": nest(15)}, want: canon.ErrTooDeep},
		"NaN":              {body: map[string]any{"x": math.NaN()}, want: canon.ErrNotFinite},
		"+Inf":             {body: map[string]any{"x": math.Inf(1)}, want: canon.ErrNotFinite},
		"-Inf in a list":   {body: map[string]any{"x": []any{1, math.Inf(-1)}}, want: canon.ErrNotFinite},
		"raw NaN":          {raw: []byte{0xa1, 0x61, 0x78, 0xf9, 0x7e, 0x00}, want: canon.ErrNotFinite},
		"too many items":   {body: map[string]any{"x": big}, want: canon.ErrTooDeep},
		"bad UTF-8":        {body: map[string]any{"x": "\xff"}},
		"duplicate keys":   {body: map[any]any{uint64(1): 1, int64(1): 2}, want: canon.ErrDuplicateKey},
		"bad UTF-8 in uri": {body: map[string]any{"x": 1}},
	} {
		d := card.Draft{Kind: "note", Body: tc.body, RawBody: tc.raw}
		if name == "bad UTF-8 in uri" {
			d.ContentURI = "a\xffb"
		}
		_, err := card.Sign(sk, 1, card.ID{}, d, caps.Builtin())
		if err == nil {
			t.Errorf("%s: signed", name)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if name == "one level over" && !strings.Contains(err.Error(), "levels of nesting") {
			t.Errorf("%s: error does not state the limit: %v", name, err)
		}
	}
}
