package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	lsync "github.com/sublog/sublog/sync"
)

// watchLog is a slog handler that tells, once each, when a record whose
// "err" attribute contains one of the wanted texts is logged.
type watchLog struct {
	want map[string]chan struct{}
	t    *testing.T // set: every record goes to the test's log too (-v)
}

func newWatchLog(want ...string) *watchLog {
	w := &watchLog{want: map[string]chan struct{}{}}
	for _, s := range want {
		w.want[s] = make(chan struct{})
	}
	return w
}

func (w *watchLog) Enabled(context.Context, slog.Level) bool { return true }
func (w *watchLog) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *watchLog) WithGroup(string) slog.Handler            { return w }

func (w *watchLog) Handle(_ context.Context, r slog.Record) error {
	if w.t != nil {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		w.t.Log(r.Message + b.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "err" {
			return true
		}
		v := a.Value.String()
		for s, c := range w.want {
			if strings.Contains(v, s) {
				select {
				case <-c:
				default:
					close(c)
				}
			}
		}
		return true
	})
	return nil
}

// wait waits for the record with text s (the test's deadline is the bound).
func (w *watchLog) wait(t *testing.T, s string, within time.Duration) {
	t.Helper()
	select {
	case <-w.want[s]:
	case <-time.After(within):
		t.Fatalf("no log record with %q within %v", s, within)
	}
}

// issue 18: the instance's live links enforce the same per-peer quota as
// 'sublog serve' (the real DefaultQuota): a trusted peer whose round would
// push more new logs than one session may bring is refused with the
// reason, the peer's instance sees that reason, and the home goes on: the
// link comes back and the peer's next card arrives.
func TestLiveLinkQuota(t *testing.T) {
	def := lsync.DefaultQuota()
	want := fmt.Sprintf("quota: more than %d new logs in one session", def.SessionLogs)
	dir := t.TempDir()
	ha, ska := newHome(t, filepath.Join(dir, "a"))
	hb, skb := newHome(t, filepath.Join(dir, "b"))
	trust(t, ha, skb.ID())
	trust(t, hb, ska.ID())
	// b follows (so shows a) logs a holds nothing of: 2 x SessionLogs + 1,
	// since a's round and b's round run at once on the link, each with its
	// own session quota (the window bounds them together); whichever way
	// they share the logs, one of them must take more than its quota.
	flood := make([]*key.Secret, 2*def.SessionLogs+1)
	ids := make([]key.ID, len(flood))
	for i := range flood {
		sk, err := key.FromSeed(key.DeriveSeed([]byte("node-quota"), fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		flood[i], ids[i] = sk, sk.ID()
	}
	if _, err := hb.EditPeers(func(p *home.Peers) { p.Follow = append(p.Follow, ids...) }); err != nil {
		t.Fatal(err)
	}
	bLog := newWatchLog("refused by peer: " + want)
	bLog.t = logTo(t)
	nb := startLogged(t, hb, quickConfig(), bLog)
	var cards [][]byte
	for i, sk := range flood {
		c, err := card.Sign(sk, 1, card.ID{}, note(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		cards = append(cards, c.Bytes())
	}
	if res, err := nb.Store().ImportBatch(cards); err != nil || len(res.Accepted) != len(cards) {
		t.Fatalf("flood: %v %v", err, res.Errs)
	}
	aLog := newWatchLog("peer refused: " + want)
	aLog.t = logTo(t)
	cfg := quickConfig()
	cfg.Sync.Peers = []string{skb.ID().String() + "@" + nb.Info().Listen[0]}
	na := startLogged(t, ha, cfg, aLog)
	aLog.wait(t, "peer refused: "+want, 30*time.Second)
	bLog.wait(t, "refused by peer: "+want, 30*time.Second)
	// The home keeps working: b's own next card reaches a.
	if _, err := nb.Store().Append(skb, note(0)); err != nil {
		t.Fatal(err)
	}
	waitSeq(t, na, skb.ID(), 1, 30*time.Second)
}

// logTo gives the test's log for records when the test runs with -v.
func logTo(t *testing.T) *testing.T {
	if testing.Verbose() {
		return t
	}
	return nil
}

func startLogged(t *testing.T, h *home.Home, cfg Config, hd slog.Handler) *Node {
	t.Helper()
	n, err := Start(context.Background(), Options{Home: h, Config: cfg, Logger: slog.New(hd)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}
