package card

import (
	"bytes"
	"fmt"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

// The elided wire form of a card (sync's compact Cards message, ARCHITECTURE.md
// "Sync"): within one log's batch the receiver already knows the author, so
// the envelope (whose only variable parts are the kid, the payload length and
// the signature), the payload's author entry and, after the first card, its
// prev entry (the previous card's ID) are left out. Elide gives the 64-byte
// signature followed by the payload map without those entries; Rebuild puts
// them back and gives the exact original bytes, which are then decoded and
// verified like any other card. Rebuild never trusts what it rebuilds.

var (
	entryAuthor = []byte("\x66author")
	entryPrev   = []byte("\x64prev")
)

// entry is one key/value pair of a payload map, as byte ranges.
type entry struct{ key, val []byte }

// mapEntries splits a map whose keys are short text strings into entries.
func mapEntries(b []byte) ([]entry, bool) {
	m, n, i, ok := chead(b, 0)
	if !ok || m != 5 || n > 23 {
		return nil, false
	}
	out := make([]entry, 0, n+2)
	for range n {
		km, kl, j, ok := chead(b, i)
		if !ok || km != 3 || kl > 23 || uint64(len(b)-j) < kl {
			return nil, false
		}
		k := b[i : j+int(kl)]
		e, ok := skipItem(b, j+int(kl), canon.MaxNesting-2)
		if !ok {
			return nil, false
		}
		out = append(out, entry{k, b[j+int(kl) : e]})
		i = e
	}
	if i != len(b) {
		return nil, false
	}
	return out, true
}

// Elide gives the elided form of a card of author's log. prev, when not
// nil, is the card ID the receiver will put back as the card's prev (the
// previous card of the same batch); the prev entry is left out only when it
// equals it. ok is false when the card is not in the one canonical envelope
// layout or its author is another (send such a card in full).
func Elide(raw []byte, author key.ID, prev *ID) (elided []byte, ok bool) {
	env, ph, fast := fixedEnvelope(raw)
	if !fast || !bytes.Equal(ph.Kid, author.Bytes()) {
		return nil, false
	}
	ents, ok := mapEntries(env.Payload)
	if !ok {
		return nil, false
	}
	out := make([]byte, 0, len(raw))
	out = append(out, env.Signature...)
	out = append(out, 0) // map head, set below
	n, sawAuthor := 0, false
	for _, e := range ents {
		switch {
		case bytes.Equal(e.key, entryAuthor):
			if string(e.val) != "\x58\x20"+string(author.Bytes()) {
				return nil, false
			}
			sawAuthor = true
			continue
		case bytes.Equal(e.key, entryPrev) && prev != nil && string(e.val) == "\x58\x20"+string(prev[:]):
			continue
		}
		out = append(out, e.key...)
		out = append(out, e.val...)
		n++
	}
	if !sawAuthor {
		return nil, false
	}
	out[key.SignatureSize] = 0xa0 | byte(n)
	return out, true
}

// Rebuild gives the exact card bytes of an elided card of author's log.
// prev, when not nil, is put back as the card's prev if the elided payload
// has none. It refuses (ErrNotSign1) what cannot be a card's elided form: too
// short, a payload that is not a map of short text keys, an author entry
// present, or a result over MaxSize. Whatever it rebuilds must still pass
// Decode; a tampered elided form gives bytes whose signature fails.
func Rebuild(elided []byte, author key.ID, prev *ID) ([]byte, error) {
	if len(elided) < key.SignatureSize+1 {
		return nil, fmt.Errorf("%w: elided card of %d bytes", ErrNotSign1, len(elided))
	}
	sig, pm := elided[:key.SignatureSize], elided[key.SignatureSize:]
	ents, ok := mapEntries(pm)
	if !ok {
		return nil, fmt.Errorf("%w: elided payload is not a map of text keys", ErrNotSign1)
	}
	a := append([]byte("\x58\x20"), author.Bytes()...)
	add := []entry{{entryAuthor, a}}
	hasPrev := false
	for _, e := range ents {
		switch {
		case bytes.Equal(e.key, entryAuthor):
			return nil, fmt.Errorf("%w: elided payload carries an author", ErrNotSign1)
		case bytes.Equal(e.key, entryPrev):
			hasPrev = true
		}
	}
	if !hasPrev && prev != nil { // "prev" sorts before "author"
		add = append([]entry{{entryPrev, append([]byte("\x58\x20"), prev[:]...)}}, add...)
	}
	if len(ents)+len(add) > 23 {
		return nil, fmt.Errorf("%w: elided payload has %d entries", ErrNotSign1, len(ents))
	}
	// Put the entries back in canonical order (bytewise by encoded key);
	// an elided payload out of order rebuilds into a card Decode refuses.
	size := len(pm) + len(a) + len(entryAuthor) + 2 + 32 + len(entryPrev)
	payload := make([]byte, 1, size)
	payload[0] = 0xa0 | byte(len(ents)+len(add))
	for _, e := range ents {
		for len(add) > 0 && bytes.Compare(add[0].key, e.key) < 0 {
			payload = append(append(payload, add[0].key...), add[0].val...)
			add = add[1:]
		}
		payload = append(append(payload, e.key...), e.val...)
	}
	for _, e := range add {
		payload = append(append(payload, e.key...), e.val...)
	}
	out := make([]byte, 0, 48+len(payload)+2+key.SignatureSize)
	out = append(out, coseTag, 0x84, 0x58, 0x26, 0xa2, 0x01, 0x27, 0x04, 0x58, 0x20)
	out = append(out, author.Bytes()...)
	out = append(out, emptyMapHdr)
	switch n := len(payload); {
	case n < 256:
		out = append(out, 0x58, byte(n))
	case n < 1<<16:
		out = append(out, 0x59, byte(n>>8), byte(n))
	default:
		return nil, fmt.Errorf("%w: rebuilt card over %d bytes", ErrTooLarge, MaxSize)
	}
	out = append(out, payload...)
	out = append(out, 0x58, key.SignatureSize)
	out = append(out, sig...)
	if len(out) > MaxSize {
		return nil, fmt.Errorf("%w: rebuilt card of %d bytes", ErrTooLarge, len(out))
	}
	return out, nil
}
