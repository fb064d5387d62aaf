package sync

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sublog/sublog/sync/transport"
)

// floodStore holds one card in each of n logs nobody has seen.
func floodStore(t *testing.T, n int) *MemStore {
	t.Helper()
	st := newStore()
	for i := range n {
		appendN(t, st, secret(t, fmt.Sprint("flood-", i)), 1)
	}
	return st
}

// issue 18: the per-peer quotas bound every session, not only those Serve
// answers. With the real default quota (nothing set in Options), a home
// that dials out, answers on stdio/pipes, or runs a round on a Link refuses
// a peer that pushes more new logs than one session may bring: the peer
// sees the quota's reason, nothing past the quota is stored, and the home
// goes on syncing with a legitimate peer. New logs are the quota pushed
// past here because 501 one-card logs cost a few milliseconds to sign,
// where the card quota would take 50,001 signatures; each limit's count is
// checked in TestQuotaSessionAndWindow.
func TestDefaultQuotaOnEverySession(t *testing.T) {
	def := DefaultQuota()
	want := fmt.Sprintf("quota: more than %d new logs in one session", def.SessionLogs)
	flood := floodStore(t, def.SessionLogs+1)
	homeKey, mallory, carol := secret(t, "home"), secret(t, "mallory"), secret(t, "carol")

	// Each mode runs one session between a fresh home and mallory (who
	// holds the flood and shows it all) with the home's options left at
	// their defaults, and returns both sides' outcomes.
	type outcome struct {
		home, peer result
	}
	homeOpt := func(seed uint64) Options {
		return Options{Secret: homeKey, Rand: newRand(seed), Policy: Everyone{}, Timeout: 10 * time.Second}
	}
	peerOpt := func(seed uint64) Options {
		return Options{Secret: mallory, Rand: newRand(seed), Policy: Everyone{}, Timeout: 10 * time.Second}
	}
	modes := map[string]func(t *testing.T, home Store) outcome{
		// The home dials mallory's server ('sublog sync ADDR').
		"dial": func(t *testing.T, home Store) outcome {
			l, err := transport.TCP{}.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan result, 1)
			go Serve(ctx, l, flood, peerOpt(1), func(s Stats, err error) { served <- result{s, err} })
			st, err := Dial(ctx, transport.TCP{}, l.Addr(), home, homeOpt(2))
			return outcome{result{st, err}, <-served}
		},
		// The home answers on its stdin/stdout ('sublog sync --stdio'),
		// mallory starts the session ('sublog sync --command').
		"stdio": func(t *testing.T, home Store) outcome {
			ca, cb := transport.Pipe()
			rp, rh := runPair(t, ca, cb, node{flood, mallory, Everyone{}}, node{home, homeKey, Everyone{}}, peerOpt(3), homeOpt(4))
			return outcome{rh, rp}
		},
		// A live link (the instance's sessions): the home runs a round,
		// mallory's side of the link answers it.
		"link": func(t *testing.T, home Store) outcome {
			ca, cb := transport.Pipe()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			linked := make(chan *Link, 1)
			go func() {
				l, err := Connect(ctx, cb, false, flood, peerOpt(5))
				if err != nil {
					t.Error(err)
				}
				linked <- l
			}()
			hl, err := Connect(ctx, ca, true, home, homeOpt(6))
			if err != nil {
				t.Fatal(err)
			}
			defer hl.Close()
			pl := <-linked
			if pl == nil {
				t.FailNow()
			}
			defer pl.Close()
			answered := make(chan result, 1)
			go pl.Serve(ctx, func(s Stats, err error) { answered <- result{s, err} })
			st, err := hl.Round(ctx)
			return outcome{result{st, err}, <-answered}
		},
	}
	for name, run := range modes {
		t.Run(name, func(t *testing.T) {
			home := newStore()
			o := run(t, home)
			var r *Refusal
			if !errors.Is(o.home.err, ErrRefused) || !errors.As(o.home.err, &r) || r.Remote || r.Reason != want {
				t.Fatalf("home: %v, want its own refusal %q", o.home.err, want)
			}
			if !errors.Is(o.peer.err, ErrPeerRefused) || !errors.As(o.peer.err, &r) || !r.Remote || r.Reason != want {
				t.Fatalf("peer: %v, want the home's refusal %q", o.peer.err, want)
			}
			// Nothing past the quota was stored: exactly its 500 new logs.
			if n := len(home.Heads()); n != def.SessionLogs || o.home.st.Logs != def.SessionLogs {
				t.Fatalf("home holds %d logs (session says %d), want %d", n, o.home.st.Logs, def.SessionLogs)
			}
			// The home keeps working: a legitimate sync right after.
			cs := newStore()
			appendN(t, cs, carol, 5)
			ra, rb := syncPipe(t, node{home, homeKey, Everyone{}}, node{cs, carol, Everyone{}})
			if ra.err != nil || rb.err != nil || ra.st.Received != 5 {
				t.Fatalf("legitimate sync after the refusal: %+v / %+v", ra, rb)
			}
			if h, ok := home.Head(carol.ID()); !ok || h.Seq != 5 {
				t.Fatalf("carol's log: %+v %v", h, ok)
			}
		})
	}
}

// A Guard shared by several sessions (the instance passes one to all its
// links) keeps one quota window per peer across them: what one session
// took counts in the next, and a spent window is refused at the next
// session's start.
func TestSharedGuardWindowAcrossSessions(t *testing.T) {
	g := NewGuard(Limits{}, Quota{Window: time.Hour, WindowLogs: 3})
	homeKey, mallory := secret(t, "home"), secret(t, "mallory")
	home := newStore()
	want := "quota: more than 3 new logs per 1h0m0s"
	for i, c := range []struct {
		logs    int
		refused string
	}{{2, ""}, {2, want}, {1, "quota: this peer pushed its limit for 1h0m0s (3 new logs, 0 cards, 0 bytes)"}} {
		flood := newStore()
		for j := range c.logs {
			appendN(t, flood, secret(t, fmt.Sprint("w", i, "-", j)), 1)
		}
		ca, cb := transport.Pipe()
		ho := Options{Secret: homeKey, Rand: newRand(uint64(10 + i)), Policy: Everyone{}, Timeout: 10 * time.Second, Guard: g}
		po := Options{Secret: mallory, Rand: newRand(uint64(20 + i)), Policy: Everyone{}, Timeout: 10 * time.Second}
		rp, rh := runPair(t, ca, cb, node{flood, mallory, Everyone{}}, node{home, homeKey, Everyone{}}, po, ho)
		var r *Refusal
		switch {
		case c.refused == "" && (rh.err != nil || rp.err != nil):
			t.Fatalf("session %d: %v / %v", i, rh.err, rp.err)
		case c.refused != "" && (!errors.As(rp.err, &r) || !r.Remote || r.Reason != c.refused):
			t.Fatalf("session %d: the peer saw %v, want %q", i, rp.err, c.refused)
		}
	}
	if n := len(home.Heads()); n != 3 {
		t.Fatalf("home holds %d logs, want the window's 3", n)
	}
}
