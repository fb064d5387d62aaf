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
	// A pipeline keeps every core on signatures: one goroutine scans and
	// copies cards into jobs, workers verify jobs as they come, and this
	// goroutine checks the chain links job by job in scan order.
	check := func(batch []verifyItem) {
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
	type job struct {
		items []verifyItem
		done  chan struct{}
	}
	work := make(chan *job, 8)
	order := make(chan *job, 8)
	var scanErr error
	go func() {
		defer close(work)
		defer close(order)
		var batch []verifyItem
		emit := func() {
			j := &job{items: batch, done: make(chan struct{})}
			order <- j
			work <- j
			batch = nil
		}
		fn := func(a key.ID, seq uint64, b []byte) error {
			batch = append(batch, verifyItem{author: a, seq: seq, raw: bytes.Clone(b)})
			if len(batch) == 256 {
				emit()
			}
			return nil
		}
		if only != nil {
			scanErr = s.scanRaw(cardKey(*only, 0), append(cardKey(*only, ^uint64(0)), 0), fn)
		} else {
			scanErr = s.ScanRaw(fn)
		}
		if len(batch) > 0 {
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
					if it.err == nil {
						it.idxErr = s.checkIndex(it.card)
					}
				}
				close(j.done)
			}
		}()
	}
	for j := range order {
		<-j.done
		check(j.items)
	}
	wg.Wait()
	if scanErr != nil {
		return rep, scanErr
	}
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
