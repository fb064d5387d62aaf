package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/transport"
)

// Stream kinds: the first byte the opener writes on every stream of a sync
// connection, so sync rounds, blob transfers and later kinds share one
// authenticated connection.
const (
	// StreamSync carries one reconciliation round.
	StreamSync byte = 1
)

// StreamHandler serves an accepted stream of a kind registered in
// Options.Streams; it owns the stream (and closes it).
type StreamHandler func(ctx context.Context, l *Link, s net.Conn)

// maxAnswering bounds the rounds a peer may have this side answer at once
// on one connection (a peer runs one at a time; the second covers a round
// that began while the previous one was closing). Streams past it are
// closed at once.
const maxAnswering = 2

// Link is one authenticated, multiplexed connection to a peer, kept open
// for as many reconciliation rounds as either side starts: a live node
// runs a round whenever its store changes (Kick) and answers the peer's.
type Link struct {
	st        Store
	opt       Options
	initiator bool
	peer      key.ID
	conn      *meter
	mux       *transport.Session
	kick      chan struct{}
	answering atomic.Int32

	mu     stdsync.Mutex
	total  Stats // over every round, both directions
	rounds int
	last   time.Time
	closed bool
}

func peerOf(l *Link) key.ID {
	if l == nil {
		return key.ID{}
	}
	return l.peer
}

func bytesIn(l *Link) int64 {
	if l == nil {
		return 0
	}
	return l.conn.in.Load()
}

func bytesOut(l *Link) int64 {
	if l == nil {
		return 0
	}
	return l.conn.out.Load()
}

// Connect runs the channel handshake over conn (initiator: the side that
// dialled) and starts yamux on it. The handshake is dropped when it makes
// no progress for opt.Timeout. On error conn is closed; the Link returned
// with the error (possibly nil) tells the proven peer, if any.
func Connect(ctx context.Context, conn transport.Conn, initiator bool, st Store, opt Options) (*Link, error) {
	if err := opt.defaults(); err != nil {
		conn.Close()
		return nil, err
	}
	m := &meter{Conn: conn}
	hs := newSession(st, opt, initiator, m)
	// (Not a cancelled context: the channel closes conn when its context
	// ends, so the connection must outlive a context of the handshake's.)
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		t := time.NewTicker(opt.Timeout / 8)
		defer t.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-t.C:
				if time.Since(time.Unix(0, hs.progress.Load())) > opt.Timeout {
					m.Close()
					return
				}
			}
		}
	}()
	cfg := channel.Config{Secret: opt.Secret, Rand: opt.Rand, Accept: opt.Accept}
	hsConn := &touchConn{Conn: m, s: hs}
	var ch *channel.Conn
	var err error
	if initiator {
		ch, err = channel.Client(ctx, hsConn, cfg)
	} else {
		ch, err = channel.Server(ctx, hsConn, cfg)
	}
	l := &Link{st: st, opt: opt, initiator: initiator, conn: m, kick: make(chan struct{}, 1), last: time.Now()}
	if err != nil {
		m.Close()
		if ctx.Err() == nil && time.Since(time.Unix(0, hs.progress.Load())) > opt.Timeout {
			err = fmt.Errorf("%w after %v: %v", ErrStalled, opt.Timeout, err)
		}
		return l, err
	}
	hs.shook.Store(true)
	l.peer = ch.Peer()
	l.total.Peer = l.peer
	mux, err := transport.Mux(ch, initiator)
	if err != nil {
		m.Close()
		return l, err
	}
	l.mux = mux
	return l, nil
}

// Peer is the peer's proven identity.
func (l *Link) Peer() key.ID { return l.peer }

// Initiator tells whether this side dialled.
func (l *Link) Initiator() bool { return l.initiator }

// Close ends the connection.
func (l *Link) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if l.mux != nil {
		l.mux.Close()
	}
	return l.conn.Close()
}

// Closed is closed when the connection ends.
func (l *Link) Closed() <-chan struct{} { return l.mux.CloseChan() }

// Totals are the link's counts over every round so far.
func (l *Link) Totals() (Stats, int, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.total
	s.BytesIn, s.BytesOut = l.conn.in.Load(), l.conn.out.Load()
	return s, l.rounds, l.last
}

func (l *Link) add(s Stats) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total.Received += s.Received
	l.total.Sent += s.Sent
	l.total.Rejected += s.Rejected
	l.total.Forks += s.Forks
	l.total.Logs += s.Logs
	l.rounds++
	l.last = time.Now()
}

// OpenStream opens a stream of the given kind to the peer.
func (l *Link) OpenStream(kind byte) (net.Conn, error) {
	s, err := l.mux.OpenStream()
	if err != nil {
		return nil, err
	}
	if _, err := s.Write([]byte{kind}); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Round runs one reconciliation round as its initiator on a new stream.
func (l *Link) Round(ctx context.Context) (Stats, error) {
	st, err := l.OpenStream(StreamSync)
	if err != nil {
		return Stats{Peer: l.peer}, fmt.Errorf("sync: opening stream: %w", err)
	}
	defer st.Close()
	s := newSession(l.st, l.opt, true, l.conn)
	s.peer = l.peer
	stats, err := s.run(ctx, st)
	l.add(stats)
	return stats, err
}

// answer runs one round the peer started, on stream.
func (l *Link) answer(ctx context.Context, stream net.Conn) (Stats, error) {
	defer stream.Close()
	s := newSession(l.st, l.opt, false, l.conn)
	s.peer = l.peer
	stats, err := s.run(ctx, stream)
	l.add(stats)
	return stats, err
}

// accept takes the next stream and reads its kind.
func (l *Link) accept(ctx context.Context) (net.Conn, byte, error) {
	s, err := l.mux.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, 0, err
	}
	s.SetReadDeadline(time.Now().Add(l.opt.Timeout))
	var k [1]byte
	if _, err := io.ReadFull(s, k[:]); err != nil {
		s.Close()
		return nil, 0, nil // a stream that says nothing is dropped, not the link
	}
	s.SetReadDeadline(time.Time{})
	return s, k[0], nil
}

// answerOne serves streams until one sync round is answered (the
// responder of a one-shot session).
func (l *Link) answerOne(ctx context.Context) (Stats, error) {
	for {
		s, kind, err := l.accept(ctx)
		if err != nil {
			return Stats{Peer: l.peer, BytesIn: l.conn.in.Load(), BytesOut: l.conn.out.Load()}, fmt.Errorf("sync: opening stream: %w", err)
		}
		if s == nil {
			continue
		}
		if kind == StreamSync {
			return l.answer(ctx, s)
		}
		l.dispatch(ctx, s, kind)
	}
}

func (l *Link) dispatch(ctx context.Context, s net.Conn, kind byte) {
	h := l.opt.Streams[kind]
	if h == nil {
		s.Close()
		return
	}
	go h(ctx, l, s)
}

// Serve answers the peer's streams (rounds and registered kinds) until the
// connection ends or ctx is done; done, when set, is told how each answered
// round went.
func (l *Link) Serve(ctx context.Context, done func(Stats, error)) error {
	var wg stdsync.WaitGroup
	defer wg.Wait()
	for {
		s, kind, err := l.accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || l.mux.IsClosed() {
				return nil
			}
			return err
		}
		if s == nil {
			continue
		}
		if kind != StreamSync {
			l.dispatch(ctx, s, kind)
			continue
		}
		if l.answering.Add(1) > maxAnswering {
			l.answering.Add(-1)
			s.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer l.answering.Add(-1)
			stats, err := l.answer(ctx, s)
			if done != nil {
				done(stats, err)
			}
		}()
	}
}

// Kick asks Live for a round (coalesced: kicks while a round runs make one
// more round after it).
func (l *Link) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Live keeps the link: it answers the peer's rounds and runs a round of its
// own at once and after every Kick, until the connection ends, a round
// fails (the link is closed then), or ctx is done. round, when set, is told
// how each round went, initiated or answered.
func (l *Link) Live(ctx context.Context, round func(s Stats, initiated bool, err error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serr := make(chan error, 1)
	go func() {
		serr <- l.Serve(ctx, func(s Stats, err error) {
			if round != nil {
				round(s, false, err)
			}
		})
		cancel()
	}()
	l.Kick()
	var err error
	for err == nil {
		select {
		case <-ctx.Done():
		case <-l.mux.CloseChan():
		case <-l.kick:
			var s Stats
			s, err = l.Round(ctx)
			if round != nil {
				round(s, true, err)
			}
			continue
		}
		break
	}
	l.Close()
	cancel()
	if e := <-serr; err == nil {
		err = e
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Dial connects to addr over t and runs a session as the initiator.
func Dial(ctx context.Context, t transport.Transport, addr string, st Store, opt Options) (Stats, error) {
	c, err := t.Dial(ctx, addr)
	if err != nil {
		return Stats{}, err
	}
	return Run(ctx, c, true, st, opt)
}

// Serve accepts connections on l and answers every round each peer starts
// on its connection, until ctx ends. done, when set, is told how each
// answered round went (and of a connection that failed before any round).
func Serve(ctx context.Context, ln transport.Listener, st Store, opt Options, done func(Stats, error)) error {
	if err := opt.defaults(); err != nil {
		return err
	}
	var wg stdsync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Connect(ctx, c, false, st, opt)
			if err != nil {
				if done != nil {
					done(Stats{Peer: peerOf(l), BytesIn: bytesIn(l), BytesOut: bytesOut(l)}, err)
				}
				return
			}
			defer l.Close()
			if err := l.Serve(ctx, done); err != nil && done != nil {
				done(Stats{Peer: l.peer}, err)
			}
		}()
	}
}
