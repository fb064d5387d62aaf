// Package log owns the log store: every identity's hash-chained log of cards,
// kept in Pebble. It appends (sign, chain, group-committed durable write),
// imports foreign cards after full verification and only in chain order,
// detects forks and keeps portable fork proofs, and serves reads by author
// and seq, by card ID, and the heads of all logs.
//
// The package name shadows the standard library's log; import it as
//
//	sublog "github.com/sublog/sublog/log"
package log

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	stdsync "sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Errors of the store. Import returns one of the chain errors for a card
// that verified but does not fit; verification failures come from
// log/card and log/canon, wrapped in ErrInvalid.
var (
	ErrInvalid   = errors.New("log: card failed verification")
	ErrDuplicate = errors.New("log: card already stored (replayed)")
	ErrGap       = errors.New("log: card skips ahead of the author's head (missing earlier cards)")
	ErrBadChain  = errors.New("log: prev does not name the author's previous card")
	ErrFork      = errors.New("log: fork: author signed two different cards at one position")
	ErrForked    = errors.New("log: author's log is forked; not extended past the fork")
	ErrNotFound  = errors.New("log: not found")
	ErrCorrupt   = errors.New("log: stored data is corrupt")
	ErrClosed    = errors.New("log: store is closed")
	ErrFormat    = errors.New("log: unsupported store format")
	ErrLocked    = errors.New("log: store is in use by another process")
)

// FormatVersion is the on-disk format this code writes and reads.
const FormatVersion = 1

// Key prefixes. All keys are ASCII prefix + fixed-size binary fields.
const (
	pfxCard  = 'c' // c author(32) seq(8)      -> card bytes
	pfxIndex = 'i' // i cardID(32)             -> author(32) seq(8)
	pfxHead  = 'h' // h author(32)             -> seq(8) cardID(32)
	pfxFork  = 'f' // f author(32)             -> fork proof (canonical CBOR)
	pfxMeta  = 'm' // m name                   -> value
	// 'w' author(32) seq(8) -> a stub (stub.go)
)

var metaFormat = []byte("mformat")

// Options configures a store; the zero value works.
type Options struct {
	// Caps is the node's supported capability set used to verify imports and
	// appends; nil means caps.Builtin().
	Caps card.Caps
	// Logf receives Pebble's informational and error messages; nil discards
	// them (the store is quiet by default).
	Logf func(format string, args ...any)
	// MaxBatch bounds how many writes share one sync (default 4096).
	MaxBatch int
}

// Head is the last card of one author's log.
type Head struct {
	Author key.ID  `json:"author"`
	Seq    uint64  `json:"seq"`
	ID     card.ID `json:"id,omitzero"`
	Forked bool    `json:"forked,omitempty"`
}

type head struct {
	seq     uint64
	id      card.ID
	forkSeq uint64 // 0, or the contested seq of a known fork: nothing at or past it is accepted
}

func (h head) forked() bool { return h.forkSeq > 0 }

// entry is a log's state: tip is where the next card goes (it includes
// cards still waiting for their sync); dur is the durable head, the only one
// readers see, so nothing is ever served that a crash could still take back.
type entry struct{ tip, dur head }

// headUpdate is what a write makes durable for one log.
type headUpdate struct {
	author [key.IDSize]byte
	h      head
}

// Store is a log store. All methods are safe for concurrent use.
type Store struct {
	db    *pebble.DB
	caps  atomic.Pointer[capsBox]
	locks [64]stdsync.Mutex // per-author stripes: serialise each log's tip

	mu     stdsync.RWMutex
	heads  map[[key.IDSize]byte]entry
	failed error // set when a commit failed; the store must be reopened

	damaged []string // head records found damaged at Open (Verify reports them)
	skip    skipped  // unreadable cards readers met (Unreadable)

	closing bool              // Close has begun: enqueue refuses new writes
	closed  chan struct{}     // closed when Close is done
	sending stdsync.WaitGroup // enqueues between their check and their send

	queue   chan *write
	stop    chan struct{}
	stopped chan struct{}
	max     int

	subMu stdsync.Mutex
	subs  map[*Subscription]struct{}
}

// Subscription tells a reader that cards became durable (appended or
// imported). C is signalled, coalesced (capacity 1: a burst of commits is one
// signal), after the heads readers see have advanced; a reader that is busy
// misses nothing, it just reads the newer state once.
type Subscription struct {
	C <-chan struct{}
	c chan struct{}
	s *Store
}

// Subscribe returns a new Subscription; Cancel it when done.
func (s *Store) Subscribe() *Subscription {
	c := make(chan struct{}, 1)
	sub := &Subscription{C: c, c: c, s: s}
	s.subMu.Lock()
	if s.subs == nil {
		s.subs = map[*Subscription]struct{}{}
	}
	s.subs[sub] = struct{}{}
	s.subMu.Unlock()
	return sub
}

// Cancel stops the signals.
func (sub *Subscription) Cancel() {
	sub.s.subMu.Lock()
	delete(sub.s.subs, sub)
	sub.s.subMu.Unlock()
}

// notify signals every subscriber without blocking.
func (s *Store) notify() {
	s.subMu.Lock()
	for sub := range s.subs {
		select {
		case sub.c <- struct{}{}:
		default:
		}
	}
	s.subMu.Unlock()
}

type kv struct {
	k, v []byte
	del  bool // delete k (a stub replaced by its card)
}

type write struct {
	sets    []kv
	updates []headUpdate
	done    chan error
}

// Open opens or creates a store in dir.
func Open(dir string, o Options) (*Store, error) {
	if o.Caps == nil {
		o.Caps = caps.Builtin()
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{o.Logf}})
	if err != nil {
		if isLockErr(err) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("log: opening %s: %w", dir, err)
	}
	s := &Store{db: db, heads: map[[key.IDSize]byte]entry{},
		queue: make(chan *write, 1024), stop: make(chan struct{}), stopped: make(chan struct{}), closed: make(chan struct{}),
		max: o.MaxBatch}
	s.caps.Store(&capsBox{o.Caps})
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	go s.committer()
	return s, nil
}

func (s *Store) load() error {
	v, closer, err := s.db.Get(metaFormat)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], FormatVersion)
		if err := s.db.Set(metaFormat, b[:], pebble.Sync); err != nil {
			return fmt.Errorf("log: writing format: %w", err)
		}
	case err != nil:
		return fmt.Errorf("log: reading format: %w", err)
	default:
		ok := len(v) == 8 && binary.BigEndian.Uint64(v) == FormatVersion
		closer.Close()
		if !ok {
			return fmt.Errorf("%w: %x (this sublog reads format %d)", ErrFormat, v, FormatVersion)
		}
	}
	it, err := s.db.NewIter(prefixBounds(pfxHead))
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		k, val := it.Key(), it.Value()
		if len(k) != 1+key.IDSize {
			s.damaged = append(s.damaged, fmt.Sprintf("head record under a key that is no identity (%x): left out", k))
			continue
		}
		var a [key.IDSize]byte
		copy(a[:], k[1:])
		var h head
		if len(val) == 8+32 {
			h.seq = binary.BigEndian.Uint64(val)
			copy(h.id[:], val[8:])
		} else {
			// The cards are the truth a head record summarises: take the
			// log's last card, and let Verify say what was rebuilt.
			var err error
			if h, err = s.lastCard(a); err != nil {
				it.Close()
				return err
			}
			name := fmt.Sprintf("%x", a)
			if id, err := key.IDFromBytes(a[:]); err == nil {
				name = id.String()
			}
			s.damaged = append(s.damaged, fmt.Sprintf("head record of %s was damaged: rebuilt from its cards (seq %d)", name, h.seq))
		}
		s.heads[a] = entry{tip: h, dur: h}
	}
	if err := it.Close(); err != nil {
		return err
	}
	it, err = s.db.NewIter(prefixBounds(pfxFork))
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if len(it.Key()) != 1+key.IDSize {
			continue // not a fork proof's key: Verify reports it
		}
		var a [key.IDSize]byte
		copy(a[:], it.Key()[1:])
		e := s.heads[a]
		seq := e.dur.seq + 1
		if p, err := DecodeForkProof(it.Value()); err == nil {
			seq = p.Seq()
		}
		// A damaged proof still says the author forked: the log is held
		// where it is (Verify reports the damage) rather than refusing to
		// open the whole store.
		e.tip.forkSeq, e.dur.forkSeq = seq, seq
		s.heads[a] = e
	}
	return it.Close()
}

// lastCard is the head of a's log as its cards give it: the last card stored.
func (s *Store) lastCard(a [key.IDSize]byte) (head, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: append([]byte{pfxCard}, a[:]...), UpperBound: append(append([]byte{pfxCard}, a[:]...), 0xff)})
	if err != nil {
		return head{}, err
	}
	defer it.Close()
	if !it.Last() {
		return head{}, it.Error()
	}
	k := it.Key()
	if len(k) != 1+key.IDSize+8 {
		return head{}, fmt.Errorf("%w: card key %x", ErrCorrupt, k)
	}
	val, err := it.ValueAndErr()
	if err != nil {
		return head{}, err
	}
	return head{seq: binary.BigEndian.Uint64(k[1+key.IDSize:]), id: card.IDOf(val)}, nil
}

// Close stops the committer and closes the database. Pending writes finish first.
func (s *Store) Close() error {
	s.mu.Lock()
	switch {
	case s.db == nil:
		s.mu.Unlock()
		return nil
	case s.closing: // another Close is under way: return when it is done
		s.mu.Unlock()
		<-s.closed
		return nil
	}
	s.closing = true // no new writes; the ones on their way are let in
	s.mu.Unlock()
	defer close(s.closed)
	s.sending.Wait()
	close(s.stop)
	<-s.stopped
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.Close()
	s.db = nil
	return err
}

// Caps is the capability set the store verifies against.
func (s *Store) Caps() card.Caps { return s.caps.Load().c }

// capsBox holds the capability set (swapped whole by SetCaps).
type capsBox struct{ c card.Caps }

// SetCaps replaces the capability set the store verifies against (a
// long-lived process calls it when the home's learned or supported caps
// change); cards verified before keep their verdict.
func (s *Store) SetCaps(c card.Caps) {
	if c == nil {
		c = caps.Builtin()
	}
	s.caps.Store(&capsBox{c})
}

// committer is the group-commit loop: it takes every write that queued up
// while the previous group was being applied and applies them as one Pebble
// batch. It does not wait for the batch's WAL sync: the syncer does, so the
// next group is applied while the previous one is being synced, and Pebble
// covers every group that arrived during a sync with the next one. Groups
// reach the WAL in queue order, which keeps each log's cards (queued in
// chain order under its stripe lock) in chain order on disk.
func (s *Store) committer() {
	synced := make(chan struct{})
	pending := make(chan applied, 64)
	go func() {
		defer close(synced)
		for a := range pending {
			s.finish(a)
		}
	}()
	defer func() {
		close(pending)
		<-synced
		close(s.stopped)
	}()
	for {
		var first *write
		select {
		case first = <-s.queue:
		case <-s.stop:
			// Drain what is left so no caller waits for ever.
			for {
				select {
				case w := <-s.queue:
					pending <- s.apply([]*write{w})
				default:
					return
				}
			}
		}
		group := []*write{first}
	more:
		for len(group) < s.max {
			select {
			case w := <-s.queue:
				group = append(group, w)
			default:
				break more
			}
		}
		pending <- s.apply(group)
	}
}

// applied is a group whose batch is in the WAL queue and the memtable, not
// yet synced.
type applied struct {
	group []*write
	batch *pebble.Batch // nil when the group failed before Pebble took it
	err   error
}

// apply hands a group's writes to Pebble as one batch that asks for a sync,
// returning once the batch is ordered in the WAL (visible in the memtable
// too, which is why readers look only as far as the durable heads).
func (s *Store) apply(group []*write) applied {
	s.mu.RLock()
	err := s.failed
	s.mu.RUnlock()
	if err != nil {
		return applied{group: group, err: err}
	}
	b := s.db.NewBatch()
	for _, w := range group {
		for _, p := range w.sets {
			if p.del {
				_ = b.Delete(p.k, nil)
				continue
			}
			_ = b.Set(p.k, p.v, nil) // Set on an in-memory batch only fails on misuse
		}
	}
	if err := s.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		b.Close()
		return applied{group: group, err: s.fail(err)}
	}
	return applied{group: group, batch: b}
}

// finish waits for a group's sync, then makes its cards durable for readers
// and answers its writers. Groups finish in the order they were applied; a
// failure fails every later group too, since the store must be reopened.
func (s *Store) finish(a applied) {
	err := a.err
	if a.batch != nil {
		err = a.batch.SyncWait()
		a.batch.Close()
		s.mu.RLock()
		failed := s.failed
		s.mu.RUnlock()
		switch {
		case err != nil:
			err = s.fail(err)
		case failed != nil:
			err = failed
		}
	}
	if err == nil {
		s.mu.Lock()
		for _, w := range a.group {
			for _, u := range w.updates {
				e := s.heads[u.author]
				if u.h.seq >= e.dur.seq {
					e.dur.seq, e.dur.id = u.h.seq, u.h.id
				}
				if u.h.forkSeq > 0 && e.dur.forkSeq == 0 {
					e.dur.forkSeq = u.h.forkSeq
				}
				s.heads[u.author] = e
			}
		}
		s.mu.Unlock()
		s.notify()
	}
	for _, w := range a.group {
		w.done <- err
	}
}

// fail records the first commit failure: heads in memory may be ahead of
// disk now, so the store refuses everything until it is reopened.
func (s *Store) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = fmt.Errorf("log: commit: %w", err)
	}
	return s.failed
}

// enqueue hands a write to the committer and advances the tips it names.
// The caller holds the authors' stripes, so writes of one log reach the queue
// in chain order.
func (s *Store) enqueue(sets []kv, updates ...headUpdate) (chan error, error) {
	s.mu.Lock()
	if s.db == nil || s.closing {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if s.failed != nil {
		s.mu.Unlock()
		return nil, s.failed
	}
	for _, u := range updates {
		e := s.heads[u.author]
		e.tip = u.h
		s.heads[u.author] = e
	}
	s.sending.Add(1)
	s.mu.Unlock()
	defer s.sending.Done()
	// Never send while holding s.mu: the committer's other half takes s.mu
	// after every sync, and a full queue would wait for it for ever.
	w := &write{sets: sets, updates: updates, done: make(chan error, 1)}
	s.queue <- w
	return w.done, nil
}

func (s *Store) stripe(a key.ID) *stdsync.Mutex {
	b := a.Array()
	return &s.locks[b[0]%byte(len(s.locks))]
}

// tipOf is where a log's next card goes (placement and appends).
func (s *Store) tipOf(a key.ID) head {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.heads[a.Array()].tip
}

// durOf is a log's durable head (everything readers see).
func (s *Store) durOf(a key.ID) head {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.heads[a.Array()].dur
}

func (s *Store) usable() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return s.failed
}

// Append signs draft as the next card of sk's log and returns once it is
// durable. Concurrent appends share syncs (group commit).
func (s *Store) Append(sk *key.Secret, d card.Draft) (*card.Card, error) {
	a := sk.ID()
	l := s.stripe(a)
	l.Lock()
	h := s.tipOf(a)
	if h.forked() {
		l.Unlock()
		return nil, fmt.Errorf("%w: %s (this key signed two histories; see 'sublog verify')", ErrForked, a)
	}
	c, err := card.Sign(sk, h.seq+1, h.id, d, s.Caps())
	if err != nil {
		l.Unlock()
		return nil, err
	}
	done, err := s.enqueue(cardSets(c), headUpdate{a.Array(), head{seq: c.Seq(), id: c.ID()}})
	l.Unlock()
	if err != nil {
		return nil, err
	}
	if err := <-done; err != nil {
		return nil, err
	}
	return c, nil
}

// cardSets are the writes that store one card as its author's new head.
func cardSets(c *card.Card) []kv {
	id := c.ID()
	hv := make([]byte, 8+32)
	binary.BigEndian.PutUint64(hv, c.Seq())
	copy(hv[8:], id[:])
	return []kv{
		{k: cardKey(c.Author(), c.Seq()), v: c.Bytes()},
		{k: indexKey(id), v: cardKey(c.Author(), c.Seq())[1:]},
		{k: headKey(c.Author()), v: hv},
	}
}

func cardKey(a key.ID, seq uint64) []byte {
	k := make([]byte, 1+key.IDSize+8)
	k[0] = pfxCard
	copy(k[1:], a.Bytes())
	binary.BigEndian.PutUint64(k[1+key.IDSize:], seq)
	return k
}

func prefixBounds(p byte) *pebble.IterOptions {
	return &pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}}
}

func indexKey(id card.ID) []byte { return append([]byte{pfxIndex}, id[:]...) }
func headKey(a key.ID) []byte    { return append([]byte{pfxHead}, a.Bytes()...) }
func forkKey(a key.ID) []byte    { return append([]byte{pfxFork}, a.Bytes()...) }

// Import verifies one foreign card and stores it if it continues its
// author's log. It returns ErrDuplicate for a card already stored, ErrGap,
// ErrBadChain, ErrForked, or ErrFork after storing a fork proof. The store
// is unchanged by every error but ErrFork (which adds the proof).
func (s *Store) Import(b []byte) (*card.Card, error) {
	if IsStub(b) {
		return nil, fmt.Errorf("%w: a stub alone", ErrStubUnproven)
	}
	c, err := card.Decode(b, s.Caps())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	l := s.stripe(c.Author())
	l.Lock()
	sets, proof, err := s.place(c, nil)
	if err != nil && proof == nil {
		l.Unlock()
		return nil, err
	}
	h := s.tipOf(c.Author())
	if proof != nil {
		h.forkSeq = proof.Seq()
	} else if c.Seq() > h.seq { // (a card that replaces a stub leaves the head)
		h.seq, h.id = c.Seq(), c.ID() // keeps a known fork point
	}
	done, qerr := s.enqueue(sets, headUpdate{c.Author().Array(), h})
	if qerr != nil {
		l.Unlock()
		return nil, qerr
	}
	l.Unlock()
	if werr := <-done; werr != nil {
		return nil, werr
	}
	return c, err
}

// place decides where a verified card goes relative to its author's head.
// pending holds heads and cards placed earlier in the same batch (nil for a
// single import). On a fork it returns the proof's writes and ErrFork.
func (s *Store) place(c *card.Card, pending *batchState) ([]kv, *ForkProof, error) {
	a := c.Author()
	h, ok := pending.head(a)
	if !ok {
		h = s.tipOf(a)
	}
	if h.forked() && c.Seq() >= h.forkSeq {
		if c.Seq() <= h.seq {
			if stored, err := s.rawAtPending(a, c.Seq(), pending); err == nil && card.IDOf(stored) == c.ID() {
				return nil, nil, fmt.Errorf("%w: %s@%d", ErrDuplicate, a, c.Seq())
			}
		}
		return nil, nil, fmt.Errorf("%w: %s (fork at seq %d)", ErrForked, a, h.forkSeq)
	}
	if c.Seq() <= h.seq {
		stored, err := s.rawAtPending(a, c.Seq(), pending)
		if errors.Is(err, ErrNotFound) {
			st, ok, serr := s.stubAt(a, c.Seq(), pending)
			if serr != nil {
				return nil, nil, serr
			}
			if ok {
				sets, err := s.placeAtStub(c, st, pending)
				return sets, nil, err
			}
		}
		if err != nil {
			return nil, nil, err
		}
		if card.IDOf(stored) == c.ID() {
			return nil, nil, fmt.Errorf("%w: %s@%d", ErrDuplicate, a, c.Seq())
		}
		return s.forkWrites(stored, c)
	}
	if c.Seq() > h.seq+1 {
		return nil, nil, fmt.Errorf("%w: %s@%d arrives after seq %d", ErrGap, a, c.Seq(), h.seq)
	}
	if prev, _ := c.Prev(); prev != h.id {
		return nil, nil, fmt.Errorf("%w: %s@%d names prev %s, the stored seq %d is %s", ErrBadChain, a, c.Seq(), prev, h.seq, h.id)
	}
	return cardSets(c), nil, nil
}

// batchState is what an ImportBatch has placed but not yet committed.
type batchState struct {
	heads map[[key.IDSize]byte]head
	cards map[string][]byte // cardKey -> bytes
	stubs map[string]*Stub  // stubKey -> stub, nil once replaced by its card
}

// record notes a placement's card and stub writes, so later cards of the
// batch see them.
func (b *batchState) record(sets []kv) {
	for _, p := range sets {
		switch p.k[0] {
		case pfxCard:
			b.cards[string(p.k)] = p.v
		case pfxStub:
			if p.del {
				b.stubs[string(p.k)] = nil
			} else if st, err := parseStub(p.k, p.v); err == nil {
				b.stubs[string(p.k)] = &st
			}
		}
	}
}

func (b *batchState) head(a key.ID) (head, bool) {
	if b == nil {
		return head{}, false
	}
	h, ok := b.heads[a.Array()]
	return h, ok
}

func (s *Store) rawAtPending(a key.ID, seq uint64, pending *batchState) ([]byte, error) {
	if pending != nil {
		if b, ok := pending.cards[string(cardKey(a, seq))]; ok {
			return b, nil
		}
	}
	return s.rawAt(a, seq)
}

func (s *Store) forkWrites(stored []byte, c *card.Card) ([]kv, *ForkProof, error) {
	p, err := NewForkProof(stored, c.Bytes())
	if err != nil {
		return nil, nil, err
	}
	return []kv{{k: forkKey(c.Author()), v: p.Encode()}}, p,
		fmt.Errorf("%w: %s at seq %d (proof stored)", ErrFork, c.Author(), p.Seq())
}

// ImportResult reports a batch import: the cards accepted, and for each
// input index that was not accepted, why.
type ImportResult struct {
	Accepted []*card.Card
	Stubs    []Stub // stubs stored (each with the card after it)
	Errs     map[int]error
}

// importChunk is how many cards of an ImportBatch are verified before they
// are placed and handed to the committer: the first chunks commit (and
// sync) while the later ones are still being verified.
const importChunk = 256

// ImportBatch verifies cards in parallel and stores, in input order, those
// that continue their logs, and returns once all of them are durable. Cards
// of one author must come in chain order. An element of StubSize bytes is a
// stub (stub.go): a run of stubs is placed with the card after it, which
// proves the last one; a run no card follows is not stored
// (ErrStubUnproven).
//
// Verification runs on every core in input order; each chunk of
// importChunk elements is placed as soon as it is verified, and its writes
// go to the committer while the next chunks are verified, so the cores do
// not wait for the commits. All stripes are locked from the first placement
// until the batch is durable (the batch spans many authors).
func (s *Store) ImportBatch(raw [][]byte) (ImportResult, error) {
	res := ImportResult{Errs: map[int]error{}}
	if err := s.usable(); err != nil {
		return res, err
	}
	decoded := make([]*card.Card, len(raw))
	errs := make([]error, len(raw))
	nchunks := (len(raw) + importChunk - 1) / importChunk
	left := make([]atomic.Int32, nchunks) // elements of each chunk not yet decoded
	ready := make([]chan struct{}, nchunks)
	for k := range ready {
		left[k].Store(int32(min(importChunk, len(raw)-k*importChunk)))
		ready[k] = make(chan struct{})
	}
	var wg stdsync.WaitGroup
	next := make(chan int, len(raw))
	for i := range raw {
		next <- i
	}
	close(next)
	stop := make(chan struct{}) // the batch failed: decode no more
	// finish stops the workers and waits for them (before errs is read on
	// a failure, and before returning).
	finish := stdsync.OnceFunc(func() { close(stop); wg.Wait() })
	defer finish()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				select {
				case <-stop:
					return
				default:
				}
				if !IsStub(raw[i]) { // (a stub is placed with the card after it)
					c, err := card.Decode(raw[i], s.Caps())
					if err != nil {
						errs[i] = fmt.Errorf("%w: %w", ErrInvalid, err)
					} else {
						decoded[i] = c
					}
				}
				if k := i / importChunk; left[k].Add(-1) == 0 {
					close(ready[k])
				}
			}
		}()
	}

	pending := &batchState{heads: map[[key.IDSize]byte]head{}, cards: map[string][]byte{}, stubs: map[string]*Stub{}}
	var accepted []int
	var stubs []Stub
	var run []int // stubs waiting for the card that proves them
	var dones []chan error
	locked := false
	for k := range nchunks {
		<-ready[k]
		if !locked {
			s.locksAll()
			defer s.unlockAll()
			locked = true
		}
		var sets []kv
		touched := map[[key.IDSize]byte]bool{}
		for i := k * importChunk; i < min((k+1)*importChunk, len(raw)); i++ {
			c := decoded[i]
			if IsStub(raw[i]) {
				run = append(run, i)
				continue
			}
			if c == nil {
				for _, j := range run {
					errs[j] = fmt.Errorf("%w: the card after it was refused", ErrStubUnproven)
				}
				run = nil
				continue
			}
			var (
				w     []kv
				news  []Stub
				proof *ForkProof
				err   error
			)
			if len(run) > 0 {
				ids := make([]card.ID, len(run))
				for n, j := range run {
					copy(ids[n][:], raw[j])
				}
				w, news, proof, err = s.placeRun(ids, c, pending)
			} else {
				w, proof, err = s.place(c, pending)
			}
			if proof != nil {
				sets = append(sets, w...)
				h, ok := pending.head(c.Author())
				if !ok {
					h = s.tipOf(c.Author())
				}
				h.forkSeq = proof.Seq()
				pending.heads[c.Author().Array()] = h
				touched[c.Author().Array()] = true
			}
			if err != nil {
				errs[i] = err
				for _, j := range run {
					errs[j] = err // the card refused its stubs, or they it
				}
				run = nil
				continue
			}
			run = nil
			sets = append(sets, w...)
			pending.record(w)
			h, ok := pending.head(c.Author())
			if !ok {
				h = s.tipOf(c.Author())
			}
			if c.Seq() > h.seq { // (a card that replaces a stub leaves the head)
				h.seq, h.id = c.Seq(), c.ID() // keeps a known fork point
			}
			pending.heads[c.Author().Array()] = h
			touched[c.Author().Array()] = true
			accepted = append(accepted, i)
			stubs = append(stubs, news...)
		}
		if len(sets) == 0 {
			continue
		}
		updates := make([]headUpdate, 0, len(touched))
		for a := range touched {
			updates = append(updates, headUpdate{a, pending.heads[a]})
		}
		done, err := s.enqueue(sets, updates...)
		if err != nil {
			finish()
			return s.importErrs(res, errs), err
		}
		dones = append(dones, done)
	}
	for _, j := range run {
		errs[j] = ErrStubUnproven
	}
	res = s.importErrs(res, errs)
	for _, done := range dones {
		if err := <-done; err != nil {
			return ImportResult{Errs: res.Errs}, err
		}
	}
	for _, i := range accepted {
		res.Accepted = append(res.Accepted, decoded[i])
	}
	res.Stubs = stubs
	return res, nil
}

// importErrs adds the per-element errors to res.
func (s *Store) importErrs(res ImportResult, errs []error) ImportResult {
	for i, e := range errs {
		if e != nil {
			res.Errs[i] = e
		}
	}
	return res
}

func (s *Store) locksAll() {
	for i := range s.locks {
		s.locks[i].Lock()
	}
}

func (s *Store) unlockAll() {
	for i := range s.locks {
		s.locks[i].Unlock()
	}
}

// rawAt reads the stored bytes of author's card at seq.
func (s *Store) rawAt(a key.ID, seq uint64) ([]byte, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	v, closer, err := s.db.Get(cardKey(a, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s@%d", ErrNotFound, a, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("log: read %s@%d: %w", a, seq, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// storedCard parses bytes read back from the store. They were verified on
// the way in; here the structure is re-checked (not the signature, which
// Verify re-checks) and damage is reported as ErrCorrupt.
func storedCard(a key.ID, seq uint64, b []byte) (*card.Card, error) {
	b = bytes.Clone(b) // cards are immutable; iterator values are not
	c, err := card.DecodeStored(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s@%d: %w", ErrCorrupt, a, seq, err)
	}
	if c.Author() != a || c.Seq() != seq {
		return nil, fmt.Errorf("%w: key %s@%d holds %s@%d", ErrCorrupt, a, seq, c.Author(), c.Seq())
	}
	return c, nil
}

// Get returns author's card at seq (only cards that are durable).
func (s *Store) Get(a key.ID, seq uint64) (*card.Card, error) {
	if seq > s.durOf(a).seq {
		return nil, fmt.Errorf("%w: %s@%d", ErrNotFound, a, seq)
	}
	b, err := s.rawAt(a, seq)
	if errors.Is(err, ErrNotFound) {
		if st, ok, serr := s.stubAt(a, seq, nil); serr == nil && ok {
			if st.Proven {
				return nil, fmt.Errorf("%w: %s@%d is %s", ErrWithheld, a, seq, st.ID)
			}
			return nil, fmt.Errorf("%w: %s@%d (ID unproven)", ErrWithheld, a, seq)
		}
	}
	if err != nil {
		return nil, err
	}
	return s.readable(a, seq, b)
}

// GetByID returns the card with the given ID.
func (s *Store) GetByID(id card.ID) (*card.Card, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	v, closer, err := s.db.Get(indexKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: card %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	if len(v) != key.IDSize+8 {
		closer.Close()
		return nil, fmt.Errorf("%w: index entry for %s", ErrCorrupt, id)
	}
	a, err := key.IDFromBytes(v[:key.IDSize])
	seq := binary.BigEndian.Uint64(v[key.IDSize:])
	closer.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: index entry for %s: %w", ErrCorrupt, id, err)
	}
	c, err := s.Get(a, seq)
	if err != nil {
		return nil, err
	}
	if c.ID() != id {
		return nil, fmt.Errorf("%w: index for %s points at %s", ErrCorrupt, id, c.ID())
	}
	return c, nil
}

// IDsWithPrefix returns the IDs of stored (durable) cards whose hex form
// starts with hexPrefix (lowercase hex digits, at most 64), in ID order, at
// most max of them. It reads only the index entries under the prefix, so a
// short-form lookup costs what its matches cost, not what the store holds.
func (s *Store) IDsWithPrefix(hexPrefix string, max int) ([]card.ID, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	if len(hexPrefix) > 2*len(card.ID{}) {
		return nil, nil
	}
	even := hexPrefix[:len(hexPrefix)&^1]
	pb, err := hex.DecodeString(even)
	if err != nil {
		return nil, fmt.Errorf("log: %q is not hex", hexPrefix)
	}
	var odd byte
	hasOdd := len(hexPrefix)%2 == 1
	if hasOdd {
		v, err := hex.DecodeString(hexPrefix[len(hexPrefix)-1:] + "0")
		if err != nil {
			return nil, fmt.Errorf("log: %q is not hex", hexPrefix)
		}
		odd = v[0] >> 4
	}
	lo := append([]byte{pfxIndex}, pb...)
	hi := []byte{pfxIndex + 1}
	for i := len(lo) - 1; i >= 1; i-- { // the smallest key after every key with prefix lo
		if lo[i] != 0xff {
			hi = append(bytes.Clone(lo[:i]), lo[i]+1)
			break
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []card.ID
	for it.First(); it.Valid() && len(out) < max; it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 1+len(card.ID{}) || len(v) != key.IDSize+8 {
			continue
		}
		if hasOdd && k[1+len(pb)]>>4 != odd {
			continue
		}
		a, err := key.IDFromBytes(v[:key.IDSize])
		if err != nil || binary.BigEndian.Uint64(v[key.IDSize:]) > s.durOf(a).seq {
			continue // damaged, or not durable yet: invisible to readers
		}
		id, _ := card.IDFromBytes(k[1:])
		out = append(out, id)
	}
	return out, it.Error()
}

// Head returns the head of author's log (ok false when the store has none).
func (s *Store) Head(a key.ID) (Head, bool) {
	h := s.durOf(a)
	return Head{Author: a, Seq: h.seq, ID: h.id, Forked: h.forked()}, h.seq > 0
}

// Heads returns the heads of all logs, ordered by author. An author known
// only by its fork proof (the store holds none of its cards) has a head with
// Seq 0, no ID and Forked set, so every reader shows it and sync and export
// pass the proof on.
func (s *Store) Heads() []Head {
	s.mu.RLock()
	out := make([]Head, 0, len(s.heads))
	for a, e := range s.heads {
		h := e.dur
		if h.seq == 0 && !h.forked() {
			continue
		}
		id, err := key.IDFromBytes(a[:])
		if err != nil {
			continue // only verified authors ever become heads
		}
		out = append(out, Head{Author: id, Seq: h.seq, ID: h.id, Forked: h.forked()})
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Author.Compare(out[j].Author) < 0 })
	return out
}

// Scan calls fn for author's cards from seq from (inclusive), in chain order,
// until fn returns an error (io.EOF stops quietly). A stored card the
// decoder refuses is skipped and recorded (Unreadable): the seqs fn sees
// then have a hole, which a caller that needs an unbroken chain (sync,
// export) treats as the end of the log.
func (s *Store) Scan(a key.ID, from uint64, fn func(*card.Card) error) error {
	lo := cardKey(a, from)
	hi := cardKey(a, s.durOf(a).seq+1)
	return s.scanRaw(lo, hi, func(a key.ID, seq uint64, b []byte) error {
		c, err := s.readable(a, seq, b)
		if err != nil {
			return nil // skipped and recorded
		}
		return fn(c)
	})
}

// All calls fn for every stored card, log by log (authors in byte order),
// each log in chain order, skipping (and recording) unreadable ones as Scan.
func (s *Store) All(fn func(*card.Card) error) error {
	return s.ScanRaw(func(a key.ID, seq uint64, b []byte) error {
		c, err := s.readable(a, seq, b)
		if err != nil {
			return nil // skipped and recorded
		}
		return fn(c)
	})
}

// ScanRaw calls fn with the stored bytes of every card (the slice is only
// valid during the call), log by log in chain order.
func (s *Store) ScanRaw(fn func(author key.ID, seq uint64, b []byte) error) error {
	o := prefixBounds(pfxCard)
	return s.scanRaw(o.LowerBound, o.UpperBound, fn)
}

func (s *Store) scanRaw(lo, hi []byte, fn func(key.ID, uint64, []byte) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	var limit uint64
	err = walkCards(it, func(a key.ID, seq uint64, first bool) error {
		if first {
			limit = s.durOf(a).seq
		}
		if seq > limit {
			return nil // not durable yet: invisible to readers
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		return fn(a, seq, v)
	})
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// walkCards walks the card keys of it in order, checking each key's form and
// parsing its author once per log. fn gets the author, the seq and whether
// a new log starts there, and reads the value from it if it needs it.
func walkCards(it *pebble.Iterator, fn func(a key.ID, seq uint64, first bool) error) error {
	var last [key.IDSize]byte
	var author key.ID
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 1+key.IDSize+8 {
			return fmt.Errorf("%w: card key %x", ErrCorrupt, k)
		}
		first := author.IsZero() || string(last[:]) != string(k[1:1+key.IDSize])
		if first {
			copy(last[:], k[1:])
			var err error
			if author, err = key.IDFromBytes(last[:]); err != nil {
				return fmt.Errorf("%w: card key author: %w", ErrCorrupt, err)
			}
		}
		if err := fn(author, binary.BigEndian.Uint64(k[1+key.IDSize:]), first); err != nil {
			return err
		}
	}
	return it.Error()
}

// Count returns the number of stored cards and logs (stubs are not cards).
func (s *Store) Count() (cards uint64, logs int) {
	for _, h := range s.Heads() {
		if h.Seq > 0 {
			cards += h.Seq
			logs++
		}
	}
	if stubs, err := s.AllStubs(); err == nil {
		cards -= min(cards, uint64(len(stubs)))
	}
	return cards, logs
}

// quietLogger keeps Pebble silent unless the caller asks for its messages.
type quietLogger struct{ logf func(string, ...any) }

func (q quietLogger) Infof(f string, a ...any) {
	if q.logf != nil {
		q.logf("pebble: "+f, a...)
	}
}
func (q quietLogger) Errorf(f string, a ...any) {
	if q.logf != nil {
		q.logf("pebble: error: "+f, a...)
	}
}

// Fatalf is called by Pebble on an unrecoverable internal inconsistency,
// after which it must not continue; like Pebble's own logger we stop here.
func (q quietLogger) Fatalf(f string, a ...any) { panic(fmt.Sprintf("pebble: fatal: "+f, a...)) }

// isLockErr recognises Pebble's failure to take the directory lock.
func isLockErr(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "resource temporarily unavailable") || strings.Contains(msg, "lock held")
}
