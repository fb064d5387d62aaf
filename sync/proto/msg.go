// Package proto owns the log-diff protocol: the messages two peers exchange
// and a pure state machine (Machine) that decides what to send, what to push
// and what to store. It does no I/O of its own: the caller feeds it messages
// and carries out its Output (see ARCHITECTURE.md, Sync). ReadMsg and WriteMsg
// frame messages on a byte stream for the caller's convenience.
package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Version is the protocol version carried in every Ranges message. Version
// 2 added the compact Cards message (TCardsCompact), version 3 stubs in
// Cards messages and the Want message (TWant); a peer of another version is
// refused with ErrVersion at its first Ranges message.
const Version = 3

// Limits of the wire format.
const (
	// MaxMessage bounds one encoded message; a longer length prefix ends the
	// session before any of it is buffered.
	MaxMessage = 4 << 20
	// MaxBatch is the most cards one Cards message carries.
	MaxBatch = 1024
	// MaxRanges is the most ranges one Ranges message carries.
	MaxRanges = 4096
	// MaxProof bounds an encoded fork proof (two cards and a little CBOR).
	MaxProof = 2*card.MaxSize + 64
	// MaxWant is the most seqs one Want message names.
	MaxWant = 64
	// ItemSize is the size of one packed item: author, seq, head ID, flags.
	ItemSize = key.IDSize + 8 + 32 + 1
	// StubSize is the size of a stub in a Cards message: the ID of a card
	// the sender may not pass on, in that card's place (all zero when the
	// sender holds it unproven). A card, plain or elided, is always longer.
	StubSize = 32
)

// IsStub reports whether an element of a Cards message is a stub.
func IsStub(b []byte) bool { return len(b) == StubSize }

// Message types.
const (
	TRanges  = 1 // set reconciliation of heads
	TCards   = 2 // cards of one log, in chain order
	TWitness = 3 // one card at a seq where the two sides disagree (a fork)
	TFork    = 4 // a fork proof: two cards of one author at one seq
	TDone    = 5 // the sender has sent everything it will send
	TRefuse  = 6 // the sender ends the session on purpose, and says why
	// TCardsCompact is TCards with each card in its elided form
	// (card.Elide): Decode rebuilds the exact card bytes and returns a TCards
	// message, so nothing past Decode ever sees the compact form.
	TCardsCompact = 7
	// TWant names seqs of a log at which the sender holds stubs: the peer
	// sends its cards there that may go to the sender, and nothing else.
	TWant = 8
)

// MaxReason bounds a Refuse message's reason.
const MaxReason = 512

// Range modes.
const (
	ModeSkip  = 0 // the range is in step (or needs nothing more)
	ModeFP    = 1 // FP is the sender's fingerprint of the range
	ModeItems = 2 // Items are all the sender's heads in the range; reply with yours
	ModeFinal = 3 // Items are all the sender's heads in the range; no reply
)

// Errors of the protocol.
var (
	// ErrMalformed: a message does not decode or breaks the format's rules.
	ErrMalformed = errors.New("proto: malformed message")
	// ErrTooLarge: a message is over MaxMessage.
	ErrTooLarge = errors.New("proto: message too large")
	// ErrUnexpected: a valid message at the wrong time (the peer is buggy or hostile).
	ErrUnexpected = errors.New("proto: unexpected message")
	// ErrVersion: the peer speaks another protocol version.
	ErrVersion = errors.New("proto: unsupported version")
	// ErrRefused: the peer sent Refuse (the caller normally handles it
	// before Step).
	ErrRefused = errors.New("proto: refused by peer")
)

// Range is one piece of the key space (identities in byte order) from the end
// of the previous range (or the start) up to Upper, exclusive; an empty Upper
// is the end of the key space.
type Range struct {
	Upper []byte `cbor:"u,omitempty"`
	Mode  uint64 `cbor:"m"`
	FP    []byte `cbor:"f,omitempty"`
	Items []byte `cbor:"i,omitempty"` // packed items, ItemSize bytes each
}

// Msg is one protocol message. Which fields are set depends on T.
type Msg struct {
	T      uint64   `cbor:"t"`
	V      uint64   `cbor:"v,omitempty"` // TRanges: Version
	Ranges []Range  `cbor:"r,omitempty"` // TRanges
	Author []byte   `cbor:"a,omitempty"` // TCards, TWitness, TFork
	From   uint64   `cbor:"s,omitempty"` // TCards: seq of the first card; TWitness: seq
	Reply  bool     `cbor:"y,omitempty"` // TWitness: send your card at that seq back
	Cards  [][]byte `cbor:"c,omitempty"` // TCards, TWitness (1)
	Proof  []byte   `cbor:"p,omitempty"` // TFork: an encoded fork proof (log.ForkProof)
	Reason string   `cbor:"e,omitempty"` // TRefuse: why, printable ASCII
	Retry  uint64   `cbor:"w,omitempty"` // TRefuse: seconds to wait before trying again
	Seqs   []uint64 `cbor:"q,omitempty"` // TWant: 1..MaxWant seqs, increasing
}

// CleanReason makes text fit a Refuse message: printable ASCII (anything
// else becomes '?'), at most MaxReason bytes, never empty.
func CleanReason(s string) string {
	b := []byte(s)
	if len(b) > MaxReason {
		b = b[:MaxReason]
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) == 0 {
		return "refused"
	}
	return string(b)
}

// Head is one log's position as a side shows it to a peer.
type Head struct {
	Author key.ID
	Seq    uint64
	ID     card.ID // the card ID at Seq
	Forked bool    // the side holds a fork proof for this author
}

func packItem(dst []byte, h Head) []byte {
	dst = append(dst, h.Author.Bytes()...)
	dst = binary.BigEndian.AppendUint64(dst, h.Seq)
	dst = append(dst, h.ID[:]...)
	f := byte(0)
	if h.Forked {
		f = 1
	}
	return append(dst, f)
}

func unpackItems(b []byte) ([]Head, error) {
	if len(b)%ItemSize != 0 {
		return nil, fmt.Errorf("%w: %d item bytes", ErrMalformed, len(b))
	}
	out := make([]Head, 0, len(b)/ItemSize)
	for len(b) > 0 {
		id, err := key.IDFromBytes(b[:key.IDSize])
		if err != nil {
			return nil, fmt.Errorf("%w: item: %w", ErrMalformed, err)
		}
		h := Head{Author: id, Seq: binary.BigEndian.Uint64(b[32:40])}
		copy(h.ID[:], b[40:72])
		switch b[72] {
		case 0:
		case 1:
			h.Forked = true
		default:
			return nil, fmt.Errorf("%w: item flags %#x", ErrMalformed, b[72])
		}
		// Seq 0 is an author this side knows only by its fork proof: it
		// must be flagged forked and name no card.
		if h.Seq == 0 && (!h.Forked || !h.ID.IsZero()) {
			return nil, fmt.Errorf("%w: item at seq 0", ErrMalformed)
		}
		if n := len(out); n > 0 && out[n-1].Author.Compare(h.Author) >= 0 {
			return nil, fmt.Errorf("%w: items out of order", ErrMalformed)
		}
		out = append(out, h)
		b = b[ItemSize:]
	}
	return out, nil
}

// Encode gives a message's canonical bytes.
func Encode(m *Msg) ([]byte, error) {
	b, err := canon.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// Decode parses and checks one message: canonical CBOR, known type, fields
// that belong to the type and nothing else, sizes within limits.
func Decode(b []byte) (*Msg, error) {
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	var m Msg
	if err := canon.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.T == TCardsCompact {
		return expand(&m)
	}
	return &m, nil
}

// CardsMsg is the Cards message for a chain segment of author's log
// starting at seq from: the compact form when every card elides (each
// card's author and kid, and after the first its prev when it is the
// previous card's ID, or the stub's before it) and rebuilds to its exact
// bytes, else the plain form. Stubs travel as they are in both forms.
func CardsMsg(author key.ID, from uint64, cards [][]byte) *Msg {
	plain := &Msg{T: TCards, Author: author.Bytes(), From: from, Cards: cards}
	out := make([][]byte, len(cards))
	var prev *card.ID
	for i, c := range cards {
		if IsStub(c) {
			out[i] = c
			prev = stubPrev(c)
			continue
		}
		e, ok := card.Elide(c, author, prev)
		if !ok {
			return plain
		}
		back, err := card.Rebuild(e, author, prev)
		if err != nil || string(back) != string(c) {
			return plain // a layout the rebuild would not reproduce: send it whole
		}
		out[i] = e
		id := card.IDOf(c)
		prev = &id
	}
	return &Msg{T: TCardsCompact, Author: author.Bytes(), From: from, Cards: out}
}

// expand rebuilds a compact Cards message into the TCards message it stands
// for. A card that cannot be rebuilt refuses the whole message
// (ErrMalformed); a rebuilt card is still only bytes to verify.
func expand(m *Msg) (*Msg, error) {
	author, _ := key.IDFromBytes(m.Author) // checked by m.check
	cards := make([][]byte, len(m.Cards))
	var prev *card.ID
	for i, e := range m.Cards {
		if IsStub(e) {
			cards[i] = e
			prev = stubPrev(e)
			continue
		}
		c, err := card.Rebuild(e, author, prev)
		if err != nil {
			return nil, fmt.Errorf("%w: compact card %d: %w", ErrMalformed, i, err)
		}
		cards[i] = c
		id := card.IDOf(c)
		prev = &id
	}
	return &Msg{T: TCards, Author: m.Author, From: m.From, Cards: cards}, nil
}

// stubPrev is what the card after a stub elides as its prev: the stub's
// ID, or nothing when the stub's ID is unknown (zero).
func stubPrev(b []byte) *card.ID {
	id, _ := card.IDFromBytes(b)
	if id.IsZero() {
		return nil
	}
	return &id
}

func (m *Msg) check() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrMalformed}, a...)...) }
	author := func() error {
		if _, err := key.IDFromBytes(m.Author); err != nil {
			return bad("author: %v", err)
		}
		return nil
	}
	if m.T != TRefuse && (m.Reason != "" || m.Retry != 0) {
		return bad("reason or retry outside a refuse message")
	}
	if m.T != TWant && m.Seqs != nil {
		return bad("seqs outside a want message")
	}
	switch m.T {
	case TRanges:
		if m.V != Version {
			return fmt.Errorf("%w: %d", ErrVersion, m.V)
		}
		if m.Author != nil || m.From != 0 || m.Reply || m.Cards != nil || m.Proof != nil {
			return bad("ranges message with card fields")
		}
		if len(m.Ranges) > MaxRanges {
			return bad("%d ranges", len(m.Ranges))
		}
		var prev []byte
		for i, r := range m.Ranges {
			last := i == len(m.Ranges)-1
			switch {
			case last != (len(r.Upper) == 0):
				return bad("range %d: only the last range is open-ended", i)
			case !last && len(r.Upper) != key.IDSize:
				return bad("range %d: bound of %d bytes", i, len(r.Upper))
			case !last && prev != nil && string(prev) >= string(r.Upper):
				return bad("range %d: bounds not increasing", i)
			}
			prev = r.Upper
			switch r.Mode {
			case ModeSkip:
				if r.FP != nil || r.Items != nil {
					return bad("range %d: skip with data", i)
				}
			case ModeFP:
				if len(r.FP) != fpSize || r.Items != nil {
					return bad("range %d: fingerprint of %d bytes", i, len(r.FP))
				}
			case ModeItems, ModeFinal:
				if r.FP != nil || len(r.Items)%ItemSize != 0 {
					return bad("range %d: %d item bytes", i, len(r.Items))
				}
			default:
				return bad("range %d: mode %d", i, r.Mode)
			}
		}
	case TCards, TCardsCompact:
		if err := author(); err != nil {
			return err
		}
		if m.From == 0 || len(m.Cards) == 0 || len(m.Cards) > MaxBatch || m.Reply || m.Ranges != nil || m.V != 0 || m.Proof != nil {
			return bad("cards message: from %d, %d cards", m.From, len(m.Cards))
		}
	case TWitness:
		if err := author(); err != nil {
			return err
		}
		if m.From == 0 || len(m.Cards) != 1 || m.Ranges != nil || m.V != 0 || m.Proof != nil {
			return bad("witness message: seq %d, %d cards", m.From, len(m.Cards))
		}
		if IsStub(m.Cards[0]) {
			return bad("witness message with a stub (a witness is a signed card)")
		}
	case TFork:
		if err := author(); err != nil {
			return err
		}
		if len(m.Proof) == 0 || len(m.Proof) > MaxProof || m.Cards != nil || m.From != 0 || m.Reply || m.Ranges != nil || m.V != 0 {
			return bad("fork message: %d proof bytes", len(m.Proof))
		}
	case TWant:
		if err := author(); err != nil {
			return err
		}
		if len(m.Seqs) == 0 || len(m.Seqs) > MaxWant || m.From != 0 || m.Reply || m.Cards != nil || m.Ranges != nil || m.V != 0 || m.Proof != nil {
			return bad("want message: %d seqs", len(m.Seqs))
		}
		for i, q := range m.Seqs {
			if q == 0 || (i > 0 && q <= m.Seqs[i-1]) {
				return bad("want message: seqs not increasing from 1")
			}
		}
	case TDone:
		if m.V != 0 || m.Ranges != nil || m.Author != nil || m.From != 0 || m.Reply || m.Cards != nil || m.Proof != nil {
			return bad("done message with fields")
		}
	case TRefuse:
		if m.V != 0 || m.Ranges != nil || m.Author != nil || m.From != 0 || m.Reply || m.Cards != nil || m.Proof != nil {
			return bad("refuse message with card fields")
		}
		if m.Reason == "" || len(m.Reason) > MaxReason || CleanReason(m.Reason) != m.Reason {
			return bad("refuse reason of %d bytes, or not printable ASCII", len(m.Reason))
		}
	default:
		return bad("type %d", m.T)
	}
	for i, c := range m.Cards {
		if len(c) == 0 || len(c) > card.MaxSize {
			return bad("card %d of %d bytes", i, len(c))
		}
	}
	return nil
}

// WriteMsg writes one message with a 4-byte big-endian length prefix.
func WriteMsg(w io.Writer, m *Msg) (int, error) {
	b, err := Encode(m)
	if err != nil {
		return 0, err
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(b)))
	n, err := w.Write(append(hdr[:], b...))
	return n, err
}

// ReadMsg reads one length-prefixed message. A length over MaxMessage is
// refused before anything is buffered, so an endless or oversized stream
// costs at most MaxMessage bytes of memory. It returns the bytes consumed.
func ReadMsg(r io.Reader) (*Msg, int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return nil, 4, fmt.Errorf("%w: length prefix %d", ErrTooLarge, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, 4, err
	}
	m, err := Decode(b)
	return m, 4 + int(n), err
}
