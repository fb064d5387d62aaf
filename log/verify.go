package log

import (
	"bytes"
	"fmt"
	"runtime"
	stdsync "sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Problem is one bad card found by Verify.
type Problem struct {
	Author key.ID  `json:"author"`
	Seq    uint64  `json:"seq"`
	ID     card.ID `json:"id"`
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
	idxErr error // the ID index entry
}

// Verify re-verifies every stored card (only author's when only is non-nil):
// signature, canonical form and capabilities, chain links from seq 1, the
// head record and the ID index. Signatures are checked in parallel; progress,
// if set, is called with the running count of cards checked.
func (s *Store) Verify(only *key.ID, progress func(done int)) (VerifyReport, error) {
	var rep VerifyReport
	var (
		cur     key.ID
		haveCur bool
		nextSeq uint64
		lastID  card.ID
	)
	problem := func(it verifyItem, err error) {
		p := Problem{Author: it.author, Seq: it.seq, Err: err, Reason: err.Error()}
		if it.raw != nil {
			p.ID = card.IDOf(it.raw)
		}
		rep.Problems = append(rep.Problems, p)
	}
	endLog := func() {
		if !haveCur {
			return
		}
		rep.Logs++
		h := s.durOf(cur)
		if h.forked() {
			rep.Forked++
		}
		if h.seq != nextSeq-1 || h.id != lastID {
			problem(verifyItem{author: cur, seq: h.seq}, fmt.Errorf("%w: head record says seq %d, log ends at %d", ErrCorrupt, h.seq, nextSeq-1))
		}
	}
	check := func(batch []verifyItem) {
		s.parallelVerify(batch)
		for _, it := range batch {
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
	var batch []verifyItem
	fn := func(a key.ID, seq uint64, b []byte) error {
		batch = append(batch, verifyItem{author: a, seq: seq, raw: bytes.Clone(b)})
		if len(batch) == 1024 {
			check(batch)
			batch = batch[:0]
		}
		return nil
	}
	var err error
	if only != nil {
		err = s.scanRaw(cardKey(*only, 0), append(cardKey(*only, ^uint64(0)), 0), fn)
	} else {
		err = s.ScanRaw(fn)
	}
	if err != nil {
		return rep, err
	}
	check(batch)
	endLog()
	return rep, nil
}

func (s *Store) checkIndex(c *card.Card) error {
	id := c.ID()
	v, closer, err := s.db.Get(indexKey(id))
	if err != nil {
		if err == pebble.ErrNotFound {
			return fmt.Errorf("%w: no index entry for %s", ErrCorrupt, id)
		}
		return err
	}
	defer closer.Close()
	want := cardKey(c.Author(), c.Seq())[1:]
	if !bytes.Equal(v, want) {
		return fmt.Errorf("%w: index entry for %s points elsewhere (%x)", ErrCorrupt, id, v)
	}
	return nil
}

// parallelVerify fully decodes (signature included) every item and checks
// its index entry, spreading the work over all cores.
func (s *Store) parallelVerify(items []verifyItem) {
	n := runtime.GOMAXPROCS(0)
	var wg stdsync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(items); i += n {
				items[i].card, items[i].err = card.Decode(items[i].raw, s.caps)
				if items[i].err == nil {
					items[i].idxErr = s.checkIndex(items[i].card)
				}
			}
		}()
	}
	wg.Wait()
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
