// Package exec is the wazero executor. A Host runs peer bundles (see
// exec/bundle) only under a live grant card of its own for that peer or
// bundle: not revoked by a revoke card of the same author, not expired. It
// enforces the caps the grant allows (memory pages, CPU time per request and
// in total, instances, key-value disk), exposes only the host function
// groups the manifest asks and the grant names, and gives no file system,
// network, clock or randomness beyond them. It records every lifecycle step
// (deploy, suspend, resume, move, remove, failures, stops) as an observe card
// in the host's log. Running a peer never grants it anything: it cannot write
// cards, read the host's keys or another peer's state.
//
// Package exec is the only place wazero is imported.
package exec

import (
	"context"
	"errors"
	"fmt"
	"github.com/sublog/sublog/log/kinds"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	stdsync "sync"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Errors. Callers tell outcomes apart with errors.Is.
var (
	ErrNoGrant      = errors.New("exec: no live grant from this host")
	ErrExceedsGrant = errors.New("exec: the bundle asks for more than the grant allows")
	ErrBadGrant     = errors.New("exec: malformed grant")
	ErrUnknownPeer  = errors.New("exec: no such peer on this host")
	ErrNotRunning   = errors.New("exec: peer is not running")
	ErrStopped      = errors.New("exec: peer was stopped")
	ErrCPUCap       = errors.New("exec: CPU cap hit")
	ErrMemoryCap    = errors.New("exec: memory cap hit")
	ErrStackCap     = errors.New("exec: call-stack cap hit")
	ErrNotGranted   = errors.New("exec: host function not granted")
	ErrTrap         = errors.New("exec: the module failed")
	ErrAppStatus    = errors.New("exec: the peer answered with an error status")
	ErrExists       = errors.New("exec: peer already deployed here")
	ErrCorrupt      = errors.New("exec: corrupt executor state")
	ErrClosed       = errors.New("exec: host closed")
	ErrBadHandoff   = errors.New("exec: bad handoff")
	// ErrUnprovenPeer: a grant names the bundle's peer identity, but no
	// bundle card signed by that peer (or by an owner the peer's own log
	// delegates to) names this bundle: the manifest's peer is only a claim.
	ErrUnprovenPeer = errors.New("exec: the bundle's peer identity is not proven")
)

// Log is what the executor needs of the log store: the host's own cards, in
// chain order from a sequence number (to fold grants and revocations), and
// appending observe cards signed by the host. The log store implements it;
// MemLog is an in-memory version for tests.
type Log interface {
	Scan(author key.ID, fromSeq uint64, fn func(*card.Card) error) error
	Append(sk *key.Secret, d card.Draft) (*card.Card, error)
}

// Config configures a Host. Dir, Key and Log are required.
type Config struct {
	Dir  string      // the executor's directory (a home's exec/ subdirectory)
	Key  *key.Secret // the host identity: grants are read from, and observations written to, its log
	Log  Log
	Now  func() time.Time // default time.Now
	Rand io.Reader        // the randomness given to peers granted `random`; default crypto/rand
	// PeerLog receives log lines of peers granted `log` (each prefixed with
	// the peer's short ID); default discard.
	PeerLog io.Writer
	Logger  *slog.Logger // the executor's own diagnostics; default discard
	// Watch is how often the host re-reads its log for revocations and
	// checks expiries of running peers' grants; default 100ms.
	Watch time.Duration
	// CacheDir holds compiled code; default Dir/cache. Hosts may share one.
	CacheDir string
	// MaxFailures consecutive failed requests stop a peer (a crash loop);
	// default 16.
	MaxFailures int
}

// Host is one host's executor.
type Host struct {
	cfg   Config
	dir   string
	id    key.ID
	cache wazero.CompilationCache
	mu    stdsync.Mutex
	idx   *grantIndex
	peers map[key.ID]*peer
	// modules caches instrumented module bytes by bundle hash.
	modules map[bundle.Hash][]byte
	logMu   stdsync.Mutex

	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// Open opens (creating it if needed) the executor state in cfg.Dir and starts
// watching the host's log for revocations. Peers that were running are
// started again, lazily, on their next request, under a grant that is live
// then.
func Open(cfg Config) (*Host, error) {
	if cfg.Dir == "" || cfg.Key == nil || cfg.Log == nil {
		return nil, errors.New("exec: Config needs Dir, Key and Log")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = cryptoRand{}
	}
	if cfg.PeerLog == nil {
		cfg.PeerLog = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Watch <= 0 {
		cfg.Watch = 100 * time.Millisecond
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 16
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(cfg.Dir, "cache")
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "peers"), cfg.CacheDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("exec: %w", err)
		}
	}
	cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("exec: compilation cache: %w", err)
	}
	h := &Host{
		cfg: cfg, dir: cfg.Dir, id: cfg.Key.ID(), cache: cache, idx: newGrantIndex(),
		peers: map[key.ID]*peer{}, modules: map[bundle.Hash][]byte{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	h.idx.prove = h.provePeer
	if err := h.refresh(); err != nil {
		cache.Close(context.Background())
		return nil, err
	}
	go h.watch()
	return h, nil
}

// ID is the host identity.
func (h *Host) ID() key.ID { return h.id }

// Close stops every instance (running peers stay recorded as running and
// start again when the host is opened next) and the watcher.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	peers := make([]*peer, 0, len(h.peers))
	for _, p := range h.peers {
		peers = append(peers, p)
	}
	h.mu.Unlock()
	close(h.stop)
	<-h.done
	var first error
	for _, p := range peers {
		if err := p.shutdown(true); err != nil && first == nil {
			first = err
		}
	}
	h.cache.Close(context.Background())
	return first
}

// refresh folds new cards of the host's log into the grant index.
func (h *Host) refresh() error {
	h.mu.Lock()
	from := h.idx.seen + 1
	h.mu.Unlock()
	var cards []*card.Card
	err := h.cfg.Log.Scan(h.id, from, func(c *card.Card) error {
		cards = append(cards, c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("exec: reading the host log: %w", err)
	}
	h.mu.Lock()
	for _, c := range cards {
		if c.Seq() > h.idx.seen {
			h.idx.add(c)
		}
	}
	h.mu.Unlock()
	return nil
}

// watch re-reads the log and stops peers whose grant died.
func (h *Host) watch() {
	defer close(h.done)
	t := time.NewTicker(h.cfg.Watch)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.Check()
		}
	}
}

// Check re-reads the host's log and stops every running peer whose grant was
// revoked or has expired, recording why. The watcher calls it every
// Config.Watch; callers that just appended a revoke may call it directly.
func (h *Host) Check() {
	if err := h.refresh(); err != nil {
		h.cfg.Logger.Warn("exec: watch", "err", err)
		return
	}
	now := h.cfg.Now()
	h.mu.Lock()
	peers := make([]*peer, 0, len(h.peers))
	for _, p := range h.peers {
		peers = append(peers, p)
	}
	h.mu.Unlock()
	var dead []*peer
	var why []string
	for _, p := range peers {
		if g := p.currentGrant(); g != nil {
			h.mu.Lock()
			w := h.idx.dead(g, now)
			h.mu.Unlock()
			if w != "" {
				dead = append(dead, p)
				why = append(why, w)
			}
		}
	}
	for i, p := range dead {
		p.stopFor(why[i])
	}
}

// record appends an observe card for p.
func (h *Host) record(b *bundle.Bundle, g *grant, state, reason string, to *key.ID, usage *Usage) error {
	body := ObserveBody{Peer: b.Manifest.Peer, State: state, Reason: reason, Usage: usage}
	hash := b.Hash()
	body.Bundle = hash[:]
	if g != nil {
		body.Grant = g.id[:]
		body.Owner = g.body.Owner
		body.Service = g.body.Service
	}
	if to != nil {
		body.To = to.Bytes()
	}
	_, err := h.cfg.Log.Append(h.cfg.Key, card.Draft{Kind: card.KindObserve, TS: h.cfg.Now().Unix(), Body: body})
	if err != nil {
		return fmt.Errorf("exec: recording %s of %s: %w", state, b.Peer().Short(), err)
	}
	return nil
}

// Status is a peer's state on this host.
type Status struct {
	Peer   key.ID
	Name   string
	Bundle bundle.Hash
	State  string
	Grant  card.ID
	Reason string
	Limits bundle.Limits
	Caps   []string
	CPUMS  uint64
}

// Peers lists the peers this host holds, running or not.
func (h *Host) Peers() ([]Status, error) {
	ents, err := os.ReadDir(filepath.Join(h.dir, "peers"))
	if err != nil {
		return nil, err
	}
	var out []Status
	for _, e := range ents {
		id, err := key.ParseID(e.Name())
		if err != nil {
			continue
		}
		s, err := h.Status(id)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Status reports one peer.
func (h *Host) Status(id key.ID) (Status, error) {
	p, err := h.load(id)
	if err != nil {
		return Status{}, err
	}
	return p.status(), nil
}

// load returns the peer held in memory, or reads it from disk.
func (h *Host) load(id key.ID) (*peer, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if p, ok := h.peers[id]; ok {
		return p, nil
	}
	m, err := h.readMeta(id)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(h.peerDir(id), "bundle"))
	if err != nil {
		return nil, fmt.Errorf("%w: peer %s bundle: %v", ErrCorrupt, id, err)
	}
	want, err := bundle.HashFromBytes(m.Bundle)
	if err != nil {
		return nil, fmt.Errorf("%w: peer %s: %v", ErrCorrupt, id, err)
	}
	b, err := bundle.Open(raw, want)
	if err != nil {
		return nil, fmt.Errorf("%w: peer %s: %w", ErrCorrupt, id, err)
	}
	kv, err := h.readKV(id)
	if err != nil {
		return nil, err
	}
	p := newPeer(h, b, kv)
	p.state, p.reason, p.cpuMS = m.State, m.Reason, m.CPUMS
	if gid, err := card.IDFromBytes(m.Grant); err == nil && h.idx.grants[gid] != nil {
		p.adopt(h.idx.grants[gid])
	} else if g, err := h.idx.match(b, As{}, h.cfg.Now()); err == nil {
		p.adopt(g)
	} else if p.state == kinds.StateRunning {
		p.state, p.reason = kinds.StateStopped, err.Error()
	}
	h.peers[id] = p
	return p, nil
}

// cryptoRand is crypto/rand behind an io.Reader without importing it at
// package level twice.
type cryptoRand struct{}

// Warm loads every peer this host holds, so the watcher stops a running
// peer whose grant dies even before its first request, and starts the
// running ones (compiled and linked, one instance made on first request as
// before). A long-lived instance calls it once at start; a peer that
// cannot start is left as it is (its next request reports why).
func (h *Host) Warm(ctx context.Context) error {
	list, err := h.Peers()
	if err != nil {
		return err
	}
	for _, s := range list {
		if s.State != kinds.StateRunning {
			continue
		}
		p, err := h.load(s.Peer)
		if err != nil {
			continue
		}
		p.life.Lock()
		p.mu.Lock()
		if p.state == kinds.StateRunning {
			if err := p.start(ctx); err != nil {
				h.cfg.Logger.Warn("exec: starting peer", "peer", p.id, "err", err)
			}
		}
		p.mu.Unlock()
		p.life.Unlock()
	}
	// Grants may have died while nothing ran: stop those now.
	h.Check()
	return nil
}
