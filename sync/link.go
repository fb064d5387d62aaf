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

	"golang.org/x/sync/semaphore"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/transport"
)

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
	lim       Limits
	initiator bool
	peer      key.ID
	conn      *meter
	mux       *transport.Session
	kick      chan struct{}
	answering atomic.Int32
	side      chan struct{} // side streams being served (at most maxSideStreams)

	mu       stdsync.Mutex
	total    Stats // over every round, both directions
	rounds   int
	last     time.Time
	closed   bool
	inFlight map[*session]bool // the rounds running now
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
	if opt.Secret == nil || opt.Rand == nil {
		conn.Close()
		return nil, errors.New("sync: Options need Secret and Rand")
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Policy == nil {
		opt.Policy = NewLists([]key.ID{opt.Secret.ID()}, nil, nil)
	}
	lim := opt.Limits.withDefaults()
	opt.Guard = guardFor(opt, lim)
	m := &meter{Conn: conn}
	l := &Link{st: st, opt: opt, lim: lim, initiator: initiator, conn: m, kick: make(chan struct{}, 1),
		side: make(chan struct{}, maxSideStreams), last: time.Now()}
	hs := l.newSession(initiator)
	// The handshake is dropped when it makes no progress for the timeout.
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
	mux, err := hs.connect(ctx)
	if err != nil {
		m.Close()
		l.peer = hs.peer
		return l, err
	}
	l.peer = hs.peer
	l.total.Peer = l.peer
	l.mux = mux
	return l, nil
}

// newSession is the state of one round on this link.
func (l *Link) newSession(initiator bool) *session {
	counter := &checkCounter{Store: l.st}
	s := &session{st: counter, opt: l.opt, initiator: initiator, conn: l.conn, logs: map[key.ID]bool{},
		lim: l.lim, guard: l.opt.Guard, buf: semaphore.NewWeighted(l.lim.SessionBuffer), peer: l.peer}
	s.quota.g = l.opt.Guard
	s.quota.peer = l.peer
	s.stats.Peer = l.peer
	s.cond = stdsync.NewCond(&s.mu)
	s.touch()
	return s
}

// runRound runs one round on stream: a stalled round (no progress for the
// timeout) or a cancelled ctx drops the whole connection (a stream cannot
// be closed cleanly over a connection the peer stopped reading).
func (l *Link) runRound(ctx context.Context, s *session, stream net.Conn) (Stats, error) {
	l.mu.Lock()
	if l.inFlight == nil {
		l.inFlight = map[*session]bool{}
	}
	l.inFlight[s] = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.inFlight, s)
		l.mu.Unlock()
	}()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	finished := make(chan struct{})
	wdone := make(chan struct{})
	stalled := false
	go func() {
		defer close(wdone)
		t := time.NewTicker(s.opt.Timeout / 8)
		defer t.Stop()
		for {
			select {
			case <-finished:
				return
			case <-ctx.Done():
				s.fail(ctx.Err())
			case <-t.C:
				if time.Since(time.Unix(0, s.progress.Load())) <= s.opt.Timeout {
					continue
				}
				stalled = true
				s.fail(ErrStalled)
			}
			cancel()
			l.conn.Close()
			stream.SetDeadline(time.Unix(1, 0))
			stream.Close()
			return
		}
	}()
	err := s.round(rctx, stream)
	if err == nil && s.initiator {
		// The responder closes the stream once it has our Done.
		stream.SetReadDeadline(time.Now().Add(s.opt.Timeout))
		io.Copy(io.Discard, stream)
	}
	close(finished)
	<-wdone
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	st.Peer = l.peer
	st.BytesIn, st.BytesOut = l.conn.in.Load(), l.conn.out.Load()
	if c, ok := s.st.(*checkCounter); ok {
		st.Checked = int(c.n.Load())
	}
	if stalled && err != nil {
		err = fmt.Errorf("%w after %v: %v", ErrStalled, s.opt.Timeout, err)
	}
	return st, err
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

// Totals are the link's counts over every round so far, with the cards
// the rounds in flight still expect to receive and to send (ToReceive,
// ToSend).
func (l *Link) Totals() (Stats, int, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.total
	s.BytesIn, s.BytesOut = l.conn.in.Load(), l.conn.out.Load()
	for r := range l.inFlight {
		in, out := r.toGo()
		s.ToReceive += in
		s.ToSend += out
	}
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

// OpenStream opens a stream of the given kind to the peer (see streams.go).
func (l *Link) OpenStream(kind byte) (net.Conn, error) {
	s, err := openKind(l.mux, kind)
	if err != nil {
		return nil, err
	}
	return s.(net.Conn), nil
}

// Round runs one reconciliation round as its initiator on a new stream.
func (l *Link) Round(ctx context.Context) (Stats, error) {
	st, err := l.OpenStream(StreamSync)
	if err != nil {
		return Stats{Peer: l.peer}, fmt.Errorf("sync: opening stream: %w", err)
	}
	defer st.Close()
	stats, err := l.runRound(ctx, l.newSession(true), st)
	l.add(stats)
	return stats, err
}

// answer runs one round the peer started, on stream.
func (l *Link) answer(ctx context.Context, stream net.Conn) (Stats, error) {
	defer stream.Close()
	stats, err := l.runRound(ctx, l.newSession(false), stream)
	l.add(stats)
	return stats, err
}

// accept takes the next stream and reads its kind.
func (l *Link) accept(ctx context.Context) (net.Conn, byte, error) {
	s, err := l.mux.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, 0, err
	}
	s.SetReadDeadline(time.Now().Add(kindTimeout))
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

// dispatch hands a stream of another kind to its handler (Options.Handlers),
// at most maxSideStreams at once per link (more are closed at once, as on a
// one-shot session); a backed-off peer is served none.
func (l *Link) dispatch(ctx context.Context, s net.Conn, kind byte) {
	h := l.opt.Handlers[kind]
	if _, off := l.opt.Guard.BackedOff(l.peer); h == nil || off {
		s.Close()
		return
	}
	select {
	case l.side <- struct{}{}:
	default:
		s.Close()
		return
	}
	go func() {
		defer func() { <-l.side }()
		h(ctx, l.peer, s)
	}()
}

// SideStreams is how many side streams the link serves now.
func (l *Link) SideStreams() int { return len(l.side) }

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
// fails (the link is closed then), the link reaches Limits.MaxLifetime
// (ErrLinkLifetime; the dialling side reconnects), or ctx is done. round,
// when set, is told how each round went, initiated or answered.
func (l *Link) Live(ctx context.Context, round func(s Stats, initiated bool, err error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	life := time.NewTimer(l.lim.MaxLifetime)
	defer life.Stop()
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
		case <-life.C:
			err = fmt.Errorf("%w (%v)", ErrLinkLifetime, l.lim.MaxLifetime)
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
