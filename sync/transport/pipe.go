package transport

import (
	"context"
	"fmt"
	"io"
	stdsync "sync"
)

// PipeBuffer is how many bytes one direction of a Pipe holds before Write
// blocks: memory stays bounded whatever the other side does.
const PipeBuffer = 256 << 10

// Pipe returns the two ends of an in-memory connection with buffered,
// bounded directions. Closing either end ends both.
func Pipe() (Conn, Conn) {
	ab, ba := newHalf(), newHalf()
	return &pipeEnd{r: ba, w: ab}, &pipeEnd{r: ab, w: ba}
}

type half struct {
	mu     stdsync.Mutex
	cond   *stdsync.Cond
	buf    []byte
	closed bool
}

func newHalf() *half { h := &half{}; h.cond = stdsync.NewCond(&h.mu); return h }

func (h *half) write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for !h.closed && len(h.buf) >= PipeBuffer {
			h.cond.Wait()
		}
		if h.closed {
			return n, io.ErrClosedPipe
		}
		k := min(len(p), PipeBuffer-len(h.buf))
		h.buf = append(h.buf, p[:k]...)
		p, n = p[k:], n+k
		h.cond.Broadcast()
	}
	return n, nil
}

func (h *half) read(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.buf) == 0 && !h.closed {
		h.cond.Wait()
	}
	if len(h.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, h.buf)
	h.buf = h.buf[n:]
	if len(h.buf) == 0 {
		h.buf = nil
	}
	h.cond.Broadcast()
	return n, nil
}

func (h *half) close() {
	h.mu.Lock()
	h.closed = true
	h.cond.Broadcast()
	h.mu.Unlock()
}

type pipeEnd struct{ r, w *half }

func (p *pipeEnd) Read(b []byte) (int, error)  { return p.r.read(b) }
func (p *pipeEnd) Write(b []byte) (int, error) { return p.w.write(b) }
func (p *pipeEnd) Close() error                { p.r.close(); p.w.close(); return nil }

// Mem is an in-memory Transport for tests: Listen registers a name, Dial
// connects to it with a Pipe.
type Mem struct {
	mu        stdsync.Mutex
	listeners map[string]*memListener
}

// NewMem makes an empty in-memory network.
func NewMem() *Mem { return &Mem{listeners: map[string]*memListener{}} }

// Listen registers addr.
func (m *Mem) Listen(addr string) (Listener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.listeners[addr]; ok {
		return nil, fmt.Errorf("transport: %q already listening", addr)
	}
	l := &memListener{m: m, addr: addr, ch: make(chan Conn), done: make(chan struct{})}
	m.listeners[addr] = l
	return l, nil
}

// Dial connects to a registered addr.
func (m *Mem) Dial(ctx context.Context, addr string) (Conn, error) {
	m.mu.Lock()
	l := m.listeners[addr]
	m.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("transport: nothing listens on %q", addr)
	}
	a, b := Pipe()
	select {
	case l.ch <- b:
		return a, nil
	case <-l.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type memListener struct {
	m    *Mem
	addr string
	ch   chan Conn
	done chan struct{}
	once stdsync.Once
}

func (l *memListener) Addr() string { return l.addr }

func (l *memListener) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		delete(l.m.listeners, l.addr)
		l.m.mu.Unlock()
	})
	return nil
}
