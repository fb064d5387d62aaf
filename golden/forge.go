package golden

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	"github.com/fxamacker/cbor/v2"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

// The forging toolkit builds real bad bytes for negative vectors and tests:
// a card's payload as an ordered list of key/value pairs that can be
// reordered, duplicated or re-encoded, then signed validly, so that the only
// thing wrong with the result is the one thing the vector names.

// Pair is one payload entry: a text key and its value's raw CBOR.
type Pair struct {
	Key string
	Val []byte
}

// PayloadPairs splits a card's payload into pairs in canonical order.
func PayloadPairs(c *card.Card) ([]Pair, error) {
	var m map[string]cbor.RawMessage
	if err := cbor.Unmarshal(c.Payload(), &m); err != nil {
		return nil, err
	}
	out := make([]Pair, 0, len(m))
	for k, v := range m {
		out = append(out, Pair{k, v})
	}
	SortPairs(out)
	return out, nil
}

// SortPairs orders pairs canonically (shorter keys first, then bytewise).
func SortPairs(p []Pair) {
	sort.Slice(p, func(i, j int) bool {
		if len(p[i].Key) != len(p[j].Key) {
			return len(p[i].Key) < len(p[j].Key)
		}
		return p[i].Key < p[j].Key
	})
}

// Set replaces (or adds) a pair's value, keeping canonical order.
func Set(p []Pair, k string, v []byte) []Pair {
	for i := range p {
		if p[i].Key == k {
			p[i].Val = v
			return p
		}
	}
	p = append(p, Pair{k, v})
	SortPairs(p)
	return p
}

// EncodeMap writes pairs as a CBOR map in the given order; indefinite uses
// the indefinite-length form.
func EncodeMap(p []Pair, indefinite bool) []byte {
	var b bytes.Buffer
	if indefinite {
		b.WriteByte(0xbf)
	} else {
		b.Write(head(5, uint64(len(p))))
	}
	for _, e := range p {
		b.Write(canon.MustMarshal(e.Key))
		b.Write(e.Val)
	}
	if indefinite {
		b.WriteByte(0xff)
	}
	return b.Bytes()
}

// head is the shortest CBOR head for major type mt and argument n.
func head(mt byte, n uint64) []byte {
	switch {
	case n < 24:
		return []byte{mt<<5 | byte(n)}
	case n <= 0xff:
		return []byte{mt<<5 | 24, byte(n)}
	case n <= 0xffff:
		return []byte{mt<<5 | 25, byte(n >> 8), byte(n)}
	}
	return []byte{mt<<5 | 26, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// Resign signs payload bytes as sk with kid = sk's key and EdDSA.
func Resign(sk *key.Secret, payload []byte) []byte {
	b, err := card.SignPayload(sk, sk.ID().Bytes(), -8, payload)
	if err != nil {
		panic(err) // only fails on programming errors
	}
	return b
}

// Reason names why err rejected something, in the vocabulary of negative
// vectors; "" when err is nil, "other" when no reason matches.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}

// reasons is ordered: the most specific cause first.
var reasons = []struct {
	name string
	err  error
}{
	{"too-large", card.ErrTooLarge},
	{"not-cose-sign1", card.ErrNotSign1},
	{"duplicate-key", canon.ErrDuplicateKey},
	{"indefinite-length", canon.ErrIndefinite},
	{"tag", canon.ErrTag},
	{"trailing-bytes", canon.ErrTrailing},
	{"non-canonical", canon.ErrNonCanonical},
	{"unknown-field", canon.ErrUnknownField},
	{"too-deep", canon.ErrTooDeep},
	{"malformed", canon.ErrMalformed},
	{"bad-header", card.ErrBadHeader},
	{"kid-mismatch", card.ErrKidMismatch},
	{"bad-signature", card.ErrBadSignature},
	{"bad-signature", key.ErrBadSignature},
	{"unsupported-cap", card.ErrUnsupportedCp},
	{"non-canonical-key", key.ErrNonCanonical},
	{"weak-key", key.ErrWeakKey},
	{"bad-length", key.ErrBadLength},
	{"bad-text", key.ErrBadText},
	{"bad-field", card.ErrBadField},
	{"replayed", sublog.ErrDuplicate},
	{"gap", sublog.ErrGap},
	{"bad-chain", sublog.ErrBadChain},
	{"fork", sublog.ErrFork},
	{"forked", sublog.ErrForked},
	{"bad-proof", sublog.ErrBadProof},
	{"stub-contradicted", sublog.ErrStubContradicted},
	{"stub-conflict", sublog.ErrStubConflict},
	{"stub-unproven", sublog.ErrStubUnproven},
	{"malformed-message", proto.ErrMalformed},
}

// expectReject checks that err is the rejection the vector names.
func expectReject(v *Vector, err error, want string) error {
	if err == nil {
		return fmt.Errorf("%w: %s: accepted, want reject %s", ErrMismatch, v.ID(), want)
	}
	if got := Reason(err); got != want {
		return fmt.Errorf("%w: %s: rejected as %s (%v), want %s", ErrMismatch, v.ID(), got, err, want)
	}
	return nil
}
