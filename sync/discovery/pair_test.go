package discovery

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// delegateCard signs owner's first card: a delegate card with body b.
func delegateCard(t testing.TB, owner *key.Secret, kind string, b any) *card.Card {
	t.Helper()
	c, err := card.Sign(owner, 1, card.ID{}, card.Draft{Kind: kind, TS: t0.Unix(), Body: b}, caps.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func only(id key.ID) func(key.ID) bool { return func(x key.ID) bool { return x == id } }

// rewrap re-encodes a token's wire map after edit changes it, re-signed by
// signer when it is not nil (else the old signature stays).
func rewrap(t testing.TB, tok string, signer *key.Secret, edit func(w *pairWire)) string {
	t.Helper()
	raw, err := b64.DecodeString(strings.TrimPrefix(tok, PairPrefix))
	if err != nil {
		t.Fatal(err)
	}
	var w pairWire
	if err := canon.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	edit(&w)
	if signer != nil {
		w.Sig = signer.Sign(pairSignable(pairBody{V: w.V, Owner: w.Owner, Device: w.Device, Issued: w.Issued, Expires: w.Expires, Card: w.Card}))
	}
	return PairPrefix + b64.EncodeToString(canon.MustMarshal(w))
}

func TestPairTokenRoundTrip(t *testing.T) {
	owner, dev := secret(t, "owner"), secret(t, "device")
	c := delegateCard(t, owner, card.KindDelegate, kinds.DelegateBody{Device: dev.ID().Bytes()})
	tok, err := NewPairToken(owner, c, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.String(), PairPrefix) || len(tok.String()) > 1024 {
		t.Fatalf("token %q", tok.String())
	}
	got, err := OpenPairToken(" "+tok.String()+"\n", t0.Add(time.Minute), only(dev.ID()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner != owner.ID() || got.Device != dev.ID() || got.Delegation.ID() != c.ID() || !got.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("opened %+v", got)
	}
	again, _ := NewPairToken(owner, c, t0, t0.Add(time.Hour))
	if again.String() != tok.String() {
		t.Fatal("pairing token text is not deterministic")
	}
}

// Every refusal, each from real bad bytes.
func TestPairTokenRefusals(t *testing.T) {
	owner, dev, other, mallory := secret(t, "owner"), secret(t, "device"), secret(t, "other"), secret(t, "mallory")
	c := delegateCard(t, owner, card.KindDelegate, kinds.DelegateBody{Device: dev.ID().Bytes()})
	tok, err := NewPairToken(owner, c, t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	good := tok.String()
	at := t0.Add(time.Minute)
	toOther := delegateCard(t, owner, card.KindDelegate, kinds.DelegateBody{Device: other.ID().Bytes()})
	revoking := delegateCard(t, owner, card.KindDelegate, kinds.DelegateBody{Device: dev.ID().Bytes(), Revoked: true})
	note := delegateCard(t, owner, card.KindNote, map[string]any{"text": "hi"})
	mallorys := delegateCard(t, mallory, card.KindDelegate, kinds.DelegateBody{Device: dev.ID().Bytes()})
	last := good[:len(good)-1] + "A"
	if last == good {
		last = good[:len(good)-1] + "B"
	}
	cases := []struct {
		name string
		text string
		at   time.Time
		mine func(key.ID) bool
		want error
	}{
		{"expired", good, t0.Add(time.Hour), only(dev.ID()), ErrExpired},
		{"wrong device", good, at, only(other.ID()), ErrPairDevice},
		{"forged: signed by another key", rewrap(t, good, mallory, func(w *pairWire) {}), at, only(dev.ID()), ErrBadSignature},
		{"forged: expiry extended", rewrap(t, good, nil, func(w *pairWire) { w.Expires += 3600 }), at, only(dev.ID()), ErrBadSignature},
		{"forged: device swapped", rewrap(t, good, nil, func(w *pairWire) { w.Device = other.ID().Bytes() }), at, only(other.ID()), ErrBadSignature},
		{"signature bytes altered", rewrap(t, good, nil, func(w *pairWire) { w.Sig[3] ^= 1 }), at, only(dev.ID()), ErrBadSignature},
		{"card for another device", rewrap(t, good, owner, func(w *pairWire) { w.Card = toOther.Bytes() }), at, only(dev.ID()), ErrPairDelegation},
		{"card revokes the device", rewrap(t, good, owner, func(w *pairWire) { w.Card = revoking.Bytes() }), at, only(dev.ID()), ErrPairDelegation},
		{"card of another kind", rewrap(t, good, owner, func(w *pairWire) { w.Card = note.Bytes() }), at, only(dev.ID()), ErrPairDelegation},
		{"card by another author", rewrap(t, good, owner, func(w *pairWire) { w.Card = mallorys.Bytes() }), at, only(dev.ID()), ErrPairDelegation},
		{"card bytes damaged", rewrap(t, good, owner, func(w *pairWire) { w.Card = append([]byte(nil), c.Bytes()[:len(c.Bytes())-1]...) }), at, only(dev.ID()), ErrPairDelegation},
		{"issued in the future", rewrap(t, good, owner, func(w *pairWire) { w.Issued += 3000; w.Expires += 3000 }), at, only(dev.ID()), ErrMalformed},
		{"expiry before issue", rewrap(t, good, owner, func(w *pairWire) { w.Expires = w.Issued }), at, only(dev.ID()), ErrMalformed},
		{"version 2", rewrap(t, good, owner, func(w *pairWire) { w.V = 2 }), at, only(dev.ID()), ErrMalformed},
		{"owner not a key", rewrap(t, good, nil, func(w *pairWire) { w.Owner = w.Owner[:31] }), at, only(dev.ID()), ErrMalformed},
		{"discovery token prefix", strings.Replace(good, PairPrefix, TokenPrefix, 1), at, only(dev.ID()), ErrMalformed},
		{"not base64url", good + "*", at, only(dev.ID()), ErrMalformed},
		{"truncated", good[:len(good)-20], at, only(dev.ID()), ErrMalformed},
		{"too long", good + strings.Repeat("A", MaxPairText), at, only(dev.ID()), ErrTooLarge},
		{"empty", "", at, only(dev.ID()), ErrMalformed},
		{"last character altered", last, at, only(dev.ID()), nil},
	}
	for _, k := range cases {
		_, err := OpenPairToken(k.text, k.at, k.mine)
		switch {
		case err == nil:
			t.Errorf("%s: accepted", k.name)
		case k.want != nil && !errors.Is(err, k.want):
			t.Errorf("%s: %v, want %v", k.name, err, k.want)
		}
	}
	// A non-canonical encoding of the same map (a longer integer form) is
	// refused before the signature is looked at.
	raw, _ := b64.DecodeString(strings.TrimPrefix(good, PairPrefix))
	if raw[0] != 0xa7 || raw[1] != 0x01 || raw[2] != 0x01 {
		t.Fatalf("unexpected wire start %x", raw[:3])
	}
	long := append([]byte{0xa7, 0x01, 0x18, 0x01}, raw[3:]...)
	if _, err := OpenPairToken(PairPrefix+b64.EncodeToString(long), at, only(dev.ID())); !errors.Is(err, ErrMalformed) {
		t.Fatalf("non-canonical: %v", err)
	}
	// NewPairToken refuses cards that are not the owner's live delegation.
	for _, bad := range []*card.Card{revoking, note, mallorys} {
		if _, err := NewPairToken(owner, bad, t0, t0.Add(time.Hour)); !errors.Is(err, ErrPairDelegation) {
			t.Errorf("NewPairToken took %s: %v", bad.Kind(), err)
		}
	}
}

func FuzzOpenPairToken(f *testing.F) {
	owner, dev := secret(f, "owner"), secret(f, "device")
	c := delegateCard(f, owner, card.KindDelegate, kinds.DelegateBody{Device: dev.ID().Bytes()})
	tok, err := NewPairToken(owner, c, t0, t0.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok.String())
	f.Add(PairPrefix)
	f.Add(PairPrefix + "oQEB")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := OpenPairToken(s, t0.Add(time.Minute), func(key.ID) bool { return true })
		if err != nil {
			return
		}
		// Whatever is accepted is signed by its owner and carries the
		// owner's delegation of exactly its device.
		if got.Delegation.Author() != got.Owner || got.Delegation.Kind() != card.KindDelegate {
			t.Fatalf("accepted a token whose card is not the owner's delegation")
		}
		again, err := OpenPairToken(got.String(), t0.Add(time.Minute), func(key.ID) bool { return true })
		if err != nil || again.Delegation.ID() != got.Delegation.ID() {
			t.Fatalf("an accepted token does not open again: %v", err)
		}
	})
}
