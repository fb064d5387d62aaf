package sync

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	stdsync "sync"

	sublog "github.com/sublog/sublog/log"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

// Store is what sync needs from a log store. *log.Store implements it (the
// assertion below keeps them tied); MemStore is the in-memory version tests
// use. Every method is safe for concurrent use.
//
// Import and ImportBatch verify every card fully (canonical form, signature,
// capabilities) and accept foreign cards only in chain order. They refuse
// with the log package's sentinels: log.ErrInvalid (failed verification),
// log.ErrDuplicate (already stored: a replay is harmless), log.ErrGap,
// log.ErrBadChain, log.ErrForked, and log.ErrFork after keeping a fork proof.
type Store interface {
	// Heads lists the head of every log, ordered by author.
	Heads() []sublog.Head
	// Head is author's head; ok is false when the store has no card of author.
	Head(author key.ID) (h sublog.Head, ok bool)
	// Get returns author's card at seq, or log.ErrNotFound, or
	// log.ErrWithheld where the store holds a stub (log/stub.go).
	Get(author key.ID, seq uint64) (*card.Card, error)
	// Stubs lists author's stubs from seq from on, in seq order.
	Stubs(author key.ID, from uint64) ([]sublog.Stub, error)
	// AllStubs lists every stub, log by log (authors in byte order), each
	// log in seq order.
	AllStubs() ([]sublog.Stub, error)
	// Scan calls fn with author's cards from seq from on, in chain order,
	// until fn returns an error (io.EOF ends it quietly).
	Scan(author key.ID, from uint64, fn func(*card.Card) error) error
	// Import verifies and stores one card.
	Import(b []byte) (*card.Card, error)
	// ImportBatch verifies and stores cards in input order (one author's in
	// chain order), reporting per index why any was refused. A
	// log.StubSize element is a stub, stored with the card after it, which
	// proves it (log.ErrStubUnproven when none follows).
	ImportBatch(raw [][]byte) (sublog.ImportResult, error)
	// ForkProof returns the stored fork proof of author, or log.ErrNotFound.
	ForkProof(author key.ID) (*sublog.ForkProof, error)
	// ImportForkProof verifies an encoded fork proof and keeps it; the
	// author is not extended past the fork afterwards.
	ImportForkProof(b []byte) (*sublog.ForkProof, error)
}

var (
	_ Store = (*sublog.Store)(nil)
	_ Store = (*MemStore)(nil)
)

// Errors of sessions.
var (
	// ErrStalled: the peer made no progress within the timeout and was dropped.
	ErrStalled = errors.New("sync: peer stalled")
	// ErrNotTaken: the trust rule does not take this log from this
	// peer or exporter (it is neither trusted nor one of this home's, and
	// the log is not one the home follows).
	ErrNotTaken = errors.New("sync: not a log this home takes from this source")
	// ErrWrongOwner: a card is not of the log it was sent as.
	ErrWrongOwner = errors.New("sync: card of another author than announced")
	// ErrLinkLifetime: a live link reached Limits.MaxLifetime and was
	// closed (the dialling side reconnects).
	ErrLinkLifetime = errors.New("sync: link lifetime reached")
)

// MemStore is an in-memory Store for tests and tools, with the log store's
// verification and chain rules.
type MemStore struct {
	caps  card.Caps
	mu    stdsync.RWMutex
	logs  map[key.ID][]*card.Card // nil where a stub is
	stubs map[key.ID]map[uint64]sublog.Stub
	forks map[key.ID]*sublog.ForkProof
}

// NewMemStore makes an empty store that checks required capabilities with caps.
func NewMemStore(caps card.Caps) *MemStore {
	return &MemStore{caps: caps, logs: map[key.ID][]*card.Card{}, stubs: map[key.ID]map[uint64]sublog.Stub{}, forks: map[key.ID]*sublog.ForkProof{}}
}

func (s *MemStore) head(a key.ID) (sublog.Head, bool) {
	l := s.logs[a]
	if len(l) == 0 {
		return sublog.Head{}, false
	}
	c := l[len(l)-1]
	_, forked := s.forks[a]
	return sublog.Head{Author: a, Seq: c.Seq(), ID: c.ID(), Forked: forked}, true
}

// Heads implements Store.
func (s *MemStore) Heads() []sublog.Head {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]sublog.Head, 0, len(s.logs))
	for a := range s.logs {
		if h, ok := s.head(a); ok {
			out = append(out, h)
		}
	}
	for a := range s.forks {
		if len(s.logs[a]) == 0 {
			out = append(out, sublog.Head{Author: a, Forked: true}) // known by its proof alone
		}
	}
	slices.SortFunc(out, func(a, b sublog.Head) int { return a.Author.Compare(b.Author) })
	return out
}

// Head implements Store.
func (s *MemStore) Head(a key.ID) (sublog.Head, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.head(a)
}

// Get implements Store.
func (s *MemStore) Get(a key.ID, seq uint64) (*card.Card, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l := s.logs[a]
	if seq == 0 || seq > uint64(len(l)) {
		return nil, fmt.Errorf("%w: %s@%d", sublog.ErrNotFound, a, seq)
	}
	if l[seq-1] == nil {
		return nil, fmt.Errorf("%w: %s@%d", sublog.ErrWithheld, a, seq)
	}
	return l[seq-1], nil
}

// Stubs implements Store.
func (s *MemStore) Stubs(a key.ID, from uint64) ([]sublog.Stub, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []sublog.Stub
	for seq, st := range s.stubs[a] {
		if seq >= from {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(x, y sublog.Stub) int { return cmp.Compare(x.Seq, y.Seq) })
	return out, nil
}

// AllStubs implements Store.
func (s *MemStore) AllStubs() ([]sublog.Stub, error) {
	s.mu.RLock()
	var authors []key.ID
	for a, m := range s.stubs {
		if len(m) > 0 {
			authors = append(authors, a)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(authors, key.ID.Compare)
	var out []sublog.Stub
	for _, a := range authors {
		st, _ := s.Stubs(a, 1)
		out = append(out, st...)
	}
	return out, nil
}

// link is the ID of a's log at seq (a card's or a proven stub's).
func (s *MemStore) link(a key.ID, seq uint64) (card.ID, bool) {
	l := s.logs[a]
	if seq == 0 || seq > uint64(len(l)) {
		return card.ID{}, false
	}
	if c := l[seq-1]; c != nil {
		return c.ID(), true
	}
	st := s.stubs[a][seq]
	return st.ID, st.Proven
}

// Scan implements Store.
func (s *MemStore) Scan(a key.ID, from uint64, fn func(*card.Card) error) error {
	s.mu.RLock()
	l := s.logs[a]
	s.mu.RUnlock()
	for seq := max(from, 1); seq <= uint64(len(l)); seq++ {
		if l[seq-1] == nil {
			continue // a stub
		}
		if err := fn(l[seq-1]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	return nil
}

// Import implements Store.
func (s *MemStore) Import(b []byte) (*card.Card, error) {
	if proto.IsStub(b) {
		return nil, fmt.Errorf("%w: a stub alone", sublog.ErrStubUnproven)
	}
	c, err := card.Decode(b, s.caps)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sublog.ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return c, s.put(c)
}

func (s *MemStore) fork(a key.ID, x, y []byte) error {
	if _, ok := s.forks[a]; ok {
		return fmt.Errorf("%w: %s", sublog.ErrForked, a)
	}
	p, err := sublog.DecodeForkProof(canon.MustMarshal(forkWire{V: 1, A: x, B: y}))
	if err != nil {
		p, err = sublog.DecodeForkProof(canon.MustMarshal(forkWire{V: 1, A: y, B: x}))
	}
	if err != nil {
		return err
	}
	s.forks[a] = p
	return fmt.Errorf("%w: %s at seq %d (proof stored)", sublog.ErrFork, a, p.Seq())
}

type forkWire struct {
	V uint64 `cbor:"v"`
	A []byte `cbor:"a"`
	B []byte `cbor:"b"`
}

func (s *MemStore) put(c *card.Card) error {
	a := c.Author()
	l := s.logs[a]
	n := uint64(len(l))
	_, forked := s.forks[a]
	switch {
	case c.Seq() <= n && l[c.Seq()-1] == nil:
		if forked {
			return fmt.Errorf("%w: %s", sublog.ErrForked, a)
		}
		st := s.stubs[a][c.Seq()]
		if st.Proven && st.ID != c.ID() {
			return fmt.Errorf("%w: %s@%d is not the card its stub names", sublog.ErrBadChain, a, c.Seq())
		}
		if prev, ok := c.Prev(); ok {
			if have, known := s.link(a, c.Seq()-1); known && have != prev {
				return fmt.Errorf("%w: %s@%d", sublog.ErrBadChain, a, c.Seq())
			}
			if before, ok := s.stubs[a][c.Seq()-1]; ok && !before.Proven {
				s.stubs[a][c.Seq()-1] = sublog.Stub{Author: a, Seq: c.Seq() - 1, ID: prev, Proven: true}
			}
		}
		l[c.Seq()-1] = c
		delete(s.stubs[a], c.Seq())
		return nil
	case c.Seq() <= n:
		old := l[c.Seq()-1]
		if old.ID() == c.ID() {
			return fmt.Errorf("%w: %s@%d", sublog.ErrDuplicate, a, c.Seq())
		}
		if forked {
			return fmt.Errorf("%w: %s", sublog.ErrForked, a)
		}
		return s.fork(a, old.Bytes(), c.Bytes())
	case forked:
		return fmt.Errorf("%w: %s", sublog.ErrForked, a)
	case c.Seq() != n+1:
		return fmt.Errorf("%w: %s@%d after head %d", sublog.ErrGap, a, c.Seq(), n)
	}
	if prev, _ := c.Prev(); n > 0 && l[n-1] != nil && prev != l[n-1].ID() {
		return fmt.Errorf("%w: %s@%d", sublog.ErrBadChain, a, c.Seq())
	}
	s.logs[a] = append(l, c)
	return nil
}

// ImportBatch implements Store.
func (s *MemStore) ImportBatch(raw [][]byte) (sublog.ImportResult, error) {
	res := sublog.ImportResult{Errs: map[int]error{}}
	var run []int
	for i, b := range raw {
		if proto.IsStub(b) {
			run = append(run, i)
			continue
		}
		var c *card.Card
		var err error
		if len(run) > 0 {
			var news []sublog.Stub
			c, news, err = s.importRun(raw, run, b)
			res.Stubs = append(res.Stubs, news...)
		} else {
			c, err = s.Import(b)
		}
		if err != nil {
			res.Errs[i] = err
			for _, j := range run {
				res.Errs[j] = err
			}
			run = nil
			continue
		}
		run = nil
		res.Accepted = append(res.Accepted, c)
	}
	for _, j := range run {
		res.Errs[j] = sublog.ErrStubUnproven
	}
	return res, nil
}

// importRun stores the stubs raw[run] with the card b after them, which
// proves the last one (the rules of log/stub.go).
func (s *MemStore) importRun(raw [][]byte, run []int, b []byte) (*card.Card, []sublog.Stub, error) {
	c, err := card.Decode(b, s.caps)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", sublog.ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := c.Author()
	k := uint64(len(run))
	if c.Seq() <= k {
		return nil, nil, fmt.Errorf("%w: stubs before seq 1", sublog.ErrStubContradicted)
	}
	if _, forked := s.forks[a]; forked {
		return nil, nil, fmt.Errorf("%w: %s", sublog.ErrForked, a)
	}
	n := uint64(len(s.logs[a]))
	if c.Seq() <= n {
		return c, nil, s.put(c) // the card decides; the stubs before it are claims
	}
	prev, _ := c.Prev()
	first := c.Seq() - k
	var news []sublog.Stub
	for x, j := range run {
		seq := first + uint64(x)
		id, _ := card.IDFromBytes(raw[j])
		if x == len(run)-1 {
			if !id.IsZero() && id != prev {
				return nil, nil, fmt.Errorf("%w: %s@%d", sublog.ErrStubContradicted, a, seq)
			}
			id = prev
		}
		if seq <= n {
			if have, known := s.link(a, seq); known && !id.IsZero() && have != id {
				return nil, nil, fmt.Errorf("%w: %s@%d", sublog.ErrStubConflict, a, seq)
			}
			continue
		}
		if seq != n+1+uint64(len(news)) {
			return nil, nil, fmt.Errorf("%w: %s@%d after head %d", sublog.ErrGap, a, seq, n)
		}
		proven := x == len(run)-1
		if !proven {
			id = card.ID{}
		}
		news = append(news, sublog.Stub{Author: a, Seq: seq, ID: id, Proven: proven})
	}
	if len(news) == 0 {
		return c, nil, s.put(c)
	}
	if c.Seq() != n+uint64(len(news))+1 {
		return nil, nil, fmt.Errorf("%w: %s@%d", sublog.ErrGap, a, c.Seq())
	}
	if s.stubs[a] == nil {
		s.stubs[a] = map[uint64]sublog.Stub{}
	}
	for _, st := range news {
		s.logs[a] = append(s.logs[a], nil)
		s.stubs[a][st.Seq] = st
	}
	s.logs[a] = append(s.logs[a], c)
	return c, news, nil
}

// ForkProof implements Store.
func (s *MemStore) ForkProof(a key.ID) (*sublog.ForkProof, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.forks[a]
	if !ok {
		return nil, fmt.Errorf("%w: fork proof for %s", sublog.ErrNotFound, a)
	}
	return p, nil
}

// ImportForkProof implements Store.
func (s *MemStore) ImportForkProof(b []byte) (*sublog.ForkProof, error) {
	p, err := sublog.DecodeForkProof(b)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.forks[p.Author()]; !ok {
		s.forks[p.Author()] = p
	}
	return p, nil
}

// PeekAuthor reads the author (COSE kid) of card bytes without checking the
// signature; the store verifies. It lets a session refuse a card that is not
// of the log it was announced for before spending a signature check. Bytes
// that are not one well-formed card envelope are refused with the defect the
// card decoder names (non-shortest length, indefinite item, unsorted or
// wrong protected header, trailing bytes...), wrapped in log.ErrInvalid as
// the store would, never as a card of another author.
func PeekAuthor(b []byte) (key.ID, error) {
	// The canonical layout is read in place (most cards); any other bytes
	// take the general decode, which names the defect.
	if kid, ok := card.Kid(b); ok {
		if id, err := key.IDFromBytes(kid); err == nil {
			return id, nil
		}
	}
	return peekGeneral(b)
}

// peekGeneral is PeekAuthor by the general decoder.
func peekGeneral(b []byte) (key.ID, error) {
	type envelope struct {
		_           struct{} `cbor:",toarray"`
		Protected   []byte
		Unprotected map[int64]any
		Payload     []byte
		Signature   []byte
	}
	defect := func() (key.ID, error) {
		c, err := card.DecodeStored(b)
		if err != nil {
			return key.ID{}, fmt.Errorf("%w: %w", sublog.ErrInvalid, err)
		}
		return c.Author(), nil
	}
	if len(b) < 2 || b[0] != 0xd2 {
		return defect()
	}
	var env envelope
	if err := canon.Unmarshal(b[1:], &env); err != nil {
		return defect()
	}
	var ph struct {
		Alg int64  `cbor:"1,keyasint"`
		Kid []byte `cbor:"4,keyasint"`
	}
	if err := canon.Unmarshal(env.Protected, &ph); err != nil {
		return defect()
	}
	id, err := key.IDFromBytes(ph.Kid)
	if err != nil {
		return defect()
	}
	return id, nil
}
