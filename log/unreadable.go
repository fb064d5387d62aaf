package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	stdsync "sync"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// ErrUnreadable marks a stored card the decoder refuses (damage on disk, or
// a card signed under looser limits by an earlier version). Readers skip it
// and the store remembers it (Unreadable), so one such card never makes a
// whole log, listing, projection or sync fail; Verify reports it.
var ErrUnreadable = errors.New("log: unreadable stored card")

// Unreadable is a stored card a reader skipped.
type Unreadable struct {
	Author key.ID
	Seq    uint64
	ID     card.ID // SHA-256 of the stored bytes
	Err    error
}

// skipped is the store's record of unreadable cards met by readers.
type skipped struct {
	mu    stdsync.Mutex
	cards map[cardLoc]Unreadable
}

func (k *skipped) add(u Unreadable) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cards == nil {
		k.cards = map[cardLoc]Unreadable{}
	}
	k.cards[cardLoc{u.Author.Array(), u.Seq}] = u
}

// Unreadable lists the stored cards readers skipped since the store was
// opened (by Scan, All, Get), by author and seq. A command that read the
// store reports them; Verify names every one whether read before or not.
func (s *Store) Unreadable() []Unreadable {
	s.skip.mu.Lock()
	out := make([]Unreadable, 0, len(s.skip.cards))
	for _, u := range s.skip.cards {
		out = append(out, u)
	}
	s.skip.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Author.Compare(out[j].Author); c != 0 {
			return c < 0
		}
		return out[i].Seq < out[j].Seq
	})
	return out
}

// readable parses stored bytes for a reader: an unreadable card is recorded
// and reported as ErrUnreadable (wrapping ErrCorrupt and the decoder's
// reason).
func (s *Store) readable(a key.ID, seq uint64, b []byte) (*card.Card, error) {
	c, err := storedCard(a, seq, b)
	if err != nil {
		s.skip.add(Unreadable{Author: a, Seq: seq, ID: card.IDOf(b), Err: err})
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	return c, nil
}

// PlantRawForTest stores b as author's card at seq and moves the log's
// head there, with no check at all. It exists only so that tests can
// reproduce a home holding a card the decoder refuses (as homes written
// by earlier versions do); nothing else may call it.
func (s *Store) PlantRawForTest(author key.ID, seq uint64, b []byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	l := s.stripe(author)
	l.Lock()
	id := card.IDOf(b)
	hv := make([]byte, 8+32)
	binary.BigEndian.PutUint64(hv, seq)
	copy(hv[8:], id[:])
	done, err := s.enqueue([]kv{{k: cardKey(author, seq), v: bytes.Clone(b)}, {k: indexKey(id), v: cardKey(author, seq)[1:]}, {k: headKey(author), v: hv}},
		headUpdate{author.Array(), head{seq: seq, id: id}})
	l.Unlock()
	if err != nil {
		return err
	}
	return <-done
}
