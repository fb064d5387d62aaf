package sync

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/transport"
)

// TestLinkBoundsSideStreams: a live link (accepted by ServeLinks) serves at
// most maxSideStreams side streams at once; the ones over it are closed at
// once, and a stream opened after one ended is served again.
func TestLinkBoundsSideStreams(t *testing.T) {
	a, b := secret(t, "a"), secret(t, "b")
	sb := newStore()
	mem := transport.NewMem()
	ln, err := mem.Listen("b")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var entered, running, most atomic.Int32
	release := make(chan struct{})
	handler := func(ctx context.Context, peer key.ID, s io.ReadWriteCloser) {
		defer s.Close()
		entered.Add(1)
		if n := running.Add(1); n > most.Load() {
			most.Store(n)
		}
		defer running.Add(-1)
		s.Write([]byte{1}) // "served"
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	polB := NewLists([]key.ID{b.ID()}, []key.ID{a.ID()}, nil)
	// (The link's own round to the client, which never answers it, is
	// dropped after the timeout; the test is done long before.)
	opt := Options{Secret: b, Rand: newRand(1), Policy: polB, Timeout: 25 * time.Second,
		Handlers: map[byte]PeerStream{StreamBlob: handler}}
	go ServeLinks(ctx, ln, sb, opt, func(l *Link, err error) {
		if err == nil {
			l.Live(ctx, nil)
		}
	}, ServeEvents{})
	c, err := DialStreams(ctx, mem, "b", Options{Secret: a, Rand: newRand(2), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const opened = 2 * maxSideStreams
	served, closed := 0, 0
	for range opened {
		s, err := c.Open(StreamBlob)
		if err != nil {
			t.Fatal(err)
		}
		var one [1]byte
		if n, _ := io.ReadFull(s, one[:]); n == 1 {
			served++
		} else {
			closed++
		}
	}
	if served != maxSideStreams || closed != opened-maxSideStreams || most.Load() != maxSideStreams {
		t.Fatalf("served %d, closed %d, at most %d at once (want %d served at most)", served, closed, most.Load(), maxSideStreams)
	}
	close(release)
	for running.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
	s, err := c.Open(StreamBlob)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	if _, err := io.ReadFull(s, one[:]); err != nil || entered.Load() != maxSideStreams+1 {
		t.Fatalf("after the others ended: %v, %d entered", err, entered.Load())
	}
}

// TestLinkLifetime: a live link ends at Limits.MaxLifetime with
// ErrLinkLifetime, however idle or busy it is.
func TestLinkLifetime(t *testing.T) {
	a, b := secret(t, "a"), secret(t, "b")
	sa, sb := newStore(), newStore()
	appendN(t, sa, a, 3)
	mem := transport.NewMem()
	ln, err := mem.Listen("b")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ended := make(chan error, 1)
	polB := NewLists([]key.ID{b.ID()}, []key.ID{a.ID()}, nil)
	opt := Options{Secret: b, Rand: newRand(1), Policy: polB, Timeout: 5 * time.Second, Limits: Limits{MaxLifetime: time.Second}}
	go ServeLinks(ctx, ln, sb, opt, func(l *Link, err error) {
		if err != nil {
			ended <- err
			return
		}
		ended <- l.Live(ctx, nil)
	}, ServeEvents{})
	conn, err := mem.Dial(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	polA := NewLists([]key.ID{a.ID()}, []key.ID{b.ID()}, nil)
	l, err := Connect(ctx, conn, true, sa, Options{Secret: a, Rand: newRand(2), Policy: polA, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cerr := make(chan error, 1)
	go func() { cerr <- l.Live(ctx, nil) }()
	if err := <-ended; !errors.Is(err, ErrLinkLifetime) {
		t.Fatalf("the accepted link ended with %v, want ErrLinkLifetime", err)
	}
	<-cerr // the dialling side sees the link end too
}
