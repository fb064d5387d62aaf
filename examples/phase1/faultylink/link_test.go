package main

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

func TestPlanCleanLinkPassesThrough(t *testing.T) {
	p := NewPlan(1)
	f := DefaultFaults()
	for i := 0; i < 100; i++ {
		at := time.Duration(i) * time.Millisecond
		out, ok := p.Next(f, at, 1000)
		if !ok || out != at {
			t.Fatalf("chunk %d: clean link sent it at %v (ok %v), want %v", i, out, ok, at)
		}
	}
	if p.Losses != 0 || p.Resends != 0 {
		t.Fatalf("clean link lost %d chunks", p.Losses)
	}
}

func TestPlanDeterministic(t *testing.T) {
	f := DefaultFaults()
	f.Loss, f.Jitter, f.Delay, f.Rate = 0.3, 20*time.Millisecond, 200*time.Millisecond, 1<<20
	draw := func(seed uint64) []time.Duration {
		p := NewPlan(seed)
		var outs []time.Duration
		for i := 0; i < 1000; i++ {
			out, ok := p.Next(f, time.Duration(i)*time.Millisecond, 1+i%chunkSize)
			if !ok {
				out = -1
			}
			outs = append(outs, out)
		}
		return outs
	}
	a, b, c := draw(7), draw(7), draw(8)
	if !slicesEqual(a, b) {
		t.Fatal("the same seed gave different faults")
	}
	if slicesEqual(a, c) {
		t.Fatal("different seeds gave the same faults")
	}
}

func slicesEqual(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// 30% loss: about 30% of chunks are held at least one RTO, in order, and
// the held ones carry at least RTO extra.
func TestPlanLossIsRetransmissionDelay(t *testing.T) {
	f := DefaultFaults()
	f.Loss, f.MaxRetries = 0.3, 50
	p := NewPlan(42)
	const n = 20000
	var prev time.Duration
	held := 0
	for i := 0; i < n; i++ {
		at := time.Duration(i) * time.Hour // far apart: no chunk waits for another
		out, ok := p.Next(f, at, 100)
		if !ok {
			t.Fatalf("chunk %d: gave up with MaxRetries 50", i)
		}
		if out < prev {
			t.Fatalf("chunk %d leaves at %v, before the previous one (%v): TCP is in order", i, out, prev)
		}
		prev = out
		extra := out - at
		if extra != 0 {
			held++
			// 1, 3, 7, ... RTOs: RTO·(2^k − 1).
			k := extra / f.RTO
			if extra%f.RTO != 0 || (k+1)&k != 0 {
				t.Fatalf("chunk %d held %v, not a sum of doubling RTOs", i, extra)
			}
		}
	}
	if held != p.Losses {
		t.Fatalf("held %d chunks, plan counted %d", held, p.Losses)
	}
	if frac := float64(held) / n; frac < 0.28 || frac > 0.32 {
		t.Fatalf("30%% loss held %.3f of chunks", frac)
	}
	// Resends per chunk follow the geometric law: loss/(1-loss) ≈ 0.43.
	if r := float64(p.Resends) / n; r < 0.40 || r > 0.46 {
		t.Fatalf("resends per chunk %.3f, want about 0.43", r)
	}
}

func TestPlanGivesUpAfterMaxRetries(t *testing.T) {
	f := DefaultFaults()
	f.Loss, f.MaxRetries = 1, 3
	p := NewPlan(1)
	if _, ok := p.Next(f, 0, 10); ok {
		t.Fatal("loss 1 delivered a chunk")
	}
	if p.GaveUpAt != 1 || p.Resends != 3 {
		t.Fatalf("gave up at chunk %d after %d resends, want 1 and 3", p.GaveUpAt, p.Resends)
	}
}

func TestPlanRateAndDelay(t *testing.T) {
	f := DefaultFaults()
	f.Rate, f.Delay = 1000, 50*time.Millisecond // 1000 B/s
	p := NewPlan(1)
	// Three 500-byte chunks at once: the sender is busy 0.5 s with each.
	for i, want := range []time.Duration{550 * time.Millisecond, 1050 * time.Millisecond, 1550 * time.Millisecond} {
		out, _ := p.Next(f, 0, 500)
		if out != want {
			t.Fatalf("chunk %d leaves at %v, want %v", i, out, want)
		}
	}
	// After an idle gap the sender starts fresh.
	if out, _ := p.Next(f, 10*time.Second, 100); out != 10*time.Second+150*time.Millisecond {
		t.Fatalf("after a gap: %v", out)
	}
}

func TestSettings(t *testing.T) {
	f, err := Parse(DefaultFaults(), "# chaos\nloss=30%\ndelay=200ms\n\njitter = 10ms\nrate=1Mi\ncut=true\ncut-mode=blackhole\n")
	if err != nil {
		t.Fatal(err)
	}
	if f.Loss != 0.3 || f.Delay != 200*time.Millisecond || f.Jitter != 10*time.Millisecond || f.Rate != 1<<20 || !f.Cut || f.CutMode != "blackhole" {
		t.Fatalf("parsed %s", f)
	}
	if g, _ := Parse(DefaultFaults(), "loss=0.25"); g.Loss != 0.25 {
		t.Fatalf("loss=0.25 parsed as %v", g.Loss)
	}
	base := DefaultFaults()
	for _, bad := range []string{"loss=1.5", "loss=-0.1", "loss=x", "loss=NaN", "delay=-1s", "delay=soon", "rate=fast",
		"max-retries=0", "cut=maybe", "cut-mode=explode", "colour=blue", "noequals"} {
		got, err := Parse(base, bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
		}
		if got != base {
			t.Errorf("%q: a refused file changed the settings to %s", bad, got)
		}
	}
	if _, err := Parse(base, "loss=0.1\nbogus\n"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error does not name the line: %v", err)
	}
}

// echo serves an echo server on loopback and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func startLink(t *testing.T, f Faults) (*Link, string) {
	t.Helper()
	l := NewLink(echo(t), 3, f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go l.Serve(ln)
	return l, ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Bytes cross a lossy, jittery, rate-limited link intact and in order.
func TestLinkDeliversIntact(t *testing.T) {
	f := DefaultFaults()
	f.Loss, f.RTO, f.Jitter, f.Rate, f.MaxRetries = 0.3, time.Millisecond, time.Millisecond, 8<<20, 50
	l, addr := startLink(t, f)
	c := dial(t, addr)
	msg := make([]byte, 300<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range msg {
		msg[i] = byte(r.Uint32())
	}
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("the echo came back different")
	}
	poll(t, "the forwarded count", func() bool { return l.Forwarded.Load() >= 2*int64(len(msg)) })
	if l.Forwarded.Load() != 2*int64(len(msg)) {
		t.Fatalf("forwarded %d bytes, want %d", l.Forwarded.Load(), 2*len(msg))
	}
}

func roundTrip(c net.Conn, s string) (string, error) {
	if _, err := c.Write([]byte(s)); err != nil {
		return "", err
	}
	b := make([]byte, len(s))
	_, err := io.ReadFull(c, b)
	return string(b), err
}

// A close-mode cut resets live connections and refuses new ones; a heal
// lets new ones through.
func TestLinkCutAndHeal(t *testing.T) {
	l, addr := startLink(t, DefaultFaults())
	c := dial(t, addr)
	if got, err := roundTrip(c, "before"); err != nil || got != "before" {
		t.Fatalf("before the cut: %q %v", got, err)
	}
	f := l.Faults()
	f.Cut = true
	l.SetFaults(f)
	if _, err := roundTrip(c, "during"); err == nil {
		t.Fatal("a live connection still works after the cut")
	}
	c2 := dial(t, addr)
	if _, err := roundTrip(c2, "new"); err == nil {
		t.Fatal("a new connection works during the cut")
	}
	poll(t, "the refusal to be counted", func() bool { return l.Refused.Load() >= 1 })
	poll(t, "the cut connections to end", func() bool { return l.Live() == 0 })
	f.Cut = false
	l.SetFaults(f)
	c3 := dial(t, addr)
	if got, err := roundTrip(c3, "after"); err != nil || got != "after" {
		t.Fatalf("after the heal: %q %v", got, err)
	}
}

// A blackhole cut holds data on live connections, and delivers it on heal.
func TestLinkBlackhole(t *testing.T) {
	f := DefaultFaults()
	f.CutMode = "blackhole"
	l, addr := startLink(t, f)
	c := dial(t, addr)
	if got, err := roundTrip(c, "a"); err != nil || got != "a" {
		t.Fatalf("before: %q %v", got, err)
	}
	poll(t, "the echo to be counted", func() bool { return l.Forwarded.Load() == 2 })
	before := l.Forwarded.Load()
	f.Cut = true
	l.SetFaults(f)
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	poll(t, "the chunk to be held", func() bool { return l.Held.Load() == 1 })
	if l.Forwarded.Load() != before {
		t.Fatal("bytes passed a blackhole")
	}
	f.Cut = false
	l.SetFaults(f)
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "held" {
		t.Fatalf("after the heal: %q %v", b, err)
	}
}

// With loss 1 the link gives up on the connection, as a TCP stack does
// after its retries.
func TestLinkGivesUp(t *testing.T) {
	f := DefaultFaults()
	f.Loss, f.RTO, f.MaxRetries = 1, time.Millisecond, 2
	l, addr := startLink(t, f)
	c := dial(t, addr)
	_, err := roundTrip(c, "x")
	if err == nil {
		t.Fatal("a connection over a dead link echoed")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF || strings.Contains(err.Error(), "reset") {
		poll(t, "give-up count", func() bool { return l.GaveUp.Load() == 1 })
		return
	}
	t.Fatalf("unexpected error %v", err)
}
