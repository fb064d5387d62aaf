package log

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	stdsync "sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Problem is one thing wrong that Verify found: a bad card, a broken link,
// a head record that does not match, or a damaged index entry (an entry
// that names no card has no Author).
type Problem struct {
	Author key.ID  `json:"author,omitzero"`
	Seq    uint64  `json:"seq"`
	ID     card.ID `json:"id,omitzero"`
	Err    error   `json:"-"`
	Reason string  `json:"reason"`
}

// VerifyReport is the result of re-verifying stored logs.
type VerifyReport struct {
	Cards    int       `json:"cards"`
	Logs     int       `json:"logs"`
	Forked   int       `json:"forked"`
	Withheld int       `json:"withheld"` // stubs the chains were checked across
	Proven   int       `json:"withheld_proven"`
	Problems []Problem `json:"problems"`
}

// OK reports whether nothing was wrong.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 }

type verifyItem struct {
	author key.ID
	seq    uint64
	raw    []byte
	past   bool // stored past its log's head and not a write in flight
	card   *card.Card
	err    error // decoding or signature
	idxErr error // the ID index entry (only when verifying one log)
}

// view is what Verify checks: iterators over the cards and the index and a
// copy of every log's durable head and tip, all taken together under the
// store's lock. Every card at or below a copied durable head is in the
// iterators (heads advance only after the sync, under the lock). A card or
// index entry past a copied tip was not written by this process and is
// damage, since enqueue advances a tip under the lock before the write goes
// to Pebble; one between the durable head and the tip is a write in flight
// and is left out. Iterators rather than a snapshot: a snapshot makes
// compactions carry overwritten values (a shredded KEK) into new files that
// outlive it.
type view struct {
	db    *pebble.DB
	dur   map[[key.IDSize]byte]head
	tips  map[[key.IDSize]byte]uint64
	cards *pebble.Iterator
	index *pebble.Iterator // nil when verifying one log
	stubs map[cardLoc]Stub // stubs, read under the same lock
	bad   []Problem        // stub records that do not parse
}

func (s *Store) view(only *key.ID) (*view, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	if s.failed != nil {
		return nil, s.failed
	}
	v := &view{db: s.db, dur: make(map[[key.IDSize]byte]head, len(s.heads)), tips: make(map[[key.IDSize]byte]uint64, len(s.heads))}
	for a, e := range s.heads {
		v.dur[a], v.tips[a] = e.dur, e.tip.seq
	}
	o := prefixBounds(pfxCard)
	so := prefixBounds(pfxStub)
	if only != nil {
		o = &pebble.IterOptions{LowerBound: cardKey(*only, 0), UpperBound: append(cardKey(*only, ^uint64(0)), 0)}
		so = &pebble.IterOptions{LowerBound: stubKey(*only, 0), UpperBound: append(stubKey(*only, ^uint64(0)), 0)}
	}
	v.stubs = map[cardLoc]Stub{}
	sit, err := s.db.NewIter(so)
	if err != nil {
		return nil, err
	}
	for sit.First(); sit.Valid(); sit.Next() {
		st, err := parseStub(sit.Key(), sit.Value())
		if err != nil {
			v.bad = append(v.bad, Problem{Err: err, Reason: err.Error()})
			continue
		}
		if in, _ := v.place(st.Author.Array(), st.Seq); in {
			v.stubs[cardLoc{st.Author.Array(), st.Seq}] = st
		} else if st.Seq > v.tips[st.Author.Array()] {
			err := fmt.Errorf("%w: stub past its log's head", ErrCorrupt)
			v.bad = append(v.bad, Problem{Author: st.Author, Seq: st.Seq, Err: err, Reason: err.Error()})
		}
	}
	if err := sit.Close(); err != nil {
		return nil, err
	}
	if v.cards, err = s.db.NewIter(o); err != nil {
		return nil, err
	}
	if only == nil {
		if v.index, err = s.db.NewIter(prefixBounds(pfxIndex)); err != nil {
			v.cards.Close()
			return nil, err
		}
	}
	return v, nil
}

func (v *view) close() {
	v.cards.Close()
	if v.index != nil {
		v.index.Close()
	}
}

// place classifies a's card or index entry at seq: in the view, a write
// still in flight (left out), or past the log's head (damage).
func (v *view) place(a [key.IDSize]byte, seq uint64) (inView, inFlight bool) {
	if seq <= v.dur[a].seq {
		return true, false
	}
	return false, seq <= v.tips[a]
}

// scan walks the view's cards in key order, calling fn for each card in the
// view and each card past its log's head (past true), and skipping writes in
// flight.
func (v *view) scan(fn func(a key.ID, seq uint64, b []byte, past bool) error) error {
	return walkCards(v.cards, func(a key.ID, seq uint64, _ bool) error {
		in, inFlight := v.place(a.Array(), seq)
		if inFlight {
			return nil
		}
		val, err := v.cards.ValueAndErr()
		if err != nil {
			return err
		}
		return fn(a, seq, val, !in)
	})
}

// Verify re-verifies every stored card (only author's when only is non-nil):
// signature, canonical form and capabilities, chain links from seq 1, the
// head record and the ID index in both directions (every card is indexed
// under its ID; every index entry names a card with that ID). Cards that
// become durable while it runs are not part of what it checks. Signatures
// are checked in parallel; progress, if set, is called with the running
// count of cards checked.
//
// For the whole store the index is checked without a lookup per card: the
// workers fold each card's (ID, author, seq) into a set digest, a sequential
// scan of the index folds each entry into another, and only when the two
// differ (or an entry is malformed) does a second pass look entries up one
// by one to name the damage. The digest is an XOR of SHA-256 values keyed
// with fresh randomness, so bytes prepared in advance cannot be made to
// cancel out.
func (s *Store) Verify(only *key.ID, progress func(done int)) (VerifyReport, error) {
	var rep VerifyReport
	v, err := s.view(only)
	if err != nil {
		return rep, err
	}
	defer v.close()
	var dk digestKey
	if only == nil {
		if _, err := rand.Read(dk[:]); err != nil {
			return rep, err
		}
	}
	var (
		cur     key.ID
		haveCur bool
		nextSeq uint64
		lastID  card.ID
		known   bool // lastID is known (a card's, or a proven stub's)
		seen    = map[[key.IDSize]byte]bool{}
		bad     = map[cardLoc]bool{} // cards with a problem already reported
		used    = map[cardLoc]bool{} // stubs a chain crossed
	)
	// bridge crosses the stubs between the last card and the card at seq:
	// a chain goes on across stubs, a missing seq is a gap.
	bridge := func(a key.ID, seq uint64) {
		for q := nextSeq; q < seq; q++ {
			st, ok := v.stubs[cardLoc{a.Array(), q}]
			if !ok {
				return
			}
			used[cardLoc{a.Array(), q}] = true
			rep.Withheld++
			if st.Proven {
				rep.Proven++
			}
			nextSeq, lastID, known = q+1, st.ID, st.Proven
		}
	}
	problem := func(it verifyItem, err error) {
		p := Problem{Author: it.author, Seq: it.seq, Err: err, Reason: err.Error()}
		if it.raw != nil {
			p.ID = card.IDOf(it.raw)
		}
		bad[cardLoc{it.author.Array(), it.seq}] = true
		rep.Problems = append(rep.Problems, p)
	}
	endLog := func() {
		if !haveCur {
			return
		}
		rep.Logs++
		seen[cur.Array()] = true
		h := v.dur[cur.Array()]
		if h.forked() {
			rep.Forked++
		}
		if h.seq != nextSeq-1 || h.id != lastID {
			problem(verifyItem{author: cur, seq: h.seq}, fmt.Errorf("%w: head record says seq %d, log ends at %d", ErrCorrupt, h.seq, nextSeq-1))
		}
	}
	var cardSet digest
	// A pipeline keeps every core on signatures: one goroutine scans and
	// copies cards into jobs, workers verify jobs as they come, and this
	// goroutine checks the chain links job by job in scan order.
	check := func(j *verifyJob) {
		cardSet.xor(&j.digest)
		for _, it := range j.items {
			rep.Cards++
			if it.past {
				if h, ok := v.dur[it.author.Array()]; ok {
					problem(it, fmt.Errorf("%w: stored past its log's head (seq %d)", ErrCorrupt, h.seq))
				} else {
					problem(it, fmt.Errorf("%w: stored for a log that has no head record", ErrCorrupt))
				}
				continue
			}
			if !haveCur || it.author != cur {
				endLog()
				cur, haveCur, nextSeq, lastID, known = it.author, true, 1, card.ID{}, true
			}
			if it.seq > nextSeq {
				bridge(it.author, it.seq) // stops at a seq with no stub: the gap is reported below
			}
			switch {
			case it.err != nil:
				problem(it, fmt.Errorf("%w: %w", ErrCorrupt, it.err))
			case it.card.Author() != it.author || it.card.Seq() != it.seq:
				problem(it, fmt.Errorf("%w: stored under %s@%d but is %s@%d", ErrCorrupt, it.author, it.seq, it.card.Author(), it.card.Seq()))
			case it.seq != nextSeq:
				problem(it, fmt.Errorf("%w: expected seq %d", ErrGap, nextSeq))
			default:
				if prev, _ := it.card.Prev(); it.seq > 1 && known && prev != lastID {
					problem(it, fmt.Errorf("%w: prev %s, previous card is %s", ErrBadChain, prev, lastID))
				} else if it.idxErr != nil {
					problem(it, it.idxErr)
				}
			}
			nextSeq, known = it.seq+1, true
			if it.card != nil {
				lastID = it.card.ID() // hashed once already, by the decoder
			} else {
				lastID = card.IDOf(it.raw)
			}
		}
		if progress != nil {
			progress(rep.Cards)
		}
	}
	// The index digest is computed alongside the card scan.
	var (
		indexSet  digest
		malformed int
		indexErr  error
		indexDone = make(chan struct{})
	)
	if only == nil {
		go func() {
			defer close(indexDone)
			indexSet, malformed, indexErr = v.indexDigest(&dk)
		}()
	} else {
		close(indexDone)
	}
	work := make(chan *verifyJob, 8)
	order := make(chan *verifyJob, 8)
	var scanErr error
	go func() {
		defer close(work)
		defer close(order)
		j := newVerifyJob()
		emit := func() {
			order <- j
			work <- j
			j = newVerifyJob()
		}
		scanErr = v.scan(func(a key.ID, seq uint64, b []byte, past bool) error {
			j.add(a, seq, b, past)
			if len(j.items) == verifyBatch {
				emit()
			}
			return nil
		})
		if len(j.items) > 0 {
			emit()
		}
	}()
	var wg stdsync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				for i := range j.items {
					it := &j.items[i]
					if !it.past {
						it.card, it.err = card.Decode(it.raw, s.Caps())
					}
					switch {
					case only != nil && it.err == nil && !it.past:
						it.idxErr = checkIndexAt(s.db, it.card.ID(), it.author, it.seq)
					case only == nil && it.card != nil:
						j.digest.add(&dk, it.card.ID(), it.author, it.seq)
					case only == nil:
						j.digest.add(&dk, card.IDOf(it.raw), it.author, it.seq)
					}
				}
				close(j.done)
			}
		}()
	}
	for j := range order {
		<-j.done
		check(j)
	}
	wg.Wait()
	<-indexDone
	if scanErr != nil {
		return rep, scanErr
	}
	endLog()
	rep.Problems = append(rep.Problems, v.bad...)
	for loc, st := range v.stubs {
		if !used[loc] {
			err := fmt.Errorf("%w: stub at a seq that holds a card, or of a log with no card after it", ErrCorrupt)
			rep.Problems = append(rep.Problems, Problem{Author: st.Author, Seq: st.Seq, ID: st.ID, Err: err, Reason: err.Error()})
		}
	}
	if only != nil {
		return rep, nil
	}
	// Logs whose head record survived but whose cards are all gone.
	for a, h := range v.dur {
		if !seen[a] && h.seq == 0 && h.forked() {
			rep.Forked++ // known by its proof alone (checked below)
		}
		if !seen[a] && h.seq > 0 {
			id, err := key.IDFromBytes(a[:])
			if err != nil {
				return rep, fmt.Errorf("%w: head of %x: %w", ErrCorrupt, a, err)
			}
			rep.Logs++
			problem(verifyItem{author: id, seq: h.seq}, fmt.Errorf("%w: head record says seq %d, log has no cards", ErrCorrupt, h.seq))
		}
	}
	for _, d := range s.damaged {
		err := fmt.Errorf("%w: %s", ErrCorrupt, d)
		rep.Problems = append(rep.Problems, Problem{Err: err, Reason: err.Error()})
	}
	if err := s.checkForkProofs(problem); err != nil {
		return rep, err
	}
	if indexErr != nil {
		return rep, indexErr
	}
	if indexSet != cardSet || malformed > 0 {
		probs, err := v.indexProblems(bad)
		if err != nil {
			return rep, err
		}
		rep.Problems = append(rep.Problems, probs...)
		if len(rep.Problems) == 0 {
			// Nothing named, yet the sets differ: say so rather than pass.
			err := fmt.Errorf("%w: the ID index does not match the cards", ErrCorrupt)
			rep.Problems = append(rep.Problems, Problem{Err: err, Reason: err.Error()})
		}
	}
	return rep, nil
}

// checkForkProofs re-verifies every stored fork proof: each must decode,
// verify and be filed under its author.
func (s *Store) checkForkProofs(problem func(verifyItem, error)) error {
	it, err := s.db.NewIter(prefixBounds(pfxFork))
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		a, err := key.IDFromBytes(it.Key()[1:])
		if err != nil {
			problem(verifyItem{}, fmt.Errorf("%w: fork proof under a key that is no identity (%x)", ErrCorrupt, it.Key()))
			continue
		}
		p, err := DecodeForkProof(it.Value())
		switch {
		case err != nil:
			problem(verifyItem{author: a}, fmt.Errorf("%w: fork proof: %w", ErrCorrupt, err))
		case p.Author() != a:
			problem(verifyItem{author: a}, fmt.Errorf("%w: fork proof of %s filed under %s", ErrCorrupt, p.Author(), a))
		}
	}
	return it.Error()
}

const verifyBatch = 256

type verifyJob struct {
	items  []verifyItem
	buf    []byte // the cards' bytes, copied out of the iterator in one block
	digest digest
	done   chan struct{}
}

func newVerifyJob() *verifyJob {
	return &verifyJob{items: make([]verifyItem, 0, verifyBatch), done: make(chan struct{})}
}

func (j *verifyJob) add(a key.ID, seq uint64, b []byte, past bool) {
	if cap(j.buf)-len(j.buf) < len(b) {
		// Earlier items keep the old block alive; only new bytes go here.
		j.buf = make([]byte, 0, max(len(b), (verifyBatch-len(j.items))*512))
	}
	n := len(j.buf)
	j.buf = append(j.buf, b...)
	j.items = append(j.items, verifyItem{author: a, seq: seq, past: past, raw: j.buf[n:len(j.buf):len(j.buf)]})
}

type cardLoc struct {
	author [key.IDSize]byte
	seq    uint64
}

// digestKey keys one Verify's set digests.
type digestKey [32]byte

// digest is an order-independent digest of a set of index entries
// (ID, author, seq): the XOR of SHA-256(key || ID || author || seq). Both
// sides are sets (the index has one entry per ID, the cards one per author
// and seq), so no element can cancel itself out.
type digest [sha256.Size]byte

func (d *digest) add(k *digestKey, id card.ID, a key.ID, seq uint64) {
	var b [32 + 32 + key.IDSize + 8]byte
	copy(b[:32], k[:])
	copy(b[32:64], id[:])
	copy(b[64:64+key.IDSize], a.Bytes())
	binary.BigEndian.PutUint64(b[64+key.IDSize:], seq)
	h := sha256.Sum256(b[:])
	d.xor((*digest)(&h))
}

func (d *digest) xor(o *digest) {
	for i := range d {
		d[i] ^= o[i]
	}
}

// indexEntry parses one index key and value; ok is false for bytes that are
// not an index entry at all.
func indexEntry(k, val []byte) (id card.ID, a key.ID, seq uint64, ok bool) {
	if len(k) != 1+len(id) || len(val) != key.IDSize+8 {
		return id, a, 0, false
	}
	a, err := key.IDFromBytes(val[:key.IDSize])
	if err != nil {
		return id, a, 0, false
	}
	copy(id[:], k[1:])
	return id, a, binary.BigEndian.Uint64(val[key.IDSize:]), true
}

// indexDigest folds every index entry of the view into a digest, leaving
// out entries of writes in flight as the card scan leaves out their cards,
// and counts the entries that are not index entries at all.
func (v *view) indexDigest(k *digestKey) (d digest, malformed int, err error) {
	it := v.index
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return d, malformed, err
		}
		id, a, seq, ok := indexEntry(it.Key(), val)
		if !ok {
			malformed++
			continue
		}
		if _, inFlight := v.place(a.Array(), seq); inFlight {
			continue
		}
		d.add(k, id, a, seq)
	}
	return d, malformed, it.Error()
}

// indexProblems is the slow pass, run only when the digests differ: over the
// same view, it looks up every card's index entry and every index entry's
// card, and names what is wrong. Cards that already have a problem are not
// reported again.
func (v *view) indexProblems(bad map[cardLoc]bool) ([]Problem, error) {
	var probs []Problem
	reported := map[card.ID]bool{}
	// Every card's entry (the scan walks the cards, the lookups seek the
	// index: two iterators), then every entry's card.
	err := v.scan(func(a key.ID, seq uint64, b []byte, past bool) error {
		if past || bad[cardLoc{a.Array(), seq}] {
			return nil
		}
		id := card.IDOf(b)
		err := v.indexAt(id, a, seq)
		if err == nil || !errors.Is(err, ErrCorrupt) {
			return err
		}
		reported[id] = true
		probs = append(probs, Problem{Author: a, Seq: seq, ID: id, Err: err, Reason: err.Error()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	it := v.index
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		id, a, seq, ok := indexEntry(it.Key(), val)
		if !ok {
			err := fmt.Errorf("%w: malformed index entry %x", ErrCorrupt, it.Key())
			probs = append(probs, Problem{Err: err, Reason: err.Error()})
			continue
		}
		in, inFlight := v.place(a.Array(), seq)
		if inFlight || reported[id] || bad[cardLoc{a.Array(), seq}] {
			continue
		}
		got, found, err := v.cardAt(a, seq)
		switch {
		case err != nil:
			return nil, err
		case !found && in:
			continue // a hole in the log: the chain check reported it
		case !found && v.tips[a.Array()] > 0:
			err = fmt.Errorf("%w: index entry for %s names %s@%d, past its log's head", ErrCorrupt, id, a, seq)
		case !found:
			err = fmt.Errorf("%w: index entry for %s names %s@%d, which has no log", ErrCorrupt, id, a, seq)
		case got == id:
			continue
		default:
			err = fmt.Errorf("%w: index entry for %s names %s@%d, which holds %s", ErrCorrupt, id, a, seq, got)
		}
		probs = append(probs, Problem{Author: a, Seq: seq, ID: id, Err: err, Reason: err.Error()})
	}
	return probs, it.Error()
}

// cardAt looks up the ID of a's card at seq in the view.
func (v *view) cardAt(a key.ID, seq uint64) (card.ID, bool, error) {
	k := cardKey(a, seq)
	if !v.cards.SeekGE(k) || !bytes.Equal(v.cards.Key(), k) {
		return card.ID{}, false, v.cards.Error()
	}
	val, err := v.cards.ValueAndErr()
	if err != nil {
		return card.ID{}, false, err
	}
	return card.IDOf(val), true, nil
}

// indexAt checks, in the view, that the index maps id to a at seq.
func (v *view) indexAt(id card.ID, a key.ID, seq uint64) error {
	k := indexKey(id)
	if !v.index.SeekGE(k) || !bytes.Equal(v.index.Key(), k) {
		if err := v.index.Error(); err != nil {
			return err
		}
		return fmt.Errorf("%w: no index entry for %s", ErrCorrupt, id)
	}
	val, err := v.index.ValueAndErr()
	if err != nil {
		return err
	}
	if want := cardKey(a, seq)[1:]; !bytes.Equal(val, want) {
		return fmt.Errorf("%w: index entry for %s points elsewhere (%x)", ErrCorrupt, id, val)
	}
	return nil
}

// checkIndexAt checks that the index of r maps id to author a at seq.
func checkIndexAt(r pebble.Reader, id card.ID, a key.ID, seq uint64) error {
	v, closer, err := r.Get(indexKey(id))
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("%w: no index entry for %s", ErrCorrupt, id)
		}
		return err
	}
	defer closer.Close()
	if want := cardKey(a, seq)[1:]; !bytes.Equal(v, want) {
		return fmt.Errorf("%w: index entry for %s points elsewhere (%x)", ErrCorrupt, id, v)
	}
	return nil
}

// CheckChains is the fast integrity scan: for every stored card it hashes the
// bytes and checks the links (seq continuity from 1, prev = hash of the card
// before, the key it is stored under), without checking signatures. Verify is
// the full check.
func (s *Store) CheckChains() (cards int, problems []Problem, err error) {
	var (
		cur     key.ID
		have    bool
		nextSeq uint64
		lastID  card.ID
		known   bool
	)
	all, err := s.AllStubs()
	if err != nil {
		return 0, nil, err
	}
	stubs := make(map[cardLoc]Stub, len(all))
	for _, st := range all {
		stubs[cardLoc{st.Author.Array(), st.Seq}] = st
	}
	err = s.ScanRaw(func(a key.ID, seq uint64, b []byte) error {
		cards++
		if !have || a != cur {
			cur, have, nextSeq, lastID, known = a, true, 1, card.ID{}, true
		}
		for ; nextSeq < seq; nextSeq++ { // across stubs
			st, ok := stubs[cardLoc{a.Array(), nextSeq}]
			if !ok {
				break
			}
			lastID, known = st.ID, st.Proven
		}
		id := card.IDOf(b)
		author, cseq, prev, lerr := card.Links(b)
		bad := func(e error) {
			problems = append(problems, Problem{Author: a, Seq: seq, ID: id, Err: e, Reason: e.Error()})
		}
		switch {
		case lerr != nil:
			bad(fmt.Errorf("%w: %w", ErrCorrupt, lerr))
		case string(author) != string(a.Bytes()) || cseq != seq:
			bad(fmt.Errorf("%w: stored under %s@%d", ErrCorrupt, a, seq))
		case seq != nextSeq:
			bad(fmt.Errorf("%w: expected seq %d", ErrGap, nextSeq))
		case seq > 1 && known && prev != lastID:
			bad(fmt.Errorf("%w: prev %s, previous card is %s", ErrBadChain, prev, lastID))
		}
		nextSeq, lastID, known = seq+1, id, true
		return nil
	})
	return cards, problems, err
}
