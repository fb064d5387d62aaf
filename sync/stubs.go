package sync

import (
	"bytes"
	"errors"
	"io"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

// chain walks author's log from seq from to seq to as this side may send
// it: each card that leaves (leaves(c)) as its bytes, each card that may
// not as a stub (its ID, proven by the next card's prev on the receiving
// side; see log/stub.go), and each stub this store holds as it holds it.
// So a card that may not leave no longer holds back the rest of its log.
// It stops at a hole that is no stub (an unreadable card: nothing past it
// could chain on the receiver). withheld is called for each card this side
// withholds.
func chain(st Store, author key.ID, from, to uint64, leaves func(*card.Card) bool,
	withheld func(*card.Card), emit func(seq uint64, b []byte, stub bool) error) error {
	if from > to {
		return nil
	}
	stubs, err := st.Stubs(author, from)
	if err != nil {
		return err
	}
	si := 0
	next := from
	// across emits the stubs this store holds from next up to (excluding)
	// seq; false at a hole that is no stub.
	across := func(seq uint64) (bool, error) {
		for next < seq {
			for si < len(stubs) && stubs[si].Seq < next {
				si++
			}
			if si == len(stubs) || stubs[si].Seq != next {
				return false, nil
			}
			if err := emit(next, stubs[si].Wire(), true); err != nil {
				return false, err
			}
			next++
		}
		return true, nil
	}
	holed := false
	err = st.Scan(author, from, func(c *card.Card) error {
		if c.Seq() > to {
			return io.EOF
		}
		if ok, err := across(c.Seq()); err != nil || !ok {
			holed = !ok
			if err == nil {
				err = io.EOF
			}
			return err
		}
		next++
		if !leaves(c) {
			withheld(c)
			id := c.ID()
			return emit(c.Seq(), id[:], true)
		}
		return emit(c.Seq(), bytes.Clone(c.Bytes()), false) // (a store may reuse a scan's buffer)
	})
	if err != nil || holed {
		return err
	}
	if _, err = across(to + 1); errors.Is(err, io.EOF) { // stubs up to to, if to stops short of the next card
		err = nil
	}
	return err
}

// batcher cuts a chain segment into Cards messages of at most
// proto.MaxBatch elements and about maxBatchBytes of cards. A run of stubs
// stays in the message of the card after it (that card proves the last of
// them); a run too long for one message is cut off, and the receiver takes
// nothing after it (see ARCHITECTURE.md, Sync, "Withheld cards").
type batcher struct {
	only   bool // cards only: stubs are left out (an answer to a Want)
	send   func(from uint64, cards [][]byte) error
	batch  [][]byte
	first  uint64
	size   int
	run    [][]byte
	runAt  uint64
	cut    bool // a run did not fit: nothing more of this log is sent
	stubs  int  // stubs sent
	cards  int  // cards sent
	nstubs int  // stubs in batch
}

func (b *batcher) add(seq uint64, el []byte, stub bool) error {
	if b.cut {
		return io.EOF
	}
	if stub && b.only {
		return nil
	}
	if stub {
		if len(b.run) == 0 {
			b.runAt = seq
		}
		if len(b.run) == proto.MaxBatch-1 {
			b.cut = true
			return io.EOF
		}
		b.run = append(b.run, el)
		return nil
	}
	unit := len(b.run) + 1
	usize := len(el) + proto.StubSize*len(b.run)
	if len(b.batch) > 0 && (len(b.batch)+unit > proto.MaxBatch || b.size+usize > maxBatchBytes) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	if len(b.batch) == 0 {
		b.first = seq
		if len(b.run) > 0 {
			b.first = b.runAt
		}
	}
	b.batch = append(append(b.batch, b.run...), el)
	b.nstubs += len(b.run)
	b.size += usize
	b.run = nil
	return nil
}

func (b *batcher) flush() error {
	if len(b.batch) == 0 {
		return nil
	}
	if err := b.send(b.first, b.batch); err != nil {
		return err
	}
	b.stubs += b.nstubs
	b.cards += len(b.batch) - b.nstubs
	b.batch, b.size, b.nstubs = nil, 0, 0
	return nil
}

// finish sends what is left, a trailing run of stubs included (the
// receiver cannot prove them, but learns what it does not receive).
func (b *batcher) finish() error {
	if len(b.run) > 0 {
		if len(b.batch) > 0 && len(b.batch)+len(b.run) > proto.MaxBatch {
			if err := b.flush(); err != nil {
				return err
			}
		}
		if len(b.batch) == 0 {
			b.first = b.runAt
		}
		b.batch = append(b.batch, b.run...)
		b.nstubs += len(b.run)
		b.run = nil
	}
	return b.flush()
}

// idAt is the ID of author's card at seq as this store knows it: a card's,
// or a proven stub's.
func idAt(st Store, a key.ID, seq uint64) (card.ID, bool) {
	c, err := st.Get(a, seq)
	if err == nil {
		return c.ID(), true
	}
	if !errors.Is(err, sublog.ErrWithheld) {
		return card.ID{}, false
	}
	stubs, err := st.Stubs(a, seq)
	if err != nil || len(stubs) == 0 || stubs[0].Seq != seq || !stubs[0].Proven {
		return card.ID{}, false
	}
	return stubs[0].ID, true
}

// wants are the Want messages a side sends at the start of a round: for
// each log it shows the peer and takes from it, the seqs it holds as stubs,
// proto.MaxWant per message, at most proto.MaxWanted in all (lowest first
// per log, logs in author order).
func wants(st Store, shown []proto.Head, take func(key.ID) bool) []*proto.Msg {
	all, err := st.AllStubs()
	if err != nil || len(all) == 0 {
		return nil
	}
	showing := make(map[key.ID]bool, len(shown))
	for _, h := range shown {
		showing[h.Author] = true
	}
	var out []*proto.Msg
	n := 0
	var last *proto.Msg
	for _, stub := range all {
		if n == proto.MaxWanted {
			break
		}
		if !showing[stub.Author] || (take != nil && !take(stub.Author)) {
			continue
		}
		if last == nil || string(last.Author) != string(stub.Author.Bytes()) || len(last.Seqs) == proto.MaxWant {
			last = &proto.Msg{T: proto.TWant, Author: stub.Author.Bytes()}
			out = append(out, last)
		}
		last.Seqs = append(last.Seqs, stub.Seq)
		n++
	}
	return out
}
