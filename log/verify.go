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
	Problems []Problem `json:"problems"`
}

// OK reports whether nothing was wrong.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 }

type verifyItem struct {
	author key.ID
	seq    uint64
	raw    []byte
	card   *card.Card
	err    error // decoding or signature
	idxErr error // the ID index entry (only when verifying one log)
}

// view is what Verify checks: a Pebble snapshot and the durable heads taken
// together, so that cards appended while it runs neither appear half-way nor
// show up as index entries without cards.
type view struct {
	snap  *pebble.Snapshot
	heads map[[key.IDSize]byte]head
}

func (s *Store) view() (*view, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	if s.failed != nil {
		return nil, s.failed
	}
	v := &view{heads: make(map[[key.IDSize]byte]head, len(s.heads))}
	for a, e := range s.heads {
		v.heads[a] = e.dur
	}
	// Heads only advance after their cards are synced, and under s.mu, so
	// every card at or below a head copied here is in the snapshot.
	v.snap = s.db.NewSnapshot()
	return v, nil
}

// limit is how far the verified view reaches into a's log.
func (v *view) limit(a key.ID) uint64 { return v.heads[a.Array()].seq }

// Verify re-verifies every stored card (only author's when only is non-nil):
// signature, canonical form and capabilities, chain links from seq 1, the
// head record and the ID index in both directions (every card is indexed
// under its ID; every index entry names a card with that ID). It checks a
// snapshot: cards that become durable while it runs are not part of it.
// Signatures are checked in parallel; progress, if set, is called with the
// running count of cards checked.
//
// For the whole store the index is checked without a lookup per card: the
// workers fold each card's (ID, author, seq) into a set digest, a sequential
// scan of the index folds each entry into another, and only when the two
// differ does a second pass look entries up one by one to name the damage.
// The digest is an XOR of SHA-256 values keyed with fresh randomness, so bytes
// prepared in advance cannot be made to cancel out.
func (s *Store) Verify(only *key.ID, progress func(done int)) (VerifyReport, error) {
	var rep VerifyReport
	v, err := s.view()
	if err != nil {
		return rep, err
	}
	defer v.snap.Close()
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
		seen    = map[[key.IDSize]byte]bool{}
		bad     = map[cardLoc]bool{} // cards with a problem already reported
	)
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
		h := v.heads[cur.Array()]
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
			if !haveCur || it.author != cur {
				endLog()
				cur, haveCur, nextSeq, lastID = it.author, true, 1, card.ID{}
			}
			switch {
			case it.err != nil:
				problem(it, fmt.Errorf("%w: %w", ErrCorrupt, it.err))
			case it.card.Author() != it.author || it.card.Seq() != it.seq:
				problem(it, fmt.Errorf("%w: stored under %s@%d but is %s@%d", ErrCorrupt, it.author, it.seq, it.card.Author(), it.card.Seq()))
			case it.seq != nextSeq:
				problem(it, fmt.Errorf("%w: expected seq %d", ErrGap, nextSeq))
			default:
				if prev, _ := it.card.Prev(); it.seq > 1 && prev != lastID {
					problem(it, fmt.Errorf("%w: prev %s, previous card is %s", ErrBadChain, prev, lastID))
				} else if it.idxErr != nil {
					problem(it, it.idxErr)
				}
			}
			nextSeq = it.seq + 1
			lastID = card.IDOf(it.raw)
		}
		if progress != nil {
			progress(rep.Cards)
		}
	}
	// The index digest is computed alongside the card scan.
	var (
		indexSet  digest
		indexErr  error
		indexDone = make(chan struct{})
	)
	if only == nil {
		go func() {
			defer close(indexDone)
			indexSet, indexErr = v.indexDigest(&dk)
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
		fn := func(a key.ID, seq uint64, b []byte) error {
			j.add(a, seq, b)
			if len(j.items) == verifyBatch {
				emit()
			}
			return nil
		}
		if only != nil {
			scanErr = scanRaw(v.snap, cardKey(*only, 0), append(cardKey(*only, ^uint64(0)), 0), v.limit, fn)
		} else {
			o := prefixBounds(pfxCard)
			scanErr = scanRaw(v.snap, o.LowerBound, o.UpperBound, v.limit, fn)
		}
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
					it.card, it.err = card.Decode(it.raw, s.caps)
					switch {
					case only != nil && it.err == nil:
						it.idxErr = checkIndexAt(v.snap, it.card.ID(), it.author, it.seq)
					case only == nil && it.err == nil:
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
	if only != nil {
		return rep, nil
	}
	// Logs whose head record survived but whose cards are all gone.
	for a, h := range v.heads {
		if !seen[a] && h.seq > 0 {
			id, err := key.IDFromBytes(a[:])
			if err != nil {
				return rep, fmt.Errorf("%w: head of %x: %w", ErrCorrupt, a, err)
			}
			rep.Logs++
			problem(verifyItem{author: id, seq: h.seq}, fmt.Errorf("%w: head record says seq %d, log has no cards", ErrCorrupt, h.seq))
		}
	}
	if indexErr != nil {
		return rep, indexErr
	}
	if indexSet != cardSet {
		probs, err := v.indexProblems(bad)
		if err != nil {
			return rep, err
		}
		rep.Problems = append(rep.Problems, probs...)
	}
	return rep, nil
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

func (j *verifyJob) add(a key.ID, seq uint64, b []byte) {
	if cap(j.buf)-len(j.buf) < len(b) {
		// Earlier items keep the old block alive; only new bytes go here.
		j.buf = make([]byte, 0, max(len(b), (verifyBatch-len(j.items))*512))
	}
	n := len(j.buf)
	j.buf = append(j.buf, b...)
	j.items = append(j.items, verifyItem{author: a, seq: seq, raw: j.buf[n:len(j.buf):len(j.buf)]})
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

// indexDigest folds every index entry of the view into a digest. Entries for
// cards past the view's heads (written, not yet durable) are left out, as the
// card scan leaves those cards out; a malformed entry spoils the digest.
func (v *view) indexDigest(k *digestKey) (digest, error) {
	var d digest
	it, err := v.snap.NewIter(prefixBounds(pfxIndex))
	if err != nil {
		return d, err
	}
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return d, err
		}
		id, a, seq, ok := indexEntry(it.Key(), val)
		if !ok {
			d[0] ^= 1 // cannot equal the cards' digest by accident
			continue
		}
		if h, known := v.heads[a.Array()]; known && seq > h.seq {
			continue
		}
		d.add(k, id, a, seq)
	}
	return d, it.Close()
}

// indexProblems is the slow pass, run only when the digests differ: it looks
// up every card's index entry and every index entry's card, and names what
// is wrong. Cards that already have a problem are not reported again.
func (v *view) indexProblems(bad map[cardLoc]bool) ([]Problem, error) {
	var probs []Problem
	reported := map[card.ID]bool{}
	o := prefixBounds(pfxCard)
	err := scanRaw(v.snap, o.LowerBound, o.UpperBound, v.limit, func(a key.ID, seq uint64, b []byte) error {
		if bad[cardLoc{a.Array(), seq}] {
			return nil
		}
		id := card.IDOf(b)
		if err := checkIndexAt(v.snap, id, a, seq); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return err
			}
			reported[id] = true
			probs = append(probs, Problem{Author: a, Seq: seq, ID: id, Err: err, Reason: err.Error()})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	it, err := v.snap.NewIter(prefixBounds(pfxIndex))
	if err != nil {
		return nil, err
	}
	defer it.Close()
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
		h, known := v.heads[a.Array()]
		if reported[id] || bad[cardLoc{a.Array(), seq}] || (known && seq > h.seq) {
			continue
		}
		raw, closer, err := v.snap.Get(cardKey(a, seq))
		switch {
		case errors.Is(err, pebble.ErrNotFound):
			if known {
				continue // a hole in a known log: the chain check reported it
			}
			err = fmt.Errorf("%w: index entry for %s names %s@%d, which has no log", ErrCorrupt, id, a, seq)
		case err != nil:
			return nil, err
		default:
			got := card.IDOf(raw)
			closer.Close()
			if got == id {
				continue
			}
			err = fmt.Errorf("%w: index entry for %s names %s@%d, which holds %s", ErrCorrupt, id, a, seq, got)
		}
		probs = append(probs, Problem{Author: a, Seq: seq, ID: id, Err: err, Reason: err.Error()})
	}
	return probs, nil
}

// checkIndexAt checks that the index maps id to author a at seq.
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
	)
	err = s.ScanRaw(func(a key.ID, seq uint64, b []byte) error {
		cards++
		if !have || a != cur {
			cur, have, nextSeq, lastID = a, true, 1, card.ID{}
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
		case seq > 1 && prev != lastID:
			bad(fmt.Errorf("%w: prev %s, previous card is %s", ErrBadChain, prev, lastID))
		}
		nextSeq, lastID = seq+1, id
		return nil
	})
	return cards, problems, err
}
