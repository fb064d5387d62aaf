// Package projections owns the pure folds over the set of verified cards:
// the audit timeline, and (as they land) desired state, observed state and
// the plan. A fold depends only on the set of cards it was given, never on
// the order they arrived in, and does no I/O.
package projections

import (
	"sort"
	"time"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Entry is one card on the audit timeline.
type Entry struct {
	Time   time.Time `json:"time"`
	Author key.ID    `json:"author"`
	Seq    uint64    `json:"seq"`
	Kind   string    `json:"kind"`
	ID     card.ID   `json:"id"`
}

// Summary counts what the timeline holds.
type Summary struct {
	Cards  int            `json:"cards"`
	Logs   int            `json:"logs"`
	Kinds  map[string]int `json:"kinds"`
	First  time.Time      `json:"first,omitzero"`
	Last   time.Time      `json:"last,omitzero"`
	Forked []key.ID       `json:"forked,omitempty"`
}

// Timeline folds cards into a timeline across all logs. Logs have no common
// order, so entries are shown by the authors' claimed time, then author, then
// seq: a total order that depends only on the set of cards.
type Timeline struct {
	entries []Entry
	sorted  bool
	seen    map[card.ID]bool
	logs    map[key.ID]bool
	kinds   map[string]int
	forked  map[key.ID]bool
}

// NewTimeline returns an empty timeline.
func NewTimeline() *Timeline {
	return &Timeline{seen: map[card.ID]bool{}, logs: map[key.ID]bool{}, kinds: map[string]int{}, forked: map[key.ID]bool{}}
}

// Add folds one card in; adding a card twice changes nothing.
func (t *Timeline) Add(c *card.Card) {
	if t.seen[c.ID()] {
		return
	}
	t.seen[c.ID()] = true
	t.logs[c.Author()] = true
	t.kinds[c.Kind()]++
	t.entries = append(t.entries, Entry{Time: c.Time(), Author: c.Author(), Seq: c.Seq(), Kind: c.Kind(), ID: c.ID()})
	t.sorted = false
}

// MarkForked records that an author's log is forked.
func (t *Timeline) MarkForked(a key.ID) { t.forked[a] = true }

// Entries returns the timeline in its total order.
func (t *Timeline) Entries() []Entry {
	if !t.sorted {
		sort.Slice(t.entries, func(i, j int) bool { return entryLess(t.entries[i], t.entries[j]) })
		t.sorted = true
	}
	return t.entries
}

func entryLess(a, b Entry) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	if c := a.Author.Compare(b.Author); c != 0 {
		return c < 0
	}
	if a.Seq != b.Seq {
		return a.Seq < b.Seq
	}
	return string(a.ID[:]) < string(b.ID[:])
}

// Summary returns the counts.
func (t *Timeline) Summary() Summary {
	s := Summary{Cards: len(t.entries), Logs: len(t.logs), Kinds: map[string]int{}}
	for k, n := range t.kinds {
		s.Kinds[k] = n
	}
	if e := t.Entries(); len(e) > 0 {
		s.First, s.Last = e[0].Time, e[len(e)-1].Time
	}
	for a := range t.forked {
		s.Forked = append(s.Forked, a)
	}
	sort.Slice(s.Forked, func(i, j int) bool { return s.Forked[i].Compare(s.Forked[j]) < 0 })
	return s
}
