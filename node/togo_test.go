package node

import (
	"context"
	"crypto/rand"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	lsync "github.com/sublog/sublog/sync"
	"github.com/sublog/sublog/sync/transport"
)

// scanGate holds a peer's push at its first Scan, before any card of it
// has gone.
type scanGate struct {
	lsync.Store
	once     stdsync.Once
	scanning chan struct{}
	resume   chan struct{}
}

func (g *scanGate) Scan(author key.ID, from uint64, fn func(*card.Card) error) error {
	g.once.Do(func() {
		close(g.scanning)
		<-g.resume
	})
	return g.Store.Scan(author, from, fn)
}

// TestProgressCardsToGo: while a round brings a peer's cards, /v1/progress
// tells how many are still to come, per session and in total, and 0 once
// they are stored. The peer is a bare sync link that only answers the
// instance's rounds (the instance starts one on every new link), holding
// its push until the test has read the page.
func TestProgressCardsToGo(t *testing.T) {
	const n = 7
	hb, _ := newHome(t, filepath.Join(t.TempDir(), "b"))
	a, err := key.FromSeed(key.DeriveSeed([]byte("node-test"), "peer a"))
	if err != nil {
		t.Fatal(err)
	}
	trust(t, hb, a.ID())
	nb := startAt(t, hb, quickConfig(), nil)
	var p Progress
	if apiGet(t, nb, "/v1/progress", &p) != 200 || p.CardsToGo != 0 || len(p.Sessions) != 0 {
		t.Fatalf("before the peer: %+v", p)
	}

	mem := lsync.NewMemStore(caps.Builtin())
	var prev card.ID
	for seq := uint64(1); seq <= n; seq++ {
		c, err := card.Sign(a, seq, prev, note(int(seq)), caps.Builtin())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mem.Import(c.Bytes()); err != nil {
			t.Fatal(err)
		}
		prev = c.ID()
	}
	st := &scanGate{Store: mem, scanning: make(chan struct{}), resume: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := transport.TCP{}.Dial(ctx, nb.Info().Listen[0])
	if err != nil {
		t.Fatal(err)
	}
	l, err := lsync.Connect(ctx, conn, true, st, lsync.Options{Secret: a, Rand: rand.Reader, Timeout: 20 * time.Second,
		Policy: lsync.NewLists([]key.ID{a.ID()}, []key.ID{nb.Info().ID}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go l.Serve(ctx, nil)

	<-st.scanning // the instance's round has compared heads; nothing sent yet
	p = Progress{}
	apiGet(t, nb, "/v1/progress", &p)
	if p.CardsToGo != n || len(p.Sessions) != 1 || p.Sessions[0].Peer != a.ID() || p.Sessions[0].CardsToGo != n || p.Sessions[0].CardsToSend != 0 {
		t.Fatalf("while the peer's push is held: %+v", p)
	}
	close(st.resume)
	waitSeq(t, nb, a.ID(), n, 10*time.Second)
	// The round ends just after the last card is stored: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		p = Progress{}
		apiGet(t, nb, "/v1/progress", &p)
		if p.CardsToGo == 0 && len(p.Sessions) == 1 && p.Sessions[0].CardsToGo == 0 && p.Sessions[0].Received == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the cards are stored: %+v", p)
		}
	}
}
