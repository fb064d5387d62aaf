package sync

import (
	"errors"
	"fmt"
	stdsync "sync"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

// Limits bound what peers may cost this side. A zero field takes its
// default (see DefaultLimits and ARCHITECTURE.md, Sync, "Bounds"). The
// connection fields are used by Serve only.
type Limits struct {
	// MaxConns bounds connections in all; the default is derived from the
	// process's file descriptor limit (ConnsForFDLimit), so the server never
	// runs out of descriptors by accepting.
	MaxConns int
	// MaxConnsPerSource bounds connections from one source address.
	MaxConnsPerSource int
	// MaxHalfOpen bounds connections that have not finished the handshake,
	// in all; when it is reached a new connection takes the place of the
	// oldest half-open one of the source holding the most.
	MaxHalfOpen int
	// MaxHalfOpenPerSource bounds half-open connections of one source; a new
	// one takes the place of that source's oldest.
	MaxHalfOpenPerSource int
	// HandshakeTimeout: a peer that has not finished the handshake in this
	// time is dropped, however it paces its bytes.
	HandshakeTimeout time.Duration
	// MaxLifetime ends a session this old, whatever it does (live peers
	// reconnect).
	MaxLifetime time.Duration
	// SessionBuffer bounds the received message bytes one session holds
	// (read, queued or being stored); reading waits beyond it, so a fast
	// sender is slowed, not buffered.
	SessionBuffer int64
	// TotalBuffer bounds the same in all sessions that share a Guard.
	TotalBuffer int64
	// BackoffMin and BackoffMax: after a card that fails verification, the
	// peer identity and its source are refused for BackoffMin, doubling with
	// each further failure up to BackoffMax.
	BackoffMin, BackoffMax time.Duration
}

// Quota bounds what one peer may push for storing: new logs (logs this store
// held no card of), cards and card bytes, per session and per peer identity
// within a window. A zero field is unlimited. Cards of logs the policy does
// not take from the peer are dropped unread and do not count.
type Quota struct {
	SessionLogs  int
	SessionCards int
	SessionBytes int64
	Window       time.Duration
	WindowLogs   int
	WindowCards  int
	WindowBytes  int64
}

// Defaults (ARCHITECTURE.md, Sync, "Bounds", states each).
const (
	DefaultMaxConnsPerSource    = 8
	DefaultMaxHalfOpen          = 32
	DefaultMaxHalfOpenPerSource = 4
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultMaxLifetime          = time.Hour
	DefaultSessionBuffer        = maxMsgHold
	DefaultTotalBuffer          = 64 << 20
	DefaultBackoffMin           = time.Second
	DefaultBackoffMax           = 10 * time.Minute
	// MaxConnsCap is the most connections the fd-derived default allows.
	MaxConnsCap = 64
	// fdReserve is how many descriptors are kept for the store, logs and
	// the process itself before any are given to connections.
	fdReserve = 48
	// maxRemembered bounds the backoff and quota tables.
	maxRemembered = 4096
	// maxMsgHold is the most one received message holds (length prefix
	// included): a session's buffer is never smaller.
	maxMsgHold = proto.MaxMessage + 4
)

// DefaultQuota is what every session enforces when Options.Quota is nil:
// sessions Serve answers, outgoing ones (Dial, Run as initiator), stdio
// and pipe sessions, and the rounds of a Link.
func DefaultQuota() Quota {
	return Quota{
		SessionLogs: 500, SessionCards: 50_000, SessionBytes: 64 << 20,
		Window: time.Hour, WindowLogs: 2_000, WindowCards: 200_000, WindowBytes: 256 << 20,
	}
}

// guardFor is the Guard a session (or Serve's sessions) uses: opt.Guard, or
// a new one with opt.Quota, DefaultQuota when that is nil.
func guardFor(opt Options, lim Limits) *Guard {
	if opt.Guard != nil {
		return opt.Guard
	}
	q := DefaultQuota()
	if opt.Quota != nil {
		q = *opt.Quota
	}
	return NewGuard(lim, q)
}

// ConnsForFDLimit is the default connection cap for a process that may open
// nofile descriptors: what is left after a reserve for the store and the
// process, at most MaxConnsCap, at least 1. A connection uses one descriptor.
func ConnsForFDLimit(nofile uint64) int {
	if nofile <= fdReserve+1 {
		return 1
	}
	n := nofile - fdReserve
	if n > MaxConnsCap {
		return MaxConnsCap
	}
	return int(n)
}

// FDLimit is the process's soft limit on open file descriptors (0 if unknown).
func FDLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxConns <= 0 {
		if n := FDLimit(); n > 0 {
			l.MaxConns = ConnsForFDLimit(n)
		} else {
			l.MaxConns = MaxConnsCap
		}
	}
	def(&l.MaxConnsPerSource, DefaultMaxConnsPerSource)
	def(&l.MaxHalfOpen, min(DefaultMaxHalfOpen, max(1, l.MaxConns/2)))
	def(&l.MaxHalfOpenPerSource, min(DefaultMaxHalfOpenPerSource, l.MaxHalfOpen))
	dur(&l.HandshakeTimeout, DefaultHandshakeTimeout)
	dur(&l.MaxLifetime, DefaultMaxLifetime)
	def64(&l.SessionBuffer, DefaultSessionBuffer)
	def64(&l.TotalBuffer, DefaultTotalBuffer)
	dur(&l.BackoffMin, DefaultBackoffMin)
	dur(&l.BackoffMax, DefaultBackoffMax)
	l.SessionBuffer = max(l.SessionBuffer, maxMsgHold)
	l.TotalBuffer = max(l.TotalBuffer, l.SessionBuffer)
	return l
}

// DefaultLimits are the limits a zero Limits stands for in this process.
func DefaultLimits() Limits { return Limits{}.withDefaults() }

// Errors of the guard.
var (
	// ErrRefused: this side refused the peer (backed off, over quota, a bad
	// card, the session's lifetime); the peer was told why.
	ErrRefused = errors.New("sync: peer refused")
	// ErrPeerRefused: the peer refused this side and said why.
	ErrPeerRefused = errors.New("sync: refused by peer")
)

// Refusal is why one side ends a session on purpose; it travels to the peer
// as a Refuse message. Retry, when set, is how long the peer should wait.
type Refusal struct {
	Reason string
	Retry  time.Duration
	// Penalize: the refusal is for a card whose signature failed; it backs
	// the peer off.
	Penalize bool
	// Remote: the peer sent this refusal.
	Remote bool
}

func (r *Refusal) Error() string {
	s := r.Reason
	if r.Retry > 0 {
		s += fmt.Sprintf(" (retry after %v)", r.Retry.Round(time.Second))
	}
	if r.Remote {
		return fmt.Sprintf("%v: %s", ErrPeerRefused, s)
	}
	return fmt.Sprintf("%v: %s", ErrRefused, s)
}

func (r *Refusal) Unwrap() error {
	if r.Remote {
		return ErrPeerRefused
	}
	return ErrRefused
}

// Guard is what the sessions of one node share about their peers: the
// backoff of identities and sources that sent bad cards, each peer's quota
// window, and the budget of received bytes all sessions may hold. Serve
// makes one for its sessions when Options.Guard is nil; a node that also
// dials out passes the same Guard to both. Safe for concurrent use.
type Guard struct {
	lim   Limits
	quota Quota
	buf   *semaphore.Weighted
	now   func() time.Time

	mu      stdsync.Mutex
	backoff map[string]*backoffEntry
	windows map[key.ID]*window
}

type backoffEntry struct {
	level int
	until time.Time
}

type window struct {
	start       time.Time
	logs, cards int
	bytes       int64
}

// NewGuard makes a guard for limits and quota (zero fields take defaults).
func NewGuard(lim Limits, q Quota) *Guard {
	lim = lim.withDefaults()
	return &Guard{lim: lim, quota: q, buf: semaphore.NewWeighted(lim.TotalBuffer), now: time.Now,
		backoff: map[string]*backoffEntry{}, windows: map[key.ID]*window{}}
}

func identityKey(id key.ID) string { return "id:" + id.String() }
func sourceKey(src string) string  { return "src:" + src }

// BackedOff reports whether the peer identity is refused for now, and for
// how much longer.
func (g *Guard) BackedOff(id key.ID) (time.Duration, bool) { return g.backedOff(identityKey(id)) }

// SourceBackedOff is BackedOff for a source address ("" never is).
func (g *Guard) SourceBackedOff(src string) (time.Duration, bool) {
	if src == "" {
		return 0, false
	}
	return g.backedOff(sourceKey(src))
}

func (g *Guard) backedOff(k string) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.backoff[k]
	if e == nil {
		return 0, false
	}
	if d := e.until.Sub(g.now()); d > 0 {
		return d, true
	}
	return 0, false
}

// Penalize backs off the identity and its source (when known): the delay
// doubles with each failure from BackoffMin up to BackoffMax, and is
// forgotten after BackoffMax without a failure. It returns the delay.
func (g *Guard) Penalize(id key.ID, src string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := g.penalize(identityKey(id))
	if src != "" {
		g.penalize(sourceKey(src))
	}
	return d
}

func (g *Guard) penalize(k string) time.Duration {
	now := g.now()
	e := g.backoff[k]
	if e != nil && now.Sub(e.until) > g.lim.BackoffMax {
		e = nil // quiet for long enough: start again
	}
	if e == nil {
		if len(g.backoff) >= maxRemembered {
			g.evictBackoff(now)
		}
		e = &backoffEntry{}
		g.backoff[k] = e
	}
	d := g.lim.BackoffMin << min(e.level, 30)
	if d > g.lim.BackoffMax || d <= 0 {
		d = g.lim.BackoffMax
	}
	e.level++
	e.until = now.Add(d)
	return d
}

// evictBackoff drops expired entries, or else the one that ends soonest.
func (g *Guard) evictBackoff(now time.Time) {
	var soonest string
	for k, e := range g.backoff {
		if !e.until.After(now) {
			delete(g.backoff, k)
			continue
		}
		if soonest == "" || e.until.Before(g.backoff[soonest].until) {
			soonest = k
		}
	}
	if len(g.backoff) >= maxRemembered && soonest != "" {
		delete(g.backoff, soonest)
	}
}

// windowOf is peer's current quota window. Caller holds mu.
func (g *Guard) windowOf(peer key.ID) *window {
	now := g.now()
	w := g.windows[peer]
	if w != nil && g.quota.Window > 0 && now.Sub(w.start) >= g.quota.Window {
		w = nil
	}
	if w == nil {
		if len(g.windows) >= maxRemembered {
			var oldest key.ID
			var first = true
			for k, x := range g.windows {
				if first || x.start.Before(g.windows[oldest].start) {
					oldest, first = k, false
				}
			}
			delete(g.windows, oldest)
		}
		w = &window{start: now}
		g.windows[peer] = w
	}
	return w
}

// windowFull refuses a peer whose window quota is spent, before a session.
func (g *Guard) windowFull(peer key.ID) *Refusal {
	q := g.quota
	if q.Window <= 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.windowOf(peer)
	retry := q.Window - g.now().Sub(w.start)
	switch {
	case q.WindowLogs > 0 && w.logs >= q.WindowLogs,
		q.WindowCards > 0 && w.cards >= q.WindowCards,
		q.WindowBytes > 0 && w.bytes >= q.WindowBytes:
		return &Refusal{Reason: fmt.Sprintf("quota: this peer pushed its limit for %v (%d new logs, %d cards, %d bytes)",
			q.Window, q.WindowLogs, q.WindowCards, q.WindowBytes), Retry: retry}
	}
	return nil
}

// sessionQuota counts one session's pushes against the session and window
// quotas.
type sessionQuota struct {
	g           *Guard
	peer        key.ID
	logs, cards int
	bytes       int64
	seen        map[key.ID]bool
}

// charge counts cards offered for author (newLog: the store holds none of
// it) and refuses when a quota would be exceeded; nothing of a refused
// offer is stored.
func (q *sessionQuota) charge(author key.ID, newLog bool, cards int, bytes int64) *Refusal {
	lim := q.g.quota
	logs := 0
	if newLog && !q.seen[author] {
		logs = 1
	}
	over := func(what string, n, limit int64, per string) *Refusal {
		return &Refusal{Reason: fmt.Sprintf("quota: more than %d %s %s", limit, what, per)}
	}
	switch {
	case lim.SessionLogs > 0 && q.logs+logs > lim.SessionLogs:
		return over("new logs", int64(q.logs+logs), int64(lim.SessionLogs), "in one session")
	case lim.SessionCards > 0 && q.cards+cards > lim.SessionCards:
		return over("cards", int64(q.cards+cards), int64(lim.SessionCards), "in one session")
	case lim.SessionBytes > 0 && q.bytes+bytes > lim.SessionBytes:
		return over("card bytes", q.bytes+bytes, lim.SessionBytes, "in one session")
	}
	if lim.Window > 0 {
		g := q.g
		g.mu.Lock()
		w := g.windowOf(q.peer)
		retry := lim.Window - g.now().Sub(w.start)
		var r *Refusal
		switch {
		case lim.WindowLogs > 0 && w.logs+logs > lim.WindowLogs:
			r = over("new logs", int64(w.logs+logs), int64(lim.WindowLogs), fmt.Sprintf("per %v", lim.Window))
		case lim.WindowCards > 0 && w.cards+cards > lim.WindowCards:
			r = over("cards", int64(w.cards+cards), int64(lim.WindowCards), fmt.Sprintf("per %v", lim.Window))
		case lim.WindowBytes > 0 && w.bytes+bytes > lim.WindowBytes:
			r = over("card bytes", w.bytes+bytes, lim.WindowBytes, fmt.Sprintf("per %v", lim.Window))
		default:
			w.logs += logs
			w.cards += cards
			w.bytes += bytes
		}
		g.mu.Unlock()
		if r != nil {
			r.Retry = retry
			return r
		}
	}
	if logs == 1 {
		if q.seen == nil {
			q.seen = map[key.ID]bool{}
		}
		q.seen[author] = true
	}
	q.logs += logs
	q.cards += cards
	q.bytes += bytes
	return nil
}
