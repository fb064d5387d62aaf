package golden

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/canon"
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
//
// Stubs (a withheld card's ID in its place, 32 bytes; log/stub.go): a
// compact message with a stub lists stub.N instead of card.N; the card after
// a stub elides its prev when it is the stub's ID, so a forged stub makes
// that card's signature fail; in the plain form a stub that is not the next
// card's prev is refused as stub-contradicted. The Want message (t = 8,
// version 3) names seqs a side holds as stubs: `want` lists its author and
// seqs, `reject-want-unordered` must be refused as a malformed message.

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

	// A withheld card travels as a stub.
	stubbed := [][]byte{chain[0].Bytes(), idBytes(chain[1].ID()), chain[2].Bytes(), chain[3].Bytes()}
	sm := proto.CardsMsg(author, 1, stubbed)
	if sm.T != proto.TCardsCompact {
		return nil, fmt.Errorf("golden: a chain with a stub does not compact")
	}
	sb, err := proto.Encode(sm)
	if err != nil {
		return nil, err
	}
	v := newVector("cards-compact", "stub-from-1", "accept",
		"a compact Cards message with a stub at seq 2 (the ID of a withheld card, 32 bytes, in its place);",
		"decoding gives card.0, stub.1, card.2, card.3; card.2's prev is elided and rebuilt from the stub")
	v.Set("author", author.String())
	v.Set("from", "1")
	v.SetHex("msg", sb)
	for i, c := range stubbed {
		k := "card"
		if proto.IsStub(c) {
			k = "stub"
		}
		v.SetHex(fmt.Sprintf("%s.%d", k, i), c)
	}
	out = append(out, v)
	forged := &proto.Msg{T: proto.TCardsCompact, Author: sm.Author, From: 1, Cards: append([][]byte(nil), sm.Cards...)}
	fs := bytes.Clone(forged.Cards[1])
	fs[0] ^= 1
	forged.Cards[1] = fs
	if fb, err := proto.Encode(forged); err != nil {
		return nil, err
	} else if _, err := decodeCompact(fb); Reason(err) != "bad-signature" {
		return nil, fmt.Errorf("golden: cards-compact reject-stub-forged: refused as %v", err)
	} else {
		v := newVector("cards-compact", "reject-stub-forged", "reject bad-signature",
			"a compact message whose stub names another ID: the next card's prev is rebuilt from it, so its signature fails")
		v.Set("author", author.String())
		v.SetHex("msg", fb)
		out = append(out, v)
	}
	wrong := idBytes(chain[2].ID()) // another card's ID: a stub replayed at another seq
	plain := &proto.Msg{T: proto.TCards, Author: author.Bytes(), From: 1, Cards: [][]byte{chain[0].Bytes(), wrong, chain[2].Bytes()}}
	if pb, err := proto.Encode(plain); err != nil {
		return nil, err
	} else if _, err := decodeCompact(pb); Reason(err) != "stub-contradicted" {
		return nil, fmt.Errorf("golden: cards-compact reject-stub-contradicted: refused as %v", err)
	} else {
		v := newVector("cards-compact", "reject-stub-contradicted", "reject stub-contradicted",
			"a plain Cards message whose stub at seq 2 is the ID of seq 3 (replayed at another seq): seq 3's signed prev names another ID")
		v.Set("author", author.String())
		v.SetHex("msg", pb)
		out = append(out, v)
	}

	// The Want message, and one with its seqs out of order.
	wb, err := proto.Encode(&proto.Msg{T: proto.TWant, Author: author.Bytes(), Seqs: []uint64{2, 5}})
	if err != nil {
		return nil, err
	}
	v = newVector("cards-compact", "want", "accept",
		"a Want message (t = 8): the sender holds stubs at seqs 2 and 5 of author's log and asks for the cards there")
	v.Set("author", author.String())
	v.Set("seqs", "2,5")
	v.SetHex("msg", wb)
	out = append(out, v)
	ub := canon.MustMarshal(map[string]any{"t": proto.TWant, "a": author.Bytes(), "q": []uint64{5, 2}})
	if _, err := proto.Decode(ub); Reason(err) != "malformed-message" {
		return nil, fmt.Errorf("golden: cards-compact reject-want-unordered: refused as %v", err)
	}
	v = newVector("cards-compact", "reject-want-unordered", "reject malformed-message", "a Want message whose seqs are not increasing")
	v.Set("author", author.String())
	v.SetHex("msg", ub)
	out = append(out, v)

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
	for i, c := range m.Cards {
		if proto.IsStub(c) {
			continue
		}
		if _, err := card.DecodeAnyCaps(c); err != nil {
			return nil, err
		}
		// The store's rule for a stub: the next card's signed prev proves it.
		if i > 0 && proto.IsStub(m.Cards[i-1]) {
			stub, _ := card.IDFromBytes(m.Cards[i-1])
			if _, _, prev, err := card.Links(c); err != nil {
				return nil, err
			} else if !stub.IsZero() && prev != stub {
				return nil, fmt.Errorf("%w: stub %s before a card whose prev is %s", sublog.ErrStubContradicted, stub, prev)
			}
		}
	}
	return m.Cards, nil
}

func idBytes(id card.ID) []byte { return bytes.Clone(id[:]) }

func checkCardsCompact(v *Vector) error {
	accept, reason, _ := v.Expect()
	b, err := v.Hex("msg")
	if err != nil {
		return err
	}
	if want, ok := v.Get("seqs"); ok || strings.Contains(v.ID(), "want") {
		m, err := proto.Decode(b)
		if !accept {
			return expectReject(v, err, reason)
		}
		if err != nil || m.T != proto.TWant || fmt.Sprint(m.Seqs) != "["+strings.ReplaceAll(want, ",", " ")+"]" {
			return fmt.Errorf("%w: %s: %v %+v", ErrMismatch, v.ID(), err, m)
		}
		if a, _ := v.Get("author"); a != "" {
			id, err := key.ParseID(a)
			if err != nil || string(id.Bytes()) != string(m.Author) {
				return fmt.Errorf("%w: %s: author", ErrMismatch, v.ID())
			}
		}
		return nil
	}
	cards, err := decodeCompact(b)
	if !accept {
		return expectReject(v, err, reason)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	for i, c := range cards {
		k := "card"
		if _, ok := v.Get(fmt.Sprintf("stub.%d", i)); ok {
			k = "stub"
		}
		want, err := v.Hex(fmt.Sprintf("%s.%d", k, i))
		if err != nil {
			return err
		}
		if !bytes.Equal(c, want) || (k == "stub") != proto.IsStub(c) {
			return fmt.Errorf("%w: %s: %s %d rebuilds differently", ErrMismatch, v.ID(), k, i)
		}
	}
	_, moreCard := v.Get(fmt.Sprintf("card.%d", len(cards)))
	_, moreStub := v.Get(fmt.Sprintf("stub.%d", len(cards)))
	if moreCard || moreStub {
		return fmt.Errorf("%w: %s: the message carries fewer cards than listed", ErrMismatch, v.ID())
	}
	return nil
}
