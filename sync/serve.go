package sync

import (
	"context"
	"fmt"
	stdsync "sync"
	"time"

	"github.com/sublog/sublog/sync/transport"
)

// Accept backoff: after a temporary accept error (out of descriptors, an
// aborted connection) Serve waits acceptBackoffMin, doubling up to
// acceptBackoffMax, and goes on accepting.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// ServeEvents, when passed to Serve, hears about what happens outside any
// session. Each field may be nil.
type ServeEvents struct {
	// AcceptError: a temporary accept error, and how long Serve waits before
	// accepting again (called once per streak of errors, not per error).
	AcceptError func(err error, wait time.Duration)
	// Turned: a connection was closed before its handshake (over a cap,
	// its source backed off, or evicted for a newer half-open one).
	Turned func(source, why string)
}

// Serve accepts connections on l and runs a responder session for each, one
// at a time per connection in its own goroutine, until ctx ends. done, when
// set, is told how each session went. Connections are admitted within
// opt.Limits (in all, per source, half-open), a temporary accept error
// (such as running out of file descriptors) is waited out, and all sessions
// share one Guard (opt.Guard, or one made with opt.Quota or DefaultQuota).
func Serve(ctx context.Context, l transport.Listener, st Store, opt Options, done func(Stats, error)) error {
	return ServeWith(ctx, l, st, opt, done, ServeEvents{})
}

// ServeWith is Serve with events.
func ServeWith(ctx context.Context, l transport.Listener, st Store, opt Options, done func(Stats, error), ev ServeEvents) error {
	return accept(ctx, l, opt, ev, func(c transport.Conn, o Options) {
		stats, err := Run(ctx, c, false, st, o)
		if done != nil {
			done(stats, err)
		}
	})
}

// ServeLinks accepts connections on l exactly as ServeWith does (the same
// admission in all, per source and half-open, the same source backoff
// before the handshake, the same accept backoff and handshake deadline,
// one Guard for every connection) and hands each authenticated connection
// to link as a Link, for a live node to keep; the connection's slot is held
// until link returns. A connection whose handshake failed is given to link
// with the error (the Link, possibly nil, names the peer if it was proven).
// A node that also dials out passes the same opt.Guard to its dialled links.
func ServeLinks(ctx context.Context, l transport.Listener, st Store, opt Options, link func(*Link, error), ev ServeEvents) error {
	return accept(ctx, l, opt, ev, func(c transport.Conn, o Options) {
		lk, err := Connect(ctx, c, false, st, o)
		link(lk, err)
	})
}

// accept is the accept loop of ServeWith and ServeLinks: it admits each
// connection (or turns it away) and runs handle in its own goroutine with
// the options of that connection, releasing its slot when handle returns.
func accept(ctx context.Context, l transport.Listener, opt Options, ev ServeEvents, handle func(transport.Conn, Options)) error {
	lim := opt.Limits.withDefaults()
	opt.Limits = lim
	opt.Guard = guardFor(opt, lim)
	adm := newAdmission(lim)
	var wg stdsync.WaitGroup
	defer wg.Wait()
	var wait time.Duration
	for {
		c, err := l.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !transport.Temporary(err) {
				return err
			}
			if wait == 0 {
				wait = acceptBackoffMin
				if ev.AcceptError != nil {
					ev.AcceptError(err, wait)
				}
			} else {
				wait = min(2*wait, acceptBackoffMax)
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		wait = 0
		src := transport.Source(c)
		if _, ok := opt.Guard.SourceBackedOff(src); ok {
			c.Close()
			if ev.Turned != nil {
				ev.Turned(src, "source backed off")
			}
			continue
		}
		sl, why := adm.admit(c, src)
		if sl == nil {
			c.Close()
			if ev.Turned != nil {
				ev.Turned(src, why)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer adm.release(sl)
			o := opt
			o.source = src
			o.onShook = func() bool { return adm.established(sl) }
			handle(c, o)
		}()
	}
}

// admission counts connections in all, per source and half-open, and makes
// room among half-open ones: a new connection over a half-open cap takes the
// place of the oldest half-open connection of its own source (over the
// per-source cap) or of the source holding the most (over the total), so a
// flood of idle connections cannot keep out a peer that completes its
// handshake at once.
type admission struct {
	lim Limits

	mu    stdsync.Mutex
	total int
	half  int
	srcs  map[string]*srcConns
}

type srcConns struct {
	conns int
	half  []*slot // half-open, oldest first
}

type slot struct {
	src     string
	conn    transport.Conn
	half    bool
	evicted bool
}

func newAdmission(lim Limits) *admission {
	return &admission{lim: lim, srcs: map[string]*srcConns{}}
}

// admit takes a slot for c, or says why not.
func (a *admission) admit(c transport.Conn, src string) (*slot, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sc := a.srcs[src]
	if sc == nil {
		sc = &srcConns{}
		a.srcs[src] = sc
	}
	perSource := src != "" // pipes and stdio have no source to count by
	if perSource && sc.conns >= a.lim.MaxConnsPerSource && !a.evictFrom(sc) {
		a.forget(src, sc)
		return nil, fmt.Sprintf("over %d connections from one source", a.lim.MaxConnsPerSource)
	}
	if a.total >= a.lim.MaxConns && !a.evictFrom(a.busiest()) {
		a.forget(src, sc)
		return nil, fmt.Sprintf("over %d connections", a.lim.MaxConns)
	}
	if perSource && len(sc.half) >= a.lim.MaxHalfOpenPerSource {
		a.evictFrom(sc)
	}
	if a.half >= a.lim.MaxHalfOpen && !a.evictFrom(a.busiest()) {
		a.forget(src, sc)
		return nil, fmt.Sprintf("over %d connections in handshake", a.lim.MaxHalfOpen)
	}
	s := &slot{src: src, conn: c, half: true}
	a.total++
	a.half++
	sc.conns++
	sc.half = append(sc.half, s)
	return s, ""
}

// busiest is the source with the most half-open connections (nil if none).
func (a *admission) busiest() *srcConns {
	var b *srcConns
	for _, sc := range a.srcs {
		if len(sc.half) > 0 && (b == nil || len(sc.half) > len(b.half)) {
			b = sc
		}
	}
	return b
}

// evictFrom closes sc's oldest half-open connection and frees its slot.
func (a *admission) evictFrom(sc *srcConns) bool {
	if sc == nil || len(sc.half) == 0 {
		return false
	}
	s := sc.half[0]
	sc.half = sc.half[1:]
	s.evicted = true
	a.total--
	a.half--
	sc.conns--
	s.conn.Close()
	return true
}

func (a *admission) forget(src string, sc *srcConns) {
	if sc.conns == 0 && len(sc.half) == 0 {
		delete(a.srcs, src)
	}
}

// established moves s out of the half-open set; false if it was evicted.
func (a *admission) established(s *slot) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.evicted {
		return false
	}
	if s.half {
		s.half = false
		a.half--
		sc := a.srcs[s.src]
		for i, x := range sc.half {
			if x == s {
				sc.half = append(sc.half[:i], sc.half[i+1:]...)
				break
			}
		}
	}
	return true
}

// release gives s's slot back when its session ends.
func (a *admission) release(s *slot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.evicted {
		return
	}
	s.evicted = true
	sc := a.srcs[s.src]
	a.total--
	sc.conns--
	if s.half {
		a.half--
		for i, x := range sc.half {
			if x == s {
				sc.half = append(sc.half[:i], sc.half[i+1:]...)
				break
			}
		}
	}
	a.forget(s.src, sc)
}

// counts reports connections in all and half-open (for tests).
func (a *admission) counts() (total, half int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total, a.half
}
