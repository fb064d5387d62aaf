package proto

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Tuning of the reconciliation. A range with at most ItemsThreshold heads on
// the answering side is answered with its heads, a bigger one is split into
// Fanout sub-ranges with fingerprints. A reply to a list of heads carries up to
// MaxFinal heads before it is split instead.
const (
	ItemsThreshold = 16
	Fanout         = 16
	MaxFinal       = 8192
	fpSize         = 16
	fpLabel        = "sublog/v1/sync-fingerprint"
)

// Config is what a Machine needs to know about its own side. It is read only.
type Config struct {
	// Initiator: the side that sends the first Ranges message.
	Initiator bool
	// Heads are the logs this side shows the peer: already filtered to the
	// ones the peer is entitled to see. Order does not matter.
	Heads []Head
	// Lookup gives this side's card ID at (author, seq), for logs in Heads.
	Lookup func(author key.ID, seq uint64) (card.ID, bool)
	// Want reports whether this side accepts cards of author from this peer.
	// Nil accepts every log.
	Want func(author key.ID) bool
}

// Push asks the caller to send its cards From..To (inclusive) of Author, in
// chain order, as Cards messages. Only (an answer to a Want) sends only the
// cards that may go to the peer, no stubs.
type Push struct {
	Author   key.ID
	From, To uint64
	Only     bool
}

// MaxWanted bounds the seqs a session answers Want messages for; the rest
// are ignored (a peer asks again in its next session).
const MaxWanted = 1024

// WitnessOut asks the caller to send its card at Seq of Author as a Witness
// message (Reply asks the peer to answer with its own card at Seq).
type WitnessOut struct {
	Author key.ID
	Seq    uint64
	Reply  bool
}

// Received is what the peer sent, for the caller to verify and store.
// Kind is TCards (a chain segment starting at From), TWitness (one card that
// may conflict with a stored one) or TFork (an encoded fork proof in Proof).
type Received struct {
	Kind   uint64
	Author key.ID
	From   uint64
	Cards  [][]byte
	Proof  []byte
}

// Output is what one step asks of the caller, in this order: witness cards
// first (so that a peer asked for a reply receives the question before the
// Ranges message that may end its reconciliation), then messages, pushes
// and fork proofs.
type Output struct {
	Send     []*Msg       // messages to send now, in order
	Push     []Push       // card ranges to stream (after Send)
	Witness  []WitnessOut // witness cards to send
	Forks    []key.ID     // authors whose fork proof to send
	Received []Received   // cards to verify and store
	// Expect are the card ranges the peer's announced heads put ahead of
	// this side's in logs this side takes from the peer: what the peer's
	// own diff pushes here, unless it sees a fork (it sends a witness
	// instead) or its log is forked (it stops before the fork). For
	// progress only; nothing is sent or refused on it.
	Expect []Push
}

func (o *Output) merge(p Output) {
	o.Send = append(o.Send, p.Send...)
	o.Push = append(o.Push, p.Push...)
	o.Witness = append(o.Witness, p.Witness...)
	o.Forks = append(o.Forks, p.Forks...)
	o.Received = append(o.Received, p.Received...)
	o.Expect = append(o.Expect, p.Expect...)
}

// Machine is one side of a log-diff session. The same configuration and the
// same messages give the same outputs. It is not safe for concurrent use.
type Machine struct {
	cfg      Config
	items    []Head
	hashes   [][32]byte
	index    map[key.ID]int
	expect   bool // a Ranges message from the peer is expected
	started  bool
	recon    bool // reconciliation finished
	peerDone bool
	rounds   int
	awaiting map[WitnessOut]bool // witness replies asked of the peer
	wanted   int                 // seqs asked by Want messages
}

// New builds a machine.
func New(cfg Config) *Machine {
	items := slices.Clone(cfg.Heads)
	slices.SortFunc(items, func(a, b Head) int { return a.Author.Compare(b.Author) })
	items = slices.CompactFunc(items, func(a, b Head) bool { return a.Author == b.Author })
	m := &Machine{cfg: cfg, items: items, hashes: make([][32]byte, len(items)), index: map[key.ID]int{},
		awaiting: map[WitnessOut]bool{}}
	var buf []byte
	for i, h := range items {
		buf = packItem(buf[:0], h)
		m.hashes[i] = sha256.Sum256(buf)
		m.index[h.Author] = i
	}
	m.expect = !cfg.Initiator
	return m
}

// WantFrom reports whether this side takes cards of author from the peer
// (Config.Want; true when none is set).
func (m *Machine) WantFrom(author key.ID) bool { return m.cfg.Want == nil || m.cfg.Want(author) }

// ReconDone reports whether set reconciliation has finished (every push it
// implies has been handed out in an Output) and every witness card asked of
// the peer has arrived. The caller says Done only after this and after it
// has sent everything its Outputs asked for.
func (m *Machine) ReconDone() bool { return m.recon && len(m.awaiting) == 0 }

// PeerDone reports whether the peer has said Done.
func (m *Machine) PeerDone() bool { return m.peerDone }

// Rounds is the number of Ranges messages this side has sent.
func (m *Machine) Rounds() int { return m.rounds }

// Start gives the initiator's first message; for the responder it is empty.
func (m *Machine) Start() Output {
	if m.started || !m.cfg.Initiator {
		return Output{}
	}
	m.started = true
	m.expect = true
	// Always a fingerprint first: two sides in step finish in one round trip.
	r := Range{Mode: ModeFP, FP: m.fp(0, len(m.items))}
	m.rounds++
	return Output{Send: []*Msg{{T: TRanges, V: Version, Ranges: []Range{r}}}}
}

// Step takes one message from the peer. An error means the peer broke the
// protocol; the caller should end the session (nothing of the message is to
// be stored).
func (m *Machine) Step(msg *Msg) (Output, error) {
	if err := msg.check(); err != nil {
		return Output{}, err
	}
	if msg.T == TCardsCompact { // Decode expands these; a caller may not have
		var err error
		if msg, err = expand(msg); err != nil {
			return Output{}, err
		}
	}
	if m.peerDone {
		return Output{}, fmt.Errorf("%w: type %d after done", ErrUnexpected, msg.T)
	}
	switch msg.T {
	case TRanges:
		return m.ranges(msg)
	case TRefuse:
		return Output{}, fmt.Errorf("%w: %s", ErrRefused, msg.Reason)
	case TDone:
		if !m.ReconDone() {
			return Output{}, fmt.Errorf("%w: done before reconciliation ended", ErrUnexpected)
		}
		m.peerDone = true
		return Output{}, nil
	}
	author, _ := key.IDFromBytes(msg.Author) // checked by msg.check
	if msg.T == TWant {
		return m.want(author, msg.Seqs), nil
	}
	if m.cfg.Want != nil && !m.cfg.Want(author) {
		if msg.T == TWitness {
			delete(m.awaiting, WitnessOut{Author: author, Seq: msg.From, Reply: true})
		}
		return Output{}, nil // not a log this side takes from this peer: drop it
	}
	var out Output
	switch msg.T {
	case TCards:
		out.Received = []Received{{Kind: TCards, Author: author, From: msg.From, Cards: msg.Cards}}
	case TWitness:
		delete(m.awaiting, WitnessOut{Author: author, Seq: msg.From, Reply: true})
		out.Received = []Received{{Kind: TWitness, Author: author, From: msg.From, Cards: msg.Cards}}
		if i, ok := m.index[author]; msg.Reply && ok && msg.From <= m.items[i].Seq {
			out.Witness = []WitnessOut{{Author: author, Seq: msg.From}}
		}
	case TFork:
		out.Received = []Received{{Kind: TFork, Author: author, Proof: msg.Proof}}
	}
	return out, nil
}

// want answers a Want: a push of each asked seq of a log this side shows
// the peer, up to its head, cards only (the caller sends a card only if it
// may go to the peer). Seqs past the session's bound are ignored.
func (m *Machine) want(author key.ID, seqs []uint64) Output {
	var out Output
	i, ok := m.index[author]
	if !ok {
		return out // not a log shown to this peer: nothing to say
	}
	for _, q := range seqs {
		if q > m.items[i].Seq || m.wanted == MaxWanted {
			break
		}
		m.wanted++
		out.Push = append(out.Push, Push{Author: author, From: q, To: q, Only: true})
	}
	return out
}

func (m *Machine) ranges(msg *Msg) (Output, error) {
	if !m.expect {
		return Output{}, fmt.Errorf("%w: ranges message out of turn", ErrUnexpected)
	}
	m.started = true
	var out Output
	var reply []Range
	add := func(r Range) {
		if n := len(reply); n > 0 && r.Mode == ModeSkip && reply[n-1].Mode == ModeSkip {
			reply[n-1].Upper = r.Upper
			return
		}
		reply = append(reply, r)
	}
	lo := 0          // index of my first item in the current range
	var lower []byte // the range's lower bound (inclusive); nil at the start
	for _, r := range msg.Ranges {
		hi := len(m.items)
		if len(r.Upper) > 0 {
			hi, _ = slices.BinarySearchFunc(m.items, r.Upper, func(h Head, u []byte) int {
				return bytes.Compare(h.Author.Bytes(), u)
			})
			hi = max(hi, lo)
		}
		switch r.Mode {
		case ModeSkip:
			add(Range{Upper: r.Upper, Mode: ModeSkip})
		case ModeFP:
			switch {
			case bytes.Equal(m.fp(lo, hi), r.FP):
				add(Range{Upper: r.Upper, Mode: ModeSkip})
			case hi-lo <= ItemsThreshold:
				add(Range{Upper: r.Upper, Mode: ModeItems, Items: m.pack(lo, hi)})
			default:
				for _, s := range m.split(lo, hi, r.Upper) {
					add(s)
				}
			}
		case ModeItems, ModeFinal:
			theirs, err := unpackItems(r.Items)
			if err != nil {
				return Output{}, err
			}
			for _, t := range theirs {
				if (lower != nil && bytes.Compare(t.Author.Bytes(), lower) < 0) ||
					(len(r.Upper) > 0 && bytes.Compare(t.Author.Bytes(), r.Upper) >= 0) {
					return Output{}, fmt.Errorf("%w: item outside its range", ErrMalformed)
				}
			}
			switch {
			case r.Mode == ModeFinal:
				out.merge(m.diff(lo, hi, theirs))
				out.Expect = append(out.Expect, m.coming(theirs)...)
				add(Range{Upper: r.Upper, Mode: ModeSkip})
			case hi-lo <= MaxFinal:
				out.merge(m.diff(lo, hi, theirs))
				out.Expect = append(out.Expect, m.coming(theirs)...)
				add(Range{Upper: r.Upper, Mode: ModeFinal, Items: m.pack(lo, hi)})
			default:
				for _, s := range m.split(lo, hi, r.Upper) {
					add(s)
				}
			}
		}
		lo, lower = hi, r.Upper
	}
	if len(reply) == 1 && reply[0].Mode == ModeSkip {
		reply = nil
	}
	if len(reply) > MaxRanges {
		return Output{}, fmt.Errorf("%w: reply would need %d ranges", ErrTooLarge, len(reply))
	}
	if reply == nil {
		// Everything is in step or settled: say so and stop.
		m.recon = true
		m.expect = false
		if len(msg.Ranges) == 0 {
			return out, nil // the peer said it first
		}
		m.rounds++
		out.Send = append(out.Send, &Msg{T: TRanges, V: Version})
		return out, nil
	}
	m.rounds++
	out.Send = append(out.Send, &Msg{T: TRanges, V: Version, Ranges: reply})
	return out, nil
}

// split cuts items[lo:hi] into at most Fanout ranges with fingerprints.
func (m *Machine) split(lo, hi int, upper []byte) []Range {
	n := hi - lo
	size := (n + Fanout - 1) / Fanout
	var out []Range
	for s := lo; s < hi; s += size {
		e := min(s+size, hi)
		u := upper
		if e < hi {
			u = m.items[e].Author.Bytes()
		}
		out = append(out, Range{Upper: u, Mode: ModeFP, FP: m.fp(s, e)})
	}
	return out
}

// diff compares my heads items[lo:hi] with the peer's heads of the same range
// and says what to push. The peer runs the same comparison the other way
// round, so each side pushes only what it has and the other lacks. Where the
// peer's head is behind mine and is not my card at that seq, only this side
// can see the fork: it sends its card there and asks for the peer's.
func (m *Machine) diff(lo, hi int, theirs []Head) Output {
	var out Output
	mine := m.items[lo:hi]
	j := 0
	for _, h := range mine {
		for j < len(theirs) && theirs[j].Author.Compare(h.Author) < 0 {
			j++
		}
		if j == len(theirs) || theirs[j].Author != h.Author {
			out.Push = append(out.Push, Push{Author: h.Author, From: 1, To: h.Seq})
			if h.Forked {
				out.Forks = append(out.Forks, h.Author)
			}
			continue
		}
		t := theirs[j]
		if h.Forked && !t.Forked {
			out.Forks = append(out.Forks, h.Author)
		}
		switch {
		case t.Seq < h.Seq:
			id, ok := h.ID, false
			if m.cfg.Lookup != nil {
				id, ok = m.cfg.Lookup(h.Author, t.Seq)
			}
			switch {
			case ok && id == t.ID:
				out.Push = append(out.Push, Push{Author: h.Author, From: t.Seq + 1, To: h.Seq})
			case ok:
				w := WitnessOut{Author: h.Author, Seq: t.Seq, Reply: true}
				out.Witness = append(out.Witness, w)
				m.awaiting[w] = true
			}
		case t.Seq == h.Seq && t.ID != h.ID:
			// Both sides see this; each sends its own card, neither asks back.
			out.Witness = append(out.Witness, WitnessOut{Author: h.Author, Seq: h.Seq})
		}
	}
	return out
}

// coming is diff seen from the peer's side: the cards its heads theirs
// (one range's) put ahead of mine, in the logs this side takes from it.
// A log this side does not show the peer counts from seq 1: the peer does
// not know it is held here and pushes all of it.
func (m *Machine) coming(theirs []Head) []Push {
	var out []Push
	for _, t := range theirs {
		if m.cfg.Want != nil && !m.cfg.Want(t.Author) {
			continue
		}
		from := uint64(1)
		if i, ok := m.index[t.Author]; ok {
			from = m.items[i].Seq + 1
		}
		if t.Seq >= from {
			out = append(out, Push{Author: t.Author, From: from, To: t.Seq})
		}
	}
	return out
}

func (m *Machine) pack(lo, hi int) []byte {
	if hi == lo {
		return []byte{}
	}
	b := make([]byte, 0, (hi-lo)*ItemSize)
	for _, h := range m.items[lo:hi] {
		b = packItem(b, h)
	}
	return b
}

// fp is the fingerprint of items[lo:hi]: the sum mod 2^256 of the items'
// SHA-256 hashes and the count, hashed under a label.
func (m *Machine) fp(lo, hi int) []byte {
	var acc [4]uint64
	for _, h := range m.hashes[lo:hi] {
		var carry uint64
		for k := range 4 {
			v := binary.LittleEndian.Uint64(h[8*k:])
			s := acc[k] + v
			c1 := uint64(0)
			if s < acc[k] {
				c1 = 1
			}
			s2 := s + carry
			if s2 < s {
				c1++
			}
			acc[k], carry = s2, c1
		}
	}
	d := sha256.New()
	d.Write([]byte(fpLabel))
	for _, v := range acc {
		d.Write(binary.LittleEndian.AppendUint64(nil, v))
	}
	d.Write(binary.BigEndian.AppendUint64(nil, uint64(hi-lo)))
	return d.Sum(nil)[:fpSize]
}
