package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	stdsync "sync"
	"sync/atomic"
	"time"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	lsync "github.com/sublog/sublog/sync"
	"github.com/sublog/sublog/sync/discovery"
	"github.com/sublog/sublog/sync/transport"
)

// Lists is the sync policy of a home as of now: the one trust rule
// (sync.TrustFor) over its own identities, the devices they delegate to, the
// trust and follow lists of peers.json and the owners it paired with
// (owners.json).
func Lists(h *home.Home, st *sublog.Store, now int64) (*lsync.Lists, error) {
	named, err := h.Identities()
	if err != nil {
		return nil, err
	}
	var self []key.ID
	for _, n := range named {
		self = append(self, n.ID)
	}
	peers, err := h.Peers()
	if err != nil {
		return nil, fmt.Errorf("%w (fix or remove %s)", err, filepath.Join(h.Dir, home.PeersFile))
	}
	paired, err := h.PairedDelegations()
	if err != nil {
		return nil, fmt.Errorf("%w (fix or remove %s)", err, filepath.Join(h.Dir, home.OwnersFile))
	}
	return lsync.TrustFor(st, self, peers.Trust, peers.Follow, now, paired...), nil
}

// livePolicy is the current Lists, swapped on reconfigure.
type livePolicy struct{ p atomic.Pointer[lsync.Lists] }

func (l *livePolicy) Visible(peer, author key.ID) bool { return l.p.Load().Visible(peer, author) }
func (l *livePolicy) Accept(peer, author key.ID) bool  { return l.p.Load().Accept(peer, author) }
func (l *livePolicy) Shares(peer key.ID) bool          { return l.p.Load().Shares(peer) }

// Per-peer bounds of the live sessions (stated in ARCHITECTURE.md).
const (
	// maxLinks bounds the live connections of an instance, in and out.
	maxLinks = 256
	// resetAfter: a link that lived this long resets its peer's backoff.
	resetAfter = 10 * time.Second
)

// live keeps the sessions: a listener per Listen address answering peers,
// and a dialer per identity the home has reason to talk to.
type live struct {
	n    *Node
	pol  *livePolicy
	opt  lsync.Options
	ctx  context.Context
	stop context.CancelFunc
	wg   stdsync.WaitGroup
	lns  []transport.Listener

	mu      stdsync.Mutex
	links   map[key.ID][]*linkState
	dialers map[key.ID]context.CancelFunc
	hints   map[key.ID][]hint
}

type linkState struct {
	l     *lsync.Link
	addr  string
	since time.Time
}

// SessionInfo is one live session in /v1/sessions and /v1/status.
type SessionInfo struct {
	Peer      key.ID    `json:"peer"`
	Addr      string    `json:"addr,omitempty"`
	Initiator bool      `json:"initiator"`
	Since     time.Time `json:"since"`
	Rounds    int       `json:"rounds"`
	Received  int       `json:"received"`
	Sent      int       `json:"sent"`
	Rejected  int       `json:"rejected"`
	BytesIn   int64     `json:"bytes_in"`
	BytesOut  int64     `json:"bytes_out"`
	LastRound time.Time `json:"last_round"`
	// Cards the link's rounds in flight still expect to receive and to
	// send (0 between rounds; see ARCHITECTURE.md, "cards to go").
	CardsToGo   int `json:"cards_to_go"`
	CardsToSend int `json:"cards_to_send"`
}

func startLive(n *Node) (*live, error) {
	lv := &live{n: n, pol: &livePolicy{}, links: map[key.ID][]*linkState{}, dialers: map[key.ID]context.CancelFunc{}}
	lv.ctx, lv.stop = context.WithCancel(n.ctx)
	if err := lv.loadPolicy(); err != nil {
		return nil, err
	}
	// One guard for every link, accepted or dialled: a peer that sent a
	// forged card is backed off whichever way it next connects, and its
	// quota window (DefaultQuota, as 'sublog serve') holds across its links
	// and reconnections; each round is one session of the quota.
	lim := n.cfg.SyncLimits()
	lv.opt = lsync.Options{Secret: n.sk, Rand: n.opt.Rand, Policy: lv.pol, Limits: lim,
		Timeout: time.Duration(n.cfg.Limits.IdleTimeout), Guard: lsync.NewGuard(lim, lsync.DefaultQuota())}
	if n.blobs != nil {
		lv.opt.Handlers = map[byte]lsync.PeerStream{lsync.StreamBlob: lsync.BlobHandler(n.st, lv.pol, n.blobs, n.blobServed)}
	}
	if !n.cfg.Sync.Open {
		lv.opt.Accept = func(p key.ID) error {
			if !lv.pol.p.Load().Known(p) {
				return errors.New("not one of this home's identities, devices, trusted or followed peers")
			}
			return nil
		}
	}
	for _, addr := range n.cfg.Listen {
		ln, err := transport.TCP{}.Listen(addr)
		if err != nil {
			lv.close()
			return nil, fmt.Errorf("node: listening on %s: %w", addr, err)
		}
		lv.lns = append(lv.lns, ln)
		lv.wg.Add(1)
		go lv.serve(ln)
	}
	lv.reconfigure()
	return lv, nil
}

func (lv *live) loadPolicy() error {
	p, err := Lists(lv.n.home, lv.n.st, lv.n.opt.Now().Unix())
	if err != nil {
		return err
	}
	lv.pol.p.Store(p)
	return nil
}

func (lv *live) addrs() []string {
	out := []string{}
	for _, l := range lv.lns {
		out = append(out, l.Addr())
	}
	return out
}

func (lv *live) close() {
	lv.stop()
	for _, l := range lv.lns {
		l.Close()
	}
	lv.mu.Lock()
	for _, ls := range lv.links {
		for _, s := range ls {
			s.l.Close()
		}
	}
	lv.mu.Unlock()
	lv.wg.Wait()
}

// targets are the identities this instance keeps sessions with: trusted
// and followed identities, the devices of its identities, and every
// identity named by a configured hint; never its own identities.
func (lv *live) targets() map[key.ID][]hint {
	p := lv.pol.p.Load()
	out := map[key.ID][]hint{}
	for id := range p.Trusted {
		out[id] = nil
	}
	for id := range p.Follow {
		out[id] = nil
	}
	for id := range p.Self {
		out[id] = nil
	}
	now := lv.n.opt.Now()
	for _, s := range lv.n.cfg.Sync.Peers {
		if h, err := parseHint(s, now); err == nil {
			out[h.id] = append(out[h.id], h)
		}
	}
	if named, err := lv.n.home.Identities(); err == nil {
		for _, nm := range named {
			delete(out, nm.ID) // the same store: nothing to sync
		}
	}
	return out
}

// reconfigure reloads the policy and starts (or stops) dialers to match
// the targets.
func (lv *live) reconfigure() {
	if lv.ctx.Err() != nil {
		return
	}
	if err := lv.loadPolicy(); err != nil {
		lv.n.log.Warn("reloading the sync lists", "err", err)
	}
	t := lv.targets()
	lv.mu.Lock()
	defer lv.mu.Unlock()
	lv.hints = t
	for id, cancel := range lv.dialers {
		if _, ok := t[id]; !ok {
			cancel()
			delete(lv.dialers, id)
		}
	}
	for id := range t {
		if _, ok := lv.dialers[id]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(lv.ctx)
		lv.dialers[id] = cancel
		lv.wg.Add(1)
		go lv.dialer(ctx, id)
	}
}

// kickAll asks every live link for a round (the store changed).
func (lv *live) kickAll() {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	for _, ls := range lv.links {
		for _, s := range ls {
			s.l.Kick()
		}
	}
}

func (lv *live) sessions() []SessionInfo {
	out := []SessionInfo{}
	if lv == nil {
		return out
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	for _, ls := range lv.links {
		for _, s := range ls {
			t, rounds, last := s.l.Totals()
			out = append(out, SessionInfo{Peer: s.l.Peer(), Addr: s.addr, Initiator: s.l.Initiator(), Since: s.since,
				Rounds: rounds, Received: t.Received, Sent: t.Sent, Rejected: t.Rejected, BytesIn: t.BytesIn, BytesOut: t.BytesOut,
				LastRound: last, CardsToGo: t.ToReceive, CardsToSend: t.ToSend})
		}
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return a.Since.Compare(b.Since) })
	return out
}

func (lv *live) count() int {
	n := 0
	for _, ls := range lv.links {
		n += len(ls)
	}
	return n
}

// add registers a link, keeping at most one per peer: when both sides
// dialled, the link dialled by the smaller identity stays (both sides
// decide alike).
func (lv *live) add(l *lsync.Link, addr string) (*linkState, bool) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.count() >= maxLinks {
		return nil, false
	}
	s := &linkState{l: l, addr: addr, since: time.Now()}
	for _, old := range lv.links[l.Peer()] {
		if lv.preferred(old.l) {
			return nil, false
		}
		old.l.Close()
	}
	lv.links[l.Peer()] = append(lv.links[l.Peer()], s)
	return s, true
}

// preferred tells whether a link is the one to keep of two to one peer.
func (lv *live) preferred(l *lsync.Link) bool {
	self, peer := lv.n.sk.ID(), l.Peer()
	selfSmaller := string(self.Bytes()) < string(peer.Bytes())
	return l.Initiator() == selfSmaller
}

func (lv *live) remove(s *linkState) {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	ls := lv.links[s.l.Peer()]
	if i := slices.Index(ls, s); i >= 0 {
		ls = slices.Delete(ls, i, i+1)
	}
	if len(ls) == 0 {
		delete(lv.links, s.l.Peer())
	} else {
		lv.links[s.l.Peer()] = ls
	}
}

func (lv *live) connected(id key.ID) bool {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return len(lv.links[id]) > 0
}

// run keeps a registered link until it ends.
func (lv *live) run(s *linkState) {
	l := s.l
	lg := lv.n.log.With("peer", l.Peer().String())
	lg.Info("session up", "addr", s.addr, "initiator", l.Initiator())
	lv.n.ev.publish("session", map[string]any{"peer": l.Peer(), "state": "up", "addr": s.addr})
	err := l.Live(lv.ctx, func(st lsync.Stats, initiated bool, err error) {
		switch {
		case err != nil && errors.Is(err, lsync.ErrRefused):
			// This side ended the session on purpose (a forged card, a
			// quota, a backed-off peer): a decision, so it is logged.
			lg.Warn("round refused", "initiated", initiated, "err", err, "received", st.Received,
				"checked", st.Checked, "dropped", st.Dropped, "rejected", st.Rejected)
		case err != nil:
			lg.Debug("round failed", "initiated", initiated, "err", err)
		case st.Received > 0 || st.Rejected > 0:
			lg.Info("round stored cards", "received", st.Received, "logs", st.Logs, "rejected", st.Rejected, "sent", st.Sent, "stubs_in", st.StubsIn)
		case st.Sent > 0:
			lg.Debug("round sent cards", "sent", st.Sent)
		}
		// A card that may not leave went as a stub: a decision, logged
		// with the card and why (issue 12).
		for _, w := range st.Withheld {
			lg.Info("card withheld: sent as a stub", "author", w.Author, "seq", w.Seq, "card", w.ID, "reason", w.Reason)
		}
	})
	lv.remove(s)
	lg.Info("session down", "err", errString(err))
	lv.n.ev.publish("session", map[string]any{"peer": l.Peer(), "state": "down", "err": errString(err)})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// serve answers peers connecting to ln with sync's own accept loop
// (lsync.ServeLinks): the admission caps in all, per source and half-open,
// the handshake deadline, the backoff of a source that sent a forged card
// and the backoff on temporary accept errors are those of `sublog serve`.
func (lv *live) serve(ln transport.Listener) {
	defer lv.wg.Done()
	ev := lsync.ServeEvents{
		AcceptError: func(err error, wait time.Duration) {
			lv.n.log.Warn("accept failed, waiting", "err", err, "wait", wait)
		},
		Turned: func(source, why string) {
			lv.n.log.Debug("connection turned away", "source", source, "why", why)
		},
	}
	err := lsync.ServeLinks(lv.ctx, ln, lv.n.st, lv.opt, func(l *lsync.Link, err error) {
		if err != nil {
			lv.n.log.Debug("connection refused or failed", "peer", peerString(l), "err", err)
			return
		}
		s, ok := lv.add(l, "")
		if !ok {
			l.Close()
			return
		}
		lv.run(s)
	}, ev)
	if err != nil && lv.ctx.Err() == nil {
		lv.n.log.Error("listener stopped", "addr", ln.Addr(), "err", err)
	}
}

func peerString(l *lsync.Link) string {
	if l == nil || l.Peer().IsZero() {
		return ""
	}
	return l.Peer().String()
}

// dialer keeps a session with id: it resolves, dials and runs the link,
// and after it ends (or fails) waits a capped exponential backoff with full
// jitter before the next attempt. A link the peer dialled counts: while one
// is up, the dialer only waits.
func (lv *live) dialer(ctx context.Context, id key.ID) {
	defer lv.wg.Done()
	lg := lv.n.log.With("peer", id.String())
	min, max := time.Duration(lv.n.cfg.Sync.BackoffMin), time.Duration(lv.n.cfg.Sync.BackoffMax)
	attempt := 0
	for ctx.Err() == nil {
		if d, off := lv.opt.Guard.BackedOff(id); off {
			// It sent a forged card: it is refused until then anyway.
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		if lv.connected(id) {
			if !sleep(ctx, min) {
				return
			}
			attempt = 0
			continue
		}
		s, err := lv.dial(ctx, id)
		if err == nil {
			start := time.Now()
			lv.run(s)
			if time.Since(start) > resetAfter {
				attempt = 0
			}
		} else if ctx.Err() == nil {
			lg.Debug("peer not reached", "err", err)
		}
		d := backoff(min, max, attempt)
		attempt++
		if !sleep(ctx, d) {
			return
		}
	}
}

// backoff is the delay before attempt n: uniform in [0, min(max, min·2^n)]
// ("full jitter"), never under min/2.
func backoff(min, max time.Duration, n int) time.Duration {
	c := min
	for i := 0; i < n && c < max; i++ {
		c *= 2
	}
	if c > max {
		c = max
	}
	return min/2 + rand.N(c-min/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dial resolves id (configured hints first, then the discovery sources:
// tokens, the home's cache, PKARR relays, DNS) and keeps the first address
// whose peer proves id: the proof is the session's own handshake, so the
// connection that proved it is the session.
func (lv *live) dial(ctx context.Context, id key.ID) (*linkState, error) {
	lv.mu.Lock()
	hints := lv.hints[id]
	lv.mu.Unlock()
	var got *linkState
	prove := discovery.ProverFunc(func(ctx context.Context, addr string, want key.ID) error {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := transport.TCP{}.Dial(dctx, addr)
		if err != nil {
			return err
		}
		l, err := lsync.Connect(ctx, c, true, lv.n.st, lv.opt)
		if err != nil {
			return err
		}
		if l.Peer() != want {
			l.Close()
			return fmt.Errorf("the peer at %s is %s, not %s", addr, l.Peer().Short(), want.Short())
		}
		s, ok := lv.add(l, addr)
		if !ok {
			l.Close()
			return errors.New("already connected")
		}
		got = s
		return nil
	})
	var errs []error
	for _, h := range hints {
		if h.addr == "" {
			continue
		}
		if err := prove(ctx, h.addr, id); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.addr, err))
			continue
		}
		return got, nil
	}
	r := &discovery.Resolver{Relays: lv.n.cfg.Discovery.Relays, DNSNames: lv.n.cfg.Discovery.DNS, Prover: prove, Now: lv.n.opt.Now}
	for _, h := range hints {
		if h.token != "" {
			r.Tokens = append(r.Tokens, h.token)
		}
	}
	if dir, err := lv.n.home.Path("discovery"); err == nil {
		if c, err := discovery.OpenCache(filepath.Join(dir, "cache.json")); err == nil {
			r.Cache = c
		}
	}
	if len(r.Tokens)+len(r.Relays)+len(r.DNSNames) == 0 && r.Cache == nil {
		return nil, errors.Join(append(errs, errors.New("no address hint for this identity"))...)
	}
	if _, err := r.Resolve(ctx, id); err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	if got == nil {
		return nil, errors.New("resolved, but no session was kept")
	}
	return got, nil
}
