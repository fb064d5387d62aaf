package sync

import (
	"errors"
	"fmt"
	"slices"
	stdsync "sync"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

// Store is what sync needs from a log store. Package log implements it
// (through an adapter, see logstore.go); MemStore is the in-memory version
// tests use. Every method is safe for concurrent use.
//
// Import and ImportBatch verify every card fully (canonical form, signature,
// capabilities) and accept it only in chain order; on refusal they return one
// of the errors below (wrapped), or a card decoding error from log/card.
type Store interface {
	// Heads lists the head of every log in the store.
	Heads() ([]proto.Head, error)
	// Head is author's head; ok is false when the store has no card of author.
	Head(author key.ID) (h proto.Head, ok bool, err error)
	// Get returns author's card at seq, or ErrNotFound.
	Get(author key.ID, seq uint64) (*card.Card, error)
	// Scan calls fn with author's cards from seq from on, in chain order,
	// until fn returns an error (which Scan returns; ErrStop ends it cleanly).
	Scan(author key.ID, from uint64, fn func(*card.Card) error) error
	// Import verifies and stores one card. A card whose seq is already
	// taken by a different card is kept as a fork proof and ErrFork returned;
	// the same card again gives ErrDuplicate.
	Import(b []byte) (*card.Card, error)
	// ImportBatch imports cards in order and stops at the first refusal,
	// returning how many were stored before it and its error.
	ImportBatch(bs [][]byte) (int, error)
	// ForkProof returns the two cards proving author forked, if the store
	// holds such a proof.
	ForkProof(author key.ID) (a, b []byte, ok bool, err error)
	// AddForkProof verifies two cards of one author at one seq with
	// different IDs and keeps them as a proof; the author is not extended
	// past the fork afterwards.
	AddForkProof(a, b []byte) error
}

// Errors of stores and sessions.
var (
	ErrNotFound   = errors.New("sync: no such card")
	ErrDuplicate  = errors.New("sync: card already stored")
	ErrFork       = errors.New("sync: card forks its author's log")
	ErrForked     = errors.New("sync: author has forked; log not extended")
	ErrGap        = errors.New("sync: card does not follow the author's head")
	ErrBadChain   = errors.New("sync: card's prev is not the card before it")
	ErrBadProof   = errors.New("sync: not a fork proof")
	ErrStop       = errors.New("sync: stop scan")
	ErrStalled    = errors.New("sync: peer stalled")
	ErrWrongOwner = errors.New("sync: card of another author than announced")
)

// MemStore is an in-memory Store for tests and tools. It verifies exactly as
// the Store contract says.
type MemStore struct {
	caps  card.Caps
	mu    stdsync.RWMutex
	logs  map[key.ID][]*card.Card
	forks map[key.ID][2]*card.Card
}

// NewMemStore makes an empty store that checks required capabilities with caps.
func NewMemStore(caps card.Caps) *MemStore {
	return &MemStore{caps: caps, logs: map[key.ID][]*card.Card{}, forks: map[key.ID][2]*card.Card{}}
}

func (s *MemStore) head(a key.ID) (proto.Head, bool) {
	l := s.logs[a]
	if len(l) == 0 {
		return proto.Head{}, false
	}
	c := l[len(l)-1]
	_, forked := s.forks[a]
	return proto.Head{Author: a, Seq: c.Seq(), ID: c.ID(), Forked: forked}, true
}

// Heads implements Store.
func (s *MemStore) Heads() ([]proto.Head, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]proto.Head, 0, len(s.logs))
	for a := range s.logs {
		h, _ := s.head(a)
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b proto.Head) int { return a.Author.Compare(b.Author) })
	return out, nil
}

// Head implements Store.
func (s *MemStore) Head(a key.ID) (proto.Head, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.head(a)
	return h, ok, nil
}

// Get implements Store.
func (s *MemStore) Get(a key.ID, seq uint64) (*card.Card, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := s.logs[a]
	if seq == 0 || seq > uint64(len(l)) {
		return nil, fmt.Errorf("%w: %s@%d", ErrNotFound, a, seq)
	}
	return l[seq-1], nil
}

// Scan implements Store.
func (s *MemStore) Scan(a key.ID, from uint64, fn func(*card.Card) error) error {
	s.mu.RLock()
	l := s.logs[a]
	s.mu.RUnlock()
	for seq := max(from, 1); seq <= uint64(len(l)); seq++ {
		if err := fn(l[seq-1]); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// Import implements Store.
func (s *MemStore) Import(b []byte) (*card.Card, error) {
	c, err := card.Decode(b, s.caps)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return c, s.put(c)
}

func (s *MemStore) put(c *card.Card) error {
	a := c.Author()
	l := s.logs[a]
	n := uint64(len(l))
	switch {
	case c.Seq() <= n:
		old := l[c.Seq()-1]
		if old.ID() == c.ID() {
			return fmt.Errorf("%w: %s@%d", ErrDuplicate, a, c.Seq())
		}
		if _, ok := s.forks[a]; !ok {
			s.forks[a] = [2]*card.Card{old, c}
		}
		return fmt.Errorf("%w: %s@%d", ErrFork, a, c.Seq())
	case s.forks[a] != [2]*card.Card{}:
		return fmt.Errorf("%w: %s", ErrForked, a)
	case c.Seq() != n+1:
		return fmt.Errorf("%w: %s@%d after head %d", ErrGap, a, c.Seq(), n)
	}
	if prev, _ := c.Prev(); n > 0 && prev != l[n-1].ID() {
		return fmt.Errorf("%w: %s@%d", ErrBadChain, a, c.Seq())
	}
	s.logs[a] = append(l, c)
	return nil
}

// ImportBatch implements Store.
func (s *MemStore) ImportBatch(bs [][]byte) (int, error) {
	for i, b := range bs {
		if _, err := s.Import(b); err != nil {
			return i, err
		}
	}
	return len(bs), nil
}

// ForkProof implements Store.
func (s *MemStore) ForkProof(a key.ID) ([]byte, []byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f, ok := s.forks[a]
	if !ok {
		return nil, nil, false, nil
	}
	return f[0].Bytes(), f[1].Bytes(), true, nil
}

// AddForkProof implements Store.
func (s *MemStore) AddForkProof(ab, bb []byte) error {
	a, b, err := CheckForkProof(ab, bb, s.caps)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.forks[a.Author()]; !ok {
		s.forks[a.Author()] = [2]*card.Card{a, b}
	}
	return nil
}

// CheckForkProof verifies that two card encodings prove a fork: both valid,
// one author, one seq, different IDs.
func CheckForkProof(ab, bb []byte, caps card.Caps) (*card.Card, *card.Card, error) {
	a, err := card.Decode(ab, caps)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	b, err := card.Decode(bb, caps)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	if a.Author() != b.Author() || a.Seq() != b.Seq() || a.ID() == b.ID() {
		return nil, nil, fmt.Errorf("%w: %s@%d and %s@%d", ErrBadProof, a.Author(), a.Seq(), b.Author(), b.Seq())
	}
	return a, b, nil
}

// PeekAuthor reads the author (COSE kid) of card bytes without verifying
// anything else; the store verifies. It lets a session refuse a card that is
// not of the log it was announced for before spending a signature check.
func PeekAuthor(b []byte) (key.ID, error) {
	type envelope struct {
		_           struct{} `cbor:",toarray"`
		Protected   []byte
		Unprotected map[int64]any
		Payload     []byte
		Signature   []byte
	}
	if len(b) < 2 || b[0] != 0xd2 {
		return key.ID{}, fmt.Errorf("%w: not a card", ErrWrongOwner)
	}
	var env envelope
	if err := canon.Unmarshal(b[1:], &env); err != nil {
		return key.ID{}, fmt.Errorf("%w: %v", ErrWrongOwner, err)
	}
	var ph struct {
		Alg int64  `cbor:"1,keyasint"`
		Kid []byte `cbor:"4,keyasint"`
	}
	if err := canon.Unmarshal(env.Protected, &ph); err != nil {
		return key.ID{}, fmt.Errorf("%w: %v", ErrWrongOwner, err)
	}
	return key.IDFromBytes(ph.Kid)
}
