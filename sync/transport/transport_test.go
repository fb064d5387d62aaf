package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func roundTrip(t *testing.T, a, b Conn) {
	t.Helper()
	msg := bytes.Repeat([]byte("sublog "), 100_000) // bigger than a pipe's buffer
	go func() { a.Write(msg) }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("round trip: %v", err)
	}
}

func TestPipeIsBoundedAndClosesBothWays(t *testing.T) {
	a, b := Pipe()
	roundTrip(t, a, b)
	roundTrip(t, b, a)
	// A writer that nobody reads from blocks at PipeBuffer bytes.
	wrote := make(chan int, 1)
	go func() {
		n, _ := a.Write(make([]byte, 2*PipeBuffer))
		wrote <- n
	}()
	select {
	case n := <-wrote:
		t.Fatalf("write of 2x the buffer returned (%d) with no reader", n)
	case <-time.After(50 * time.Millisecond):
	}
	// Closing ends the blocked write; buffered bytes can still be read,
	// then EOF.
	b.Close()
	if n := <-wrote; n != PipeBuffer {
		t.Fatalf("blocked write wrote %d", n)
	}
	buf, err := io.ReadAll(b)
	if err != nil || len(buf) != PipeBuffer {
		t.Fatalf("after close: %d bytes, %v", len(buf), err)
	}
	if _, err := a.Write([]byte{1}); err == nil {
		t.Fatal("write after close")
	}
}

func TestMemTransport(t *testing.T) {
	m := NewMem()
	l, err := m.Listen("node-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Listen("node-a"); err == nil {
		t.Fatal("listened twice on one address")
	}
	ctx := context.Background()
	acc := make(chan Conn, 1)
	go func() { c, _ := l.Accept(ctx); acc <- c }()
	c, err := m.Dial(ctx, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, <-acc)
	l.Close()
	if _, err := m.Dial(ctx, "node-a"); err == nil {
		t.Fatal("dialled a closed listener")
	}
	if _, err := l.Accept(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("accept after close: %v", err)
	}
}

func TestTCPLoopbackAndAcceptCancel(t *testing.T) {
	l, err := TCP{}.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	acc := make(chan Conn, 1)
	go func() { c, _ := l.Accept(ctx); acc <- c }()
	c, err := TCP{}.Dial(ctx, l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	roundTrip(t, c, s)
	c.Close()
	s.Close()
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := l.Accept(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("accept did not end with its context: %v", err)
	}
}

func TestStdioAndMux(t *testing.T) {
	// Two processes' stdin/stdout, modelled with pipes: a's stdout is b's stdin.
	ar, bw := io.Pipe()
	br, aw := io.Pipe()
	a, b := Stdio(ar, aw), Stdio(br, bw)
	type res struct {
		s   *Session
		err error
	}
	srv := make(chan res, 1)
	go func() { s, err := Mux(b, false); srv <- res{s, err} }()
	cli, err := Mux(a, true)
	if err != nil {
		t.Fatal(err)
	}
	r := <-srv
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer cli.Close()
	defer r.s.Close()
	st, err := cli.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	acc, err := r.s.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, st, acc)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
