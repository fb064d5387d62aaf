package main

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// chunkSize is the most one read forwards as one chunk (one "segment" of
// the loss model).
const chunkSize = 16 << 10

// Link forwards every TCP connection accepted on a listener to To, through
// the faults in force. Settings change at run time (SetFaults); a cut in
// close mode resets every connection and refuses new ones until healed.
type Link struct {
	To   string // upstream address
	Seed uint64 // connection i's directions draw from Seed+2i and Seed+2i+1
	Dial func(addr string) (net.Conn, error)

	mu     sync.Mutex
	f      Faults
	conns  map[*pair]struct{}
	healed chan struct{} // closed while the link is not cut
	n      uint64

	Accepted, Refused, GaveUp atomic.Int64
	Forwarded                 atomic.Int64 // bytes written out, both directions
	Held                      atomic.Int64 // chunks a blackhole cut has held (counted once each)
}

// NewLink is a link to addr with faults f.
func NewLink(to string, seed uint64, f Faults) *Link {
	l := &Link{To: to, Seed: seed, f: f, conns: map[*pair]struct{}{}, healed: make(chan struct{})}
	if !f.Cut {
		close(l.healed)
	}
	return l
}

// Faults are the settings in force.
func (l *Link) Faults() Faults {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

// SetFaults puts f in force. Cutting in close mode closes every live
// connection; healing releases what a blackhole held.
func (l *Link) SetFaults(f Faults) {
	l.mu.Lock()
	was := l.f.Cut
	l.f = f
	var drop []*pair
	switch {
	case f.Cut && !was:
		l.healed = make(chan struct{})
	case !f.Cut && was:
		close(l.healed)
	}
	if f.Cut && f.CutMode == "close" {
		for p := range l.conns {
			drop = append(drop, p)
		}
	}
	l.mu.Unlock()
	for _, p := range drop {
		p.close()
	}
}

// Live is the number of connections being forwarded.
func (l *Link) Live() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Serve accepts on ln until it is closed.
func (l *Link) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go l.handle(c)
	}
}

func (l *Link) handle(c net.Conn) {
	l.mu.Lock()
	cut := l.f.Cut && l.f.CutMode == "close"
	i := l.n
	l.n++
	l.mu.Unlock()
	if cut {
		l.Refused.Add(1)
		c.Close()
		return
	}
	dial := l.Dial
	if dial == nil {
		dial = func(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, 10*time.Second) }
	}
	u, err := dial(l.To)
	if err != nil {
		l.Refused.Add(1)
		c.Close()
		return
	}
	p := &pair{a: c, b: u, done: make(chan struct{})}
	l.mu.Lock()
	if l.f.Cut && l.f.CutMode == "close" { // cut while dialling
		l.mu.Unlock()
		l.Refused.Add(1)
		p.close()
		return
	}
	l.conns[p] = struct{}{}
	l.mu.Unlock()
	l.Accepted.Add(1)
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pipe(p, c, u, NewPlan(l.Seed+2*i), start) }()
	go func() { defer wg.Done(); l.pipe(p, u, c, NewPlan(l.Seed+2*i+1), start) }()
	wg.Wait()
	p.close()
	l.mu.Lock()
	delete(l.conns, p)
	l.mu.Unlock()
}

type chunk struct {
	b   []byte
	out time.Duration
}

// pipe forwards src to dst, each chunk leaving when its plan says. A
// reader fills a bounded queue (so a stalled direction pushes back on its
// sender, as a full TCP window does); the writer waits out each departure.
func (l *Link) pipe(p *pair, src, dst net.Conn, plan *Plan, start time.Time) {
	q := make(chan chunk, 32)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				out, ok := plan.Next(l.Faults(), time.Since(start), n)
				if !ok {
					l.GaveUp.Add(1)
					p.close()
					return
				}
				select {
				case q <- chunk{buf[:n], out}:
				case <-p.done:
					return
				}
			}
			if err != nil {
				// Half-close: the other side sees EOF once everything queued is out.
				return
			}
		}
	}()
	for c := range q {
		if wait := c.out - time.Since(start); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return
			}
		}
		l.mu.Lock()
		healed := l.healed // a blackhole cut holds the chunk here until healed
		l.mu.Unlock()
		select {
		case <-healed:
		default:
			l.Held.Add(1)
			select {
			case <-healed:
			case <-p.done:
				return
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			p.close()
			return
		}
		l.Forwarded.Add(int64(len(c.b)))
	}
	if tc, ok := dst.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	} else {
		p.close()
	}
}

type pair struct {
	a, b net.Conn
	once sync.Once
	done chan struct{}
}

func (p *pair) close() {
	p.once.Do(func() {
		close(p.done)
		p.a.Close()
		p.b.Close()
	})
}
