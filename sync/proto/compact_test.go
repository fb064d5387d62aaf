package proto

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

type allCaps struct{}

func (allCaps) Require([]string) error { return nil }

// chain signs n cards of one log with bodies of about bodySize bytes.
func chain(t testing.TB, n, bodySize int) [][]byte {
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("compact"), fmt.Sprint(bodySize)))
	var out [][]byte
	prev := card.ID{}
	for i := range n {
		d := card.Draft{Kind: card.KindNote, TS: 1767225600 + int64(i), Body: map[string]any{"msg": strings.Repeat("x", bodySize), "i": i}}
		if i%3 == 1 {
			d.Reqs, d.ContentURI = []string{"card"}, "blob:z"
		}
		c, err := card.Sign(sk, uint64(i+1), prev, d, allCaps{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Bytes())
		prev = c.ID()
	}
	return out
}

func authorOf(t testing.TB, c []byte) key.ID {
	dc, err := card.DecodeStored(c)
	if err != nil {
		t.Fatal(err)
	}
	return dc.Author()
}

func TestCompactCardsRoundTrip(t *testing.T) {
	cards := chain(t, 12, 300)
	author := authorOf(t, cards[0])
	for _, from := range []int{0, 1, 5} { // a batch from seq 1 and from mid-chain
		seg := cards[from:]
		m := CardsMsg(author, uint64(from+1), seg)
		if m.T != TCardsCompact {
			t.Fatalf("from %d: cards of the canonical layout were not compacted", from)
		}
		wire, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := Encode(&Msg{T: TCards, Author: author.Bytes(), From: uint64(from + 1), Cards: seg})
		// Per card: the envelope, kid and author (43 + 41 bytes), and prev
		// (39 bytes) on all cards but the first.
		if saved := len(plain) - len(wire); saved < 120*len(seg) {
			t.Fatalf("from %d: saved only %d bytes over %d cards", from, saved, len(seg))
		}
		back, err := Decode(wire)
		if err != nil {
			t.Fatal(err)
		}
		if back.T != TCards || back.From != uint64(from+1) || len(back.Cards) != len(seg) {
			t.Fatalf("decoded to %+v", back)
		}
		for i := range seg {
			if !bytes.Equal(back.Cards[i], seg[i]) {
				t.Fatalf("from %d: card %d not rebuilt exactly", from, i)
			}
		}
	}
}

// TestCompactCardsOtherAuthorStaysPlain: a card of another log cannot be
// elided under the announced author, so the message goes out whole.
func TestCompactCardsOtherAuthorStaysPlain(t *testing.T) {
	cards := chain(t, 2, 10)
	other := chain(t, 1, 11)
	m := CardsMsg(authorOf(t, cards[0]), 1, append(cards[:1:1], other...))
	if m.T != TCards {
		t.Fatal("a batch with another author's card was compacted")
	}
}

// TestCompactTamperedRefused flips every byte of a compact message in turn:
// each result is refused by Decode, or rebuilds into cards that are the
// originals or that card.Decode refuses. Nothing panics.
func TestCompactTamperedRefused(t *testing.T) {
	cards := chain(t, 3, 40)
	author := authorOf(t, cards[0])
	wire, err := Encode(CardsMsg(author, 1, cards))
	if err != nil {
		t.Fatal(err)
	}
	refusedAtDecode, refusedAtVerify := 0, 0
	for i := range wire {
		for _, x := range []byte{0x01, 0x80} {
			b := bytes.Clone(wire)
			b[i] ^= x
			m, err := Decode(b)
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
					t.Fatalf("byte %d: refused with an unclassified error: %v", i, err)
				}
				refusedAtDecode++
				continue
			}
			if m.T != TCards {
				continue // the flip turned it into another valid message type
			}
			for k, c := range m.Cards {
				if k < len(cards) && bytes.Equal(c, cards[k]) && m.From == uint64(k+1) {
					continue
				}
				if _, err := card.DecodeAnyCaps(c); err == nil && (k >= len(cards) || !bytes.Equal(c, cards[k])) {
					t.Fatalf("byte %d: a tampered compact message rebuilt into a different valid card", i)
				}
				refusedAtVerify++
			}
		}
	}
	if refusedAtDecode == 0 || refusedAtVerify == 0 {
		t.Fatalf("refused at decode %d, at verify %d: both paths should be exercised", refusedAtDecode, refusedAtVerify)
	}
}

// TestCompactRebuildRefusals: bad elided forms are refused by Decode with
// ErrMalformed before any card is verified.
func TestCompactRebuildRefusals(t *testing.T) {
	cards := chain(t, 2, 20)
	author := authorOf(t, cards[0])
	m := CardsMsg(author, 1, cards)
	for name, mut := range map[string]func([][]byte) [][]byte{
		"short":     func(c [][]byte) [][]byte { c[0] = c[0][:64]; return c },
		"not a map": func(c [][]byte) [][]byte { c[1] = append(bytes.Clone(c[1][:64]), 0x80); return c },
		"trailing":  func(c [][]byte) [][]byte { c[1] = append(bytes.Clone(c[1]), 0); return c },
		"author present": func(c [][]byte) [][]byte {
			e, _ := card.Elide(cards[0], author, nil)
			c[0] = withAuthor(e, author)
			return c
		},
	} {
		bad := &Msg{T: TCardsCompact, Author: m.Author, From: 1, Cards: mut(append([][]byte(nil), m.Cards...))}
		b, err := Encode(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// withAuthor adds an author entry to an elided form's map (at its end; the
// refusal comes before any order check).
func withAuthor(e []byte, author key.ID) []byte {
	out := bytes.Clone(e)
	out[64]++
	out = append(out, "\x66author\x58\x20"...)
	return append(out, author.Bytes()...)
}
