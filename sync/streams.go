package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/transport"
)

// Stream kinds. One authenticated connection carries many yamux streams;
// the opener of a stream writes its kind as the stream's first byte, and
// the acceptor hands the stream to that kind's handler. A kind names a
// protocol and its version (a new version of a protocol is a new kind), so
// an old node closes a stream of a kind it does not know and the opener
// sees the stream end before any answer. Kinds 0 and 128..255 are never
// assigned (0 is the first byte of an unkinded sync stream of earlier
// builds, which started straight with a 4-byte message length).
const (
	StreamSync  byte = 1 // one log-diff reconciliation (sync/proto messages)
	StreamBlob  byte = 2 // one blob transfer (blob/1)
	StreamRelay byte = 3 // reserved: relayed channel traffic
	StreamProxy byte = 4 // reserved: a proxied byte stream to a local service
)

// kindTimeout bounds how long an accepted stream may take to say its kind.
const kindTimeout = 10 * time.Second

// maxSideStreams bounds the streams of other kinds than sync that one
// connection serves at once; more are closed at once.
const maxSideStreams = 4

// PeerStream serves an accepted stream of a kind registered in
// Options.Handlers, from the proven peer; it owns the stream and closes it.
type PeerStream func(ctx context.Context, peer key.ID, s io.ReadWriteCloser)

// openKind opens a stream of kind on mux.
func openKind(mux *transport.Session, kind byte) (io.ReadWriteCloser, error) {
	s, err := mux.OpenStream()
	if err != nil {
		return nil, err
	}
	if _, err := s.Write([]byte{kind}); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// acceptSync accepts streams until a sync stream arrives; streams of other
// kinds go to their handlers (at most maxSideStreams at once), unknown
// kinds are closed. done ends when every handler started here returned.
func (s *session) acceptSync(ctx context.Context, mux *transport.Session) (io.ReadWriteCloser, func(), error) {
	side := make(chan struct{}, maxSideStreams)
	wait := func() {
		for range maxSideStreams {
			side <- struct{}{}
		}
	}
	for {
		st, err := mux.AcceptStreamWithContext(ctx)
		if err != nil {
			return nil, wait, err
		}
		st.SetReadDeadline(time.Now().Add(kindTimeout))
		var k [1]byte
		if _, err := io.ReadFull(st, k[:]); err != nil {
			st.Close()
			continue
		}
		st.SetReadDeadline(time.Time{})
		s.touch()
		if k[0] == StreamSync {
			return st, wait, nil
		}
		h := s.opt.Handlers[k[0]]
		if h == nil {
			st.Close()
			continue
		}
		if _, off := s.guard.BackedOff(s.peer); off {
			st.Close() // a peer backed off for a forged card is served nothing
			continue
		}
		select {
		case side <- struct{}{}:
		default:
			st.Close() // too many at once
			continue
		}
		go func() {
			defer func() { <-side }()
			h(ctx, s.peer, &touchStream{ReadWriteCloser: st, s: s})
		}()
	}
}

// touchStream keeps the session's watchdog fed while a side stream moves
// bytes.
type touchStream struct {
	io.ReadWriteCloser
	s *session
}

func (t *touchStream) Read(p []byte) (int, error) {
	n, err := t.ReadWriteCloser.Read(p)
	if n > 0 {
		t.s.touch()
	}
	return n, err
}

func (t *touchStream) Write(p []byte) (int, error) {
	n, err := t.ReadWriteCloser.Write(p)
	if n > 0 {
		t.s.touch()
	}
	return n, err
}

func (t *touchStream) SetDeadline(d time.Time) error {
	if dl, ok := t.ReadWriteCloser.(interface{ SetDeadline(time.Time) error }); ok {
		return dl.SetDeadline(d)
	}
	return nil
}

// BlobEntitled is the entitlement rule for blobs: peer may receive blob h
// when st holds a card naming h (blob.Refs) that the policy lets peer see
// (its log is Visible to peer and the card MayLeave to it), written by
// someone other than peer itself (knowing a hash, and writing it in a card
// of one's own, is no right to its bytes).
func BlobEntitled(st Store, pol Policy, peer key.ID) func(blob.Hash) bool {
	return func(h blob.Hash) bool {
		found := false
		for _, head := range st.Heads() {
			if head.Author == peer || !pol.Visible(peer, head.Author) {
				continue
			}
			st.Scan(head.Author, 1, func(c *card.Card) error {
				if !MayLeave(c, &peer, pol) {
					return nil // (as in sync, it goes as a stub: the later cards go on)
				}
				for _, r := range blob.Refs(c) {
					if r == h {
						found = true
						return io.EOF
					}
				}
				return nil
			})
			if found {
				return true
			}
		}
		return false
	}
}

// ReferencedBlobs is every blob a card in st names (blob.Refs): what GC
// keeps (blob.Store.GC with this set, from `sublog blob gc` or a running
// instance).
func ReferencedBlobs(st Store) (map[blob.Hash]bool, error) {
	refs := map[blob.Hash]bool{}
	for _, head := range st.Heads() {
		err := st.Scan(head.Author, 1, func(c *card.Card) error {
			for _, h := range blob.Refs(c) {
				refs[h] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return refs, nil
}

// BlobHandler serves blob/1 streams from blobs to peers BlobEntitled allows.
// served, when set, is told about each stream.
func BlobHandler(st Store, pol Policy, blobs *blob.Store, served func(key.ID, blob.ServeStats, error)) PeerStream {
	return func(ctx context.Context, peer key.ID, s io.ReadWriteCloser) {
		defer s.Close()
		ss, err := blob.Serve(ctx, s, blobs, BlobEntitled(st, pol, peer))
		if served != nil {
			served(peer, ss, err)
		}
	}
}

// Conn is one authenticated, multiplexed connection made for side streams
// only (no sync round): a blob fetch from a peer, for example.
type Conn struct {
	peer key.ID
	mux  *transport.Session
	raw  transport.Conn
}

// DialStreams connects to addr over t, proves identities and starts yamux,
// for opening streams of other kinds than sync.
func DialStreams(ctx context.Context, t transport.Transport, addr string, opt Options) (*Conn, error) {
	if opt.Secret == nil || opt.Rand == nil {
		return nil, errors.New("sync: Options need Secret and Rand")
	}
	c, err := t.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(hctx, func() {
		if hctx.Err() == context.DeadlineExceeded {
			c.Close()
		}
	})
	ch, err := channel.Client(ctx, c, channel.Config{Secret: opt.Secret, Rand: opt.Rand, Accept: opt.Accept})
	stop()
	if err != nil {
		c.Close()
		return nil, err
	}
	mux, err := transport.Mux(ch, true)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &Conn{peer: ch.Peer(), mux: mux, raw: c}, nil
}

// Peer is the proven identity at the other end.
func (c *Conn) Peer() key.ID { return c.peer }

// Open opens a stream of kind.
func (c *Conn) Open(kind byte) (io.ReadWriteCloser, error) { return openKind(c.mux, kind) }

// Close ends the connection.
func (c *Conn) Close() error {
	c.mux.Close()
	return c.raw.Close()
}

// BlobSource is a blob.Opener over a connection made by DialStreams.
type BlobSource struct {
	C    *Conn
	Addr string
}

// OpenBlobStream opens a blob/1 stream.
func (b BlobSource) OpenBlobStream(context.Context) (io.ReadWriteCloser, error) {
	return b.C.Open(StreamBlob)
}

func (b BlobSource) String() string { return fmt.Sprintf("%s at %s", b.C.peer.Short(), b.Addr) }
