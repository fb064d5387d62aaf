package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Stubs. A home that may not pass a card on (its capsule keeps it on that
// node, or to trusted nodes) sends its ID in its place, so the log's later
// cards still flow: a stub. A stub proves nothing by itself (the author's
// signature covers the payload, which a stub leaves out); the next card of
// the log does, since its signed prev names the card before it. So:
//
//   - a stub is stored only together with the next real card of its log,
//     in the same batch; that card's prev is the stub's ID (proven). A run
//     of stubs before a card keeps only the last one's ID (the others are
//     "withheld, ID unproven": their IDs would be proven only by cards this
//     home does not hold);
//   - a stub that names another ID than the next card's prev is refused
//     (ErrStubContradicted), and so is a stub that contradicts what the
//     store holds at its seq, a card or a proven stub (ErrStubConflict);
//     a stub no later card proves is not stored (ErrStubUnproven). A stub is
//     never evidence of a fork: only two signed cards are;
//   - stubs live under their own key prefix, never under the card or index
//     prefixes, so every stored card is still a verified card; a log's head
//     is always a real card;
//   - the real card may arrive later (it was granted, or reached this home
//     another way): it replaces a proven stub only if it hashes to the
//     stub's ID, an unproven one only if its prev names the link before it.
//
// Readers never see a stub as a card: Get returns ErrWithheld, Scan and
// All skip it; Stubs lists them; Verify and CheckChains check chains
// across them.

// Errors of stubs.
var (
	ErrWithheld         = errors.New("log: card withheld by the home it came from: only its ID (a stub) is held here")
	ErrStubUnproven     = errors.New("log: stub not stored: no later card of the log proves its ID")
	ErrStubContradicted = errors.New("log: stub contradicted: the next card's signed prev names another ID")
	ErrStubConflict     = errors.New("log: stub contradicts what the store holds at that seq")
)

// StubSize is the wire size of a stub: a card ID in place of a card's bytes
// in a Cards message (a card is never this short).
const StubSize = 32

// IsStub reports whether an element of a Cards message is a stub.
func IsStub(b []byte) bool { return len(b) == StubSize }

const pfxStub = 'w' // w author(32) seq(8) -> card ID(32) (proven) or empty (ID unproven)

// Stub is a card of a log that this store holds by position only.
type Stub struct {
	Author key.ID  `json:"author"`
	Seq    uint64  `json:"seq"`
	ID     card.ID `json:"id,omitzero"` // zero when unproven
	Proven bool    `json:"proven"`
}

// Wire is the stub's element in a Cards message: its ID, or 32 zero bytes
// when this store could not prove it.
func (s Stub) Wire() []byte { return bytes.Clone(s.ID[:]) }

func stubKey(a key.ID, seq uint64) []byte {
	k := cardKey(a, seq)
	k[0] = pfxStub
	return k
}

func stubValue(id card.ID, proven bool) []byte {
	if !proven {
		return []byte{}
	}
	return bytes.Clone(id[:])
}

// parseStub reads one stub record.
func parseStub(k, v []byte) (Stub, error) {
	if len(k) != 1+key.IDSize+8 || (len(v) != 0 && len(v) != 32) {
		return Stub{}, fmt.Errorf("%w: stub record %x", ErrCorrupt, k)
	}
	a, err := key.IDFromBytes(k[1 : 1+key.IDSize])
	if err != nil {
		return Stub{}, fmt.Errorf("%w: stub record author: %w", ErrCorrupt, err)
	}
	s := Stub{Author: a, Seq: binary.BigEndian.Uint64(k[1+key.IDSize:])}
	if len(v) == 32 {
		copy(s.ID[:], v)
		s.Proven = true
	}
	return s, nil
}

// Stubs lists author's stubs from seq from on, up to the durable head, in
// seq order.
func (s *Store) Stubs(a key.ID, from uint64) ([]Stub, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	hi := s.durOf(a).seq
	if from > hi {
		return nil, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: stubKey(a, from), UpperBound: stubKey(a, hi+1)})
	if err != nil {
		return nil, err
	}
	var out []Stub
	for it.First(); it.Valid(); it.Next() {
		st, err := parseStub(it.Key(), it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, st)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// AllStubs lists every stub of the store, log by log in seq order.
func (s *Store) AllStubs() ([]Stub, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	it, err := s.db.NewIter(prefixBounds(pfxStub))
	if err != nil {
		return nil, err
	}
	var out []Stub
	for it.First(); it.Valid(); it.Next() {
		st, err := parseStub(it.Key(), it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		if st.Seq <= s.durOf(st.Author).seq {
			out = append(out, st)
		}
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// StubByID finds the proven stub with card ID id (ok false if none).
func (s *Store) StubByID(id card.ID) (Stub, bool, error) {
	all, err := s.AllStubs()
	if err != nil {
		return Stub{}, false, err
	}
	for _, st := range all {
		if st.Proven && st.ID == id {
			return st, true, nil
		}
	}
	return Stub{}, false, nil
}

// stubAt reads the stub at a's seq (pending changes of a batch first).
func (s *Store) stubAt(a key.ID, seq uint64, pending *batchState) (Stub, bool, error) {
	if pending != nil {
		if st, ok := pending.stubs[string(stubKey(a, seq))]; ok {
			if st == nil {
				return Stub{}, false, nil // replaced in this batch
			}
			return *st, true, nil
		}
	}
	if err := s.usable(); err != nil {
		return Stub{}, false, err
	}
	v, closer, err := s.db.Get(stubKey(a, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return Stub{}, false, nil
	}
	if err != nil {
		return Stub{}, false, err
	}
	defer closer.Close()
	st, err := parseStub(stubKey(a, seq), v)
	return st, err == nil, err
}

// linkAt is the ID the chain has at a's seq: a card's ID or a proven stub's
// (known false for an unproven stub or nothing).
func (s *Store) linkAt(a key.ID, seq uint64, pending *batchState) (id card.ID, known bool, err error) {
	if b, err := s.rawAtPending(a, seq, pending); err == nil {
		return card.IDOf(b), true, nil
	} else if !errors.Is(err, ErrNotFound) {
		return id, false, err
	}
	st, ok, err := s.stubAt(a, seq, pending)
	if err != nil || !ok {
		return id, false, err
	}
	return st.ID, st.Proven, nil
}

// whereIs names where a card ID already sits in a's log, for error
// messages about replayed stubs ("" when nowhere).
func (s *Store) whereIs(a key.ID, id card.ID, pending *batchState) string {
	if v, closer, err := s.db.Get(indexKey(id)); err == nil {
		where := ""
		if len(v) == key.IDSize+8 {
			where = fmt.Sprintf("; that ID is the card at seq %d", binary.BigEndian.Uint64(v[key.IDSize:]))
		}
		closer.Close()
		return where
	}
	if pending != nil {
		for _, st := range pending.stubs {
			if st != nil && st.Proven && st.ID == id && st.Author == a {
				return fmt.Sprintf("; that ID is the stub at seq %d (replayed at another seq)", st.Seq)
			}
		}
	}
	if stubs, err := s.Stubs(a, 1); err == nil {
		for _, st := range stubs {
			if st.Proven && st.ID == id {
				return fmt.Sprintf("; that ID is the stub at seq %d (replayed at another seq)", st.Seq)
			}
		}
	}
	return ""
}

// checkHeldStub checks a stub for a seq the log already covers (a card or
// a stub is there): it must agree with what is held. A zero ID (the
// sender's own stub was unproven) agrees with anything.
func (s *Store) checkHeldStub(a key.ID, seq uint64, id card.ID, pending *batchState) error {
	if id.IsZero() {
		return nil
	}
	have, known, err := s.linkAt(a, seq, pending)
	switch {
	case err != nil:
		return err
	case !known:
		return nil // an unproven stub here: a claim does not prove it either
	case have != id:
		return fmt.Errorf("%w: the stub at %s@%d names %s, this store holds %s there%s", ErrStubConflict, a, seq, id, have, s.whereIs(a, id, pending))
	}
	return nil
}

// placeRun places a run of stubs (the IDs of seqs c.Seq()-len(ids) ..
// c.Seq()-1) followed by the card c that proves the last of them. It
// returns the writes, the number of new stubs, and ErrFork with a proof as
// place does for c.
func (s *Store) placeRun(ids []card.ID, c *card.Card, pending *batchState) ([]kv, []Stub, *ForkProof, error) {
	a := c.Author()
	n := uint64(len(ids))
	if c.Seq() <= n {
		return nil, nil, nil, fmt.Errorf("%w: %d stubs before %s@%d would start before seq 1", ErrStubContradicted, n, a, c.Seq())
	}
	first := c.Seq() - n
	h, ok := pending.head(a)
	if !ok {
		h = s.tipOf(a)
	}
	if h.forked() && c.Seq() >= h.forkSeq {
		return nil, nil, nil, fmt.Errorf("%w: %s (fork at seq %d)", ErrForked, a, h.forkSeq)
	}
	if c.Seq() <= h.seq {
		// The card lands where the log is held: it decides (a duplicate, a
		// fork, or the card in its stub's place); the stubs before it are
		// claims, no evidence either way.
		sets, proof, err := s.place(c, pending)
		return sets, nil, proof, err
	}
	prev, _ := c.Prev()
	last := ids[n-1]
	if !last.IsZero() && last != prev {
		return nil, nil, nil, fmt.Errorf("%w: the stub at %s@%d names %s, but the card at seq %d (signed) names %s as its prev%s",
			ErrStubContradicted, a, c.Seq()-1, last, c.Seq(), prev, s.whereIs(a, last, pending))
	}
	ids = append([]card.ID(nil), ids...)
	ids[n-1] = prev // proven by c's signature
	var news []Stub
	for i, id := range ids {
		seq := first + uint64(i)
		if seq <= h.seq {
			if err := s.checkHeldStub(a, seq, id, pending); err != nil {
				return nil, nil, nil, err
			}
			continue
		}
		if seq != h.seq+1+uint64(len(news)) {
			return nil, nil, nil, fmt.Errorf("%w: %s@%d arrives after seq %d", ErrGap, a, seq, h.seq)
		}
		proven := seq == c.Seq()-1
		if !proven {
			id = card.ID{} // what no card here can prove is not kept
		}
		news = append(news, Stub{Author: a, Seq: seq, ID: id, Proven: proven})
	}
	if len(news) == 0 {
		// Every stub is of a seq already held: c goes as any card would.
		sets, proof, err := s.place(c, pending)
		return sets, nil, proof, err
	}
	// (A card's ID covers its seq, so the card at seq-1 is no card held
	// elsewhere: one index lookup; the stubs are scanned only to explain a
	// refusal.)
	if _, closer, err := s.db.Get(indexKey(prev)); err == nil {
		closer.Close()
		return nil, nil, nil, fmt.Errorf("%w: %s@%d names %s as its prev%s", ErrBadChain, a, c.Seq(), prev, s.whereIs(a, prev, pending))
	}
	var sets []kv
	for _, st := range news {
		sets = append(sets, kv{k: stubKey(a, st.Seq), v: stubValue(st.ID, st.Proven)})
	}
	return append(sets, cardSets(c)...), news, nil, nil
}

// placeAtStub places a real card at a seq where the store holds a stub: it
// replaces a proven stub only if it is the card the stub names, an
// unproven one only if its prev names the link before it (when that is
// known). The card takes the stub's place; the head does not move. An
// unproven stub just before it is proven by its prev.
func (s *Store) placeAtStub(c *card.Card, st Stub, pending *batchState) ([]kv, error) {
	a, seq := c.Author(), c.Seq()
	if st.Proven && c.ID() != st.ID {
		return nil, fmt.Errorf("%w: %s@%d is %s, but the next card's signed prev names %s there", ErrBadChain, a, seq, c.ID(), st.ID)
	}
	var sets []kv
	if prev, ok := c.Prev(); ok {
		have, known, err := s.linkAt(a, seq-1, pending)
		if err != nil {
			return nil, err
		}
		if known && have != prev {
			return nil, fmt.Errorf("%w: %s@%d names prev %s, the stored seq %d is %s", ErrBadChain, a, seq, prev, seq-1, have)
		}
		if before, ok, err := s.stubAt(a, seq-1, pending); err != nil {
			return nil, err
		} else if ok && !before.Proven {
			sets = append(sets, kv{k: stubKey(a, seq-1), v: stubValue(prev, true)})
		}
	}
	id := c.ID()
	sets = append(sets,
		kv{k: stubKey(a, seq), del: true},
		kv{k: cardKey(a, seq), v: c.Bytes()},
		kv{k: indexKey(id), v: cardKey(a, seq)[1:]})
	return sets, nil
}
