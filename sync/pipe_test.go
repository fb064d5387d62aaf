package sync

import (
	"io"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
)

// sshConn is one end of `sync --command "ssh HOST sublog sync --stdio"` as
// each side sees it. The responder's Close ends nothing: ssh keeps the
// channel open until the remote process exits, and a read of stdin
// blocked in the kernel stays blocked until the other end closes. The
// initiator's Close closes its output (the remote's stdin).
type sshConn struct {
	r       io.Reader
	w       io.Writer
	closeFn func()
}

func (c *sshConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *sshConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *sshConn) Close() error {
	if c.closeFn != nil {
		c.closeFn()
	}
	return nil
}

// A session over pipes ends as soon as both sides are done, with nothing to
// send and with cards to send: neither side waits for the other to close
// first. Before the fix the initiator waited for the responder to close
// the connection, which over ssh happens only when the responder's process
// ends, which waited for the initiator: they were stuck until a timeout.
// The idle timeout is set far beyond the test's deadline, so only a
// session that ends by itself passes.
func TestPipeSessionEndsWhenBothAreDone(t *testing.T) {
	for _, n := range []int{0, 300} {
		a := node{st: newStore(), sk: secret(t, "pipe-a")}
		b := node{st: newStore(), sk: secret(t, "pipe-b")}
		a.pol = NewLists([]key.ID{a.sk.ID(), b.sk.ID()}, nil, nil)
		b.pol = NewLists([]key.ID{a.sk.ID(), b.sk.ID()}, nil, nil)
		appendN(t, a.st, a.sk, n)
		ra, wa := io.Pipe() // initiator -> responder (the remote's stdin)
		rb, wb := io.Pipe() // responder -> initiator (the remote's stdout)
		var mu stdsync.Mutex
		var events []string
		note := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
		var once stdsync.Once
		ci := &sshConn{r: rb, w: wa, closeFn: func() { once.Do(func() { note("initiator closed") }); wa.Close(); rb.Close() }}
		cr := &sshConn{r: ra, w: wb}
		oa, ob := opts(a, 1), opts(b, 2)
		oa.Timeout, ob.Timeout = 10*time.Minute, 10*time.Minute
		done := make(chan result, 1)
		go func() {
			st, err := Run(t.Context(), cr, false, b.st, ob)
			note("responder returned")
			wb.Close() // the remote process exits: ssh closes its stdout
			done <- result{st, err}
		}()
		var stuck atomic.Bool
		deadline := time.AfterFunc(60*time.Second, func() {
			stuck.Store(true)
			wa.CloseWithError(io.ErrClosedPipe)
			wb.CloseWithError(io.ErrClosedPipe)
		})
		si, erri := Run(t.Context(), ci, true, a.st, oa)
		rr := <-done
		deadline.Stop()
		if stuck.Load() {
			t.Fatalf("%d cards: the session did not end by itself; the test cut the pipes (events %v)", n, events)
		}
		if erri != nil || rr.err != nil {
			t.Fatalf("%d cards: initiator %v, responder %v (events %v)", n, erri, rr.err, events)
		}
		if si.Sent != n || rr.st.Received != n {
			t.Fatalf("%d cards: sent %d, received %d", n, si.Sent, rr.st.Received)
		}
		mustHeadsEqual(t, a.st, b.st)
		mu.Lock()
		if len(events) != 2 || events[0] != "initiator closed" {
			t.Fatalf("%d cards: %v, want the initiator to close first", n, events)
		}
		mu.Unlock()
	}
}
