package log

import (
	"errors"
	"fmt"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// ErrBadProof: bytes that do not prove a fork.
var ErrBadProof = errors.New("log: not a valid fork proof")

// ForkProof is portable evidence that an author signed two histories: two
// valid cards by one author at the same seq with different IDs. Anyone can
// verify it offline with nothing but the two cards.
//
// Encoding (canonical CBOR): {"v": 1, "a": bstr, "b": bstr}, where a and b
// are the cards' COSE_Sign1 bytes and a has the smaller card ID.
type ForkProof struct {
	a, b *card.Card
}

type forkWire struct {
	V uint64 `cbor:"v"`
	A []byte `cbor:"a"`
	B []byte `cbor:"b"`
}

// NewForkProof builds a proof from two conflicting cards (in any order).
func NewForkProof(x, y []byte) (*ForkProof, error) {
	a, err := card.DecodeAnyCaps(x)
	if err != nil {
		return nil, fmt.Errorf("%w: first card: %w", ErrBadProof, err)
	}
	b, err := card.DecodeAnyCaps(y)
	if err != nil {
		return nil, fmt.Errorf("%w: second card: %w", ErrBadProof, err)
	}
	if lessID(b.ID(), a.ID()) {
		a, b = b, a
	}
	p := &ForkProof{a: a, b: b}
	return p, p.check()
}

func lessID(x, y card.ID) bool { return string(x[:]) < string(y[:]) }

func (p *ForkProof) check() error {
	a, b := p.a, p.b
	if a.Author() != b.Author() {
		return fmt.Errorf("%w: two authors", ErrBadProof)
	}
	if a.Seq() != b.Seq() {
		return fmt.Errorf("%w: seqs %d and %d differ", ErrBadProof, a.Seq(), b.Seq())
	}
	if a.ID() == b.ID() {
		return fmt.Errorf("%w: the same card twice", ErrBadProof)
	}
	return nil
}

// DecodeForkProof parses and verifies a fork proof.
func DecodeForkProof(b []byte) (*ForkProof, error) {
	var w forkWire
	if err := canon.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	if w.V != 1 {
		return nil, fmt.Errorf("%w: version %d", ErrBadProof, w.V)
	}
	p, err := NewForkProof(w.A, w.B)
	if err != nil {
		return nil, err
	}
	if string(p.a.Bytes()) != string(w.A) {
		return nil, fmt.Errorf("%w: cards not in canonical order", ErrBadProof)
	}
	return p, nil
}

// Encode returns the proof's canonical bytes.
func (p *ForkProof) Encode() []byte {
	return canon.MustMarshal(forkWire{V: 1, A: p.a.Bytes(), B: p.b.Bytes()})
}

// Author is the identity that forked.
func (p *ForkProof) Author() key.ID { return p.a.Author() }

// Seq is the contested position.
func (p *ForkProof) Seq() uint64 { return p.a.Seq() }

// Cards returns the two conflicting cards.
func (p *ForkProof) Cards() (*card.Card, *card.Card) { return p.a, p.b }

// ForkProof returns the stored fork proof for author, if any.
func (s *Store) ForkProof(a key.ID) (*ForkProof, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	v, closer, err := s.db.Get(forkKey(a))
	if err != nil {
		return nil, fmt.Errorf("%w: fork proof for %s", ErrNotFound, a)
	}
	defer closer.Close()
	p, err := DecodeForkProof(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return p, nil
}

// ForkProofs returns every stored fork proof that still verifies, ordered by
// author (a damaged one is left out; Verify reports it).
func (s *Store) ForkProofs() ([]*ForkProof, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	it, err := s.db.NewIter(prefixBounds(pfxFork))
	if err != nil {
		return nil, err
	}
	var out []*ForkProof
	for it.First(); it.Valid(); it.Next() {
		p, err := DecodeForkProof(it.Value())
		if err != nil {
			continue // damaged on disk: Verify reports it
		}
		out = append(out, p)
	}
	return out, it.Close()
}

// ImportForkProof verifies a proof from elsewhere and, if valid, stores it
// and stops extending the author's log. The store need not hold either card.
func (s *Store) ImportForkProof(b []byte) (*ForkProof, error) {
	p, err := DecodeForkProof(b)
	if err != nil {
		return nil, err
	}
	a := p.Author()
	l := s.stripe(a)
	l.Lock()
	defer l.Unlock()
	h := s.tipOf(a)
	if h.forked() {
		return p, nil // one proof per author is enough
	}
	h.forkSeq = p.Seq()
	done, err := s.enqueue([]kv{{k: forkKey(a), v: p.Encode()}}, headUpdate{a.Array(), h})
	if err != nil {
		return nil, err
	}
	return p, <-done
}
