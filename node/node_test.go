package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
)

type testNode struct {
	*Node
	h  *home.Home
	sk *key.Secret
}

func newHome(t testing.TB, dir string) (*home.Home, *key.Secret) {
	t.Helper()
	h, sk, err := home.Init(dir, home.DefaultName, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return h, sk
}

func trust(t testing.TB, h *home.Home, ids ...key.ID) {
	t.Helper()
	if _, err := h.EditPeers(func(p *home.Peers) { p.Trust = append(p.Trust, ids...) }); err != nil {
		t.Fatal(err)
	}
}

func start(t testing.TB, h *home.Home, cfg Config) *Node {
	t.Helper()
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		lg = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return startLog(t, h, cfg, lg)
}

func startLog(t testing.TB, h *home.Home, cfg Config, lg *slog.Logger) *Node {
	t.Helper()
	n, err := Start(context.Background(), Options{Home: h, Config: cfg, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(trimNL(b))); return len(b), nil }

func quickConfig() Config {
	c := Default()
	c.Listen = []string{"127.0.0.1:0"}
	c.Roles = nil
	c.Sync.BackoffMin = Duration(50 * time.Millisecond)
	c.Sync.BackoffMax = Duration(500 * time.Millisecond)
	return c
}

// pair starts two instances that trust each other; a knows b's address.
func pair(t testing.TB) (a, b *testNode) {
	dir := t.TempDir()
	ha, ska := newHome(t, filepath.Join(dir, "a"))
	hb, skb := newHome(t, filepath.Join(dir, "b"))
	trust(t, ha, skb.ID())
	trust(t, hb, ska.ID())
	nb := start(t, hb, quickConfig())
	cfg := quickConfig()
	cfg.Sync.Peers = []string{skb.ID().String() + "@" + nb.Info().Listen[0]}
	na := start(t, ha, cfg)
	return &testNode{na, ha, ska}, &testNode{nb, hb, skb}
}

func note(i int) card.Draft {
	return card.Draft{Kind: card.KindNote, TS: time.Now().Unix(), Body: map[string]any{"n": i}}
}

// waitSeq waits until n's store holds author's log up to seq.
func waitSeq(t testing.TB, n *Node, author key.ID, seq uint64, within time.Duration) {
	t.Helper()
	sub := n.Store().Subscribe()
	defer sub.Cancel()
	deadline := time.After(within)
	for {
		if h, ok := n.Store().Head(author); ok && h.Seq >= seq {
			return
		}
		select {
		case <-sub.C:
		case <-deadline:
			h, _ := n.Store().Head(author)
			t.Fatalf("after %v the peer holds %s up to %d, want %d", within, author.Short(), h.Seq, seq)
		}
	}
}

// TestLiveSyncPushesBothWays: cards appended on either instance reach the
// other over the one live session, without any sync command.
func TestLiveSyncPushesBothWays(t *testing.T) {
	a, b := pair(t)
	for i := range 20 {
		if _, err := a.Store().Append(a.sk, note(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitSeq(t, b.Node, a.sk.ID(), 20, 10*time.Second)
	for i := range 5 {
		if _, err := b.Store().Append(b.sk, note(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitSeq(t, a.Node, b.sk.ID(), 5, 10*time.Second)
	if s := a.live.sessions(); len(s) != 1 || s[0].Peer != b.sk.ID() || !s[0].Initiator {
		t.Fatalf("a's sessions: %+v", s)
	}
	if s := b.live.sessions(); len(s) != 1 || s[0].Peer != a.sk.ID() || s[0].Initiator {
		t.Fatalf("b's sessions: %+v", s)
	}
}

// TestReconnectsAfterPeerRestart: the dialling side reconnects by itself
// when the peer comes back, and what was appended meanwhile arrives.
func TestReconnectsAfterPeerRestart(t *testing.T) {
	dir := t.TempDir()
	ha, ska := newHome(t, filepath.Join(dir, "a"))
	hb, skb := newHome(t, filepath.Join(dir, "b"))
	trust(t, ha, skb.ID())
	trust(t, hb, ska.ID())
	cb := quickConfig()
	nb := start(t, hb, cb)
	addr := nb.Info().Listen[0]
	cfg := quickConfig()
	cfg.Sync.Peers = []string{skb.ID().String() + "@" + addr}
	na := start(t, ha, cfg)
	na.Store().Append(ska, note(0))
	waitSeq(t, nb, ska.ID(), 1, 10*time.Second)
	nb.Shutdown()
	for i := 1; i < 5; i++ {
		na.Store().Append(ska, note(i))
	}
	cb.Listen = []string{addr}
	nb = start(t, hb, cb)
	waitSeq(t, nb, ska.ID(), 5, 10*time.Second)
}

// TestSecondInstanceRefused: a second Start on the same home fails naming
// the first (pid and socket).
func TestSecondInstanceRefused(t *testing.T) {
	h, _ := newHome(t, t.TempDir())
	n := start(t, h, quickConfig())
	_, err := Start(context.Background(), Options{Home: h, Config: quickConfig(), Logger: slog.New(slog.DiscardHandler)})
	want := fmt.Sprintf("pid %d, socket %s", n.Info().PID, n.Info().Socket)
	if err == nil || !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second start: %v (want it to name %q)", err, want)
	}
}
