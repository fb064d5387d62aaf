package golden

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

// The `cards-compact` suite pins the compact Cards message (sync protocol
// version 2): the golden card chain sent as compact messages (the whole
// chain from seq 1, and a batch from the middle, whose first card keeps its
// prev), and tampered forms that must be refused. The checker decodes the
// message and requires exactly the card bytes listed (card.N), so the card
// IDs and the `card` vectors are unchanged by the wire form.

func init() {
	Register(&Suite{Name: "cards-compact", Generate: genCardsCompact, Check: checkCardsCompact})
}

func genCardsCompact() ([]*Vector, error) {
	chain, err := Chain()
	if err != nil {
		return nil, err
	}
	author := chain[0].Author()
	var out []*Vector
	for _, from := range []int{1, 4} {
		var cards [][]byte
		for _, c := range chain[from-1:] {
			cards = append(cards, c.Bytes())
		}
		m := proto.CardsMsg(author, uint64(from), cards)
		if m.T != proto.TCardsCompact {
			return nil, fmt.Errorf("golden: the golden chain does not compact")
		}
		b, err := proto.Encode(m)
		if err != nil {
			return nil, err
		}
		plain, _ := proto.Encode(&proto.Msg{T: proto.TCards, Author: author.Bytes(), From: uint64(from), Cards: cards})
		v := newVector("cards-compact", fmt.Sprintf("alice-from-%d", from), "accept",
			"a compact Cards message (t = 7); decoding it must give exactly card.0.. card.N (the card vectors' bytes)",
			fmt.Sprintf("%d bytes against %d for the plain Cards message", len(b), len(plain)))
		v.Set("author", author.String())
		v.Set("from", strconv.Itoa(from))
		v.SetHex("msg", b)
		for i, c := range cards {
			v.SetHex(fmt.Sprintf("card.%d", i), c)
		}
		out = append(out, v)
	}

	// Tampered compact messages.
	cards := [][]byte{chain[0].Bytes(), chain[1].Bytes()}
	m := proto.CardsMsg(author, 1, cards)
	tamper := func(name, reason, comment string, f func(c [][]byte) [][]byte) error {
		bad := &proto.Msg{T: proto.TCardsCompact, Author: m.Author, From: m.From, Cards: f(append([][]byte(nil), m.Cards...))}
		b, err := proto.Encode(bad)
		if err != nil {
			return err
		}
		if _, err := decodeCompact(b); Reason(err) != reason {
			return fmt.Errorf("golden: cards-compact %s: refused as %v, want %s", name, err, reason)
		}
		v := newVector("cards-compact", name, "reject "+reason, comment)
		v.Set("author", author.String())
		v.SetHex("msg", b)
		out = append(out, v)
		return nil
	}
	if err := tamper("reject-author-present", "not-cose-sign1", "an elided card that still carries an author entry", func(c [][]byte) [][]byte {
		e := bytes.Clone(c[0])
		e[key.SignatureSize]++
		e = append(append(e, "\x66author\x58\x20"...), author.Bytes()...)
		c[0] = e
		return c
	}); err != nil {
		return nil, err
	}
	if err := tamper("reject-truncated", "not-cose-sign1", "an elided card cut inside its payload", func(c [][]byte) [][]byte {
		c[1] = c[1][:len(c[1])-3]
		return c
	}); err != nil {
		return nil, err
	}
	if err := tamper("reject-bad-signature", "bad-signature", "a flipped signature bit: rebuilds, then fails verification", func(c [][]byte) [][]byte {
		e := bytes.Clone(c[1])
		e[5] ^= 1
		c[1] = e
		return c
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeCompact decodes a message and verifies every card it carries.
func decodeCompact(b []byte) ([][]byte, error) {
	m, err := proto.Decode(b)
	if err != nil {
		return nil, err
	}
	if m.T != proto.TCards {
		return nil, fmt.Errorf("%w: message type %d", proto.ErrMalformed, m.T)
	}
	for _, c := range m.Cards {
		if _, err := card.DecodeAnyCaps(c); err != nil {
			return nil, err
		}
	}
	return m.Cards, nil
}

func checkCardsCompact(v *Vector) error {
	accept, reason, _ := v.Expect()
	b, err := v.Hex("msg")
	if err != nil {
		return err
	}
	cards, err := decodeCompact(b)
	if !accept {
		return expectReject(v, err, reason)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	for i, c := range cards {
		want, err := v.Hex(fmt.Sprintf("card.%d", i))
		if err != nil {
			return err
		}
		if !bytes.Equal(c, want) {
			return fmt.Errorf("%w: %s: card %d rebuilds differently", ErrMismatch, v.ID(), i)
		}
	}
	if _, ok := v.Get(fmt.Sprintf("card.%d", len(cards))); ok {
		return fmt.Errorf("%w: %s: the message carries fewer cards than listed", ErrMismatch, v.ID())
	}
	return nil
}
