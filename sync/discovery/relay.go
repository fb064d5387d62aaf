package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sublog/sublog/log/key"
)

// RelayClient talks to PKARR relays over HTTP: PUT /<key> publishes a
// payload, GET /<key> fetches one. The zero value uses a client with a
// 10-second timeout.
type RelayClient struct {
	HTTP *http.Client
}

var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

func (c *RelayClient) http() *http.Client {
	if c != nil && c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

func relayURL(base string, id key.ID) string {
	return strings.TrimRight(base, "/") + "/" + id.String()
}

// Put publishes p to the relay at base. A relay that already holds a newer
// packet answers 409, reported as ErrStale.
func (c *RelayClient) Put(ctx context.Context, base string, p *SignedPacket) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, relayURL(base, p.ID()), bytes.NewReader(p.Payload()))
	if err != nil {
		return fmt.Errorf("relay %s: %w", base, err)
	}
	req.Header.Set("Content-Type", "application/pkarr.org/relays#payload")
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("relay %s: %w", base, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNoContent:
		return nil
	case resp.StatusCode == http.StatusConflict:
		return fmt.Errorf("%w: relay %s holds a newer packet for %s", ErrStale, base, p.ID())
	default:
		return fmt.Errorf("relay %s refused the packet: %s: %s", base, resp.Status, bytes.TrimSpace(msg))
	}
}

// Get fetches and verifies the packet for id from the relay at base. The
// payload must be signed by id: a relay cannot substitute another key's
// packet, alter it, or make one up.
func (c *RelayClient) Get(ctx context.Context, base string, id key.ID) (*SignedPacket, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, relayURL(base, id), nil)
	if err != nil {
		return nil, fmt.Errorf("relay %s: %w", base, err)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("relay %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%w: relay %s has no packet for %s", ErrNotFound, base, id)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("relay %s: %s", base, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("relay %s: %w", base, err)
	}
	return ParsePayload(id, body)
}

// Relay is a small PKARR relay (the signaling role): it verifies every
// packet it is given, keeps the newest per key in memory, and serves it
// back. It never forwards to the DHT. Create with NewRelay.
type Relay struct {
	max     int
	now     func() time.Time
	putRate rate.Limit
	burst   int

	mu       stdsync.Mutex
	m        map[[key.IDSize]byte]*relayEntry
	limiters map[string]*rate.Limiter // per client IP, for PUT
}

type relayEntry struct {
	p    *SignedPacket
	seen time.Time
}

// RelayConfig sets a relay's limits; the zero value works.
type RelayConfig struct {
	MaxKeys int              // packets kept at most (default 100000; the oldest seen is evicted)
	Now     func() time.Time // clock (default time.Now)
	// PutRate and PutBurst bound the PUTs one client IP may make (default
	// 5 per second, bursts of 20); beyond them the relay answers 429.
	PutRate  float64
	PutBurst int
}

// NewRelay returns an empty relay.
func NewRelay(cfg RelayConfig) *Relay {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PutRate <= 0 {
		cfg.PutRate = 5
	}
	if cfg.PutBurst <= 0 {
		cfg.PutBurst = 20
	}
	return &Relay{max: cfg.MaxKeys, now: cfg.Now, putRate: rate.Limit(cfg.PutRate), burst: cfg.PutBurst,
		m: map[[key.IDSize]byte]*relayEntry{}, limiters: map[string]*rate.Limiter{}}
}

// ServeHTTP implements the PKARR relay API: GET and PUT /<z-base-32 key>.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, PUT, OPTIONS")
	id, err := key.ParseID(strings.TrimPrefix(req.URL.Path, "/"))
	if err != nil {
		http.Error(w, "invalid key: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch req.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet, http.MethodHead:
		r.mu.Lock()
		e := r.m[id.Array()]
		r.mu.Unlock()
		if e == nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		body := e.p.Payload()
		h.Set("Content-Type", "application/pkarr.org/relays#payload")
		h.Set("Cache-Control", "public, max-age="+strconv.FormatUint(uint64(e.p.MinTTL()), 10))
		h.Set("Last-Modified", e.p.Time().Format(http.TimeFormat))
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if req.Method == http.MethodGet {
			w.Write(body)
		}
	case http.MethodPut:
		if !r.allow(req.RemoteAddr) {
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxPayload))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, fmt.Sprintf("payload over %d bytes", MaxPayload), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		p, err := ParsePayload(id, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		status, msg := r.put(p, req.Header.Get("If-Match"))
		if status != http.StatusNoContent {
			http.Error(w, msg, status)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// put stores p unless a newer (or different, same-time) packet is held, or
// the If-Match compare-and-swap fails.
func (r *Relay) put(p *SignedPacket, ifMatch string) (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := p.ID().Array()
	cur := r.m[k]
	if ifMatch != "" {
		want, err := strconv.ParseUint(ifMatch, 10, 64)
		if err != nil {
			return http.StatusBadRequest, "If-Match is not a timestamp"
		}
		if cur == nil || cur.p.ts != want {
			return http.StatusPreconditionFailed, "If-Match does not name the current packet"
		}
	}
	if cur != nil {
		switch {
		case p.ts < cur.p.ts:
			return http.StatusConflict, "a newer packet is held for this key"
		case p.ts == cur.p.ts && !bytes.Equal(p.packet, cur.p.packet):
			return http.StatusConflict, "a different packet with the same timestamp is held for this key"
		}
	}
	if cur == nil && len(r.m) >= r.max {
		r.evictOldest()
	}
	r.m[k] = &relayEntry{p: p, seen: r.now()}
	return http.StatusNoContent, ""
}

// allow takes a PUT token for the client's IP. The table of limiters is
// dropped wholesale when it grows past 10000 addresses (a flood of sources
// then only resets their budgets).
func (r *Relay) allow(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.limiters[host]
	if l == nil {
		if len(r.limiters) >= 10000 {
			r.limiters = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(r.putRate, r.burst)
		r.limiters[host] = l
	}
	return l.AllowN(r.now(), 1)
}

func (r *Relay) evictOldest() {
	var oldest [key.IDSize]byte
	var t time.Time
	first := true
	for k, e := range r.m {
		if first || e.seen.Before(t) {
			oldest, t, first = k, e.seen, false
		}
	}
	delete(r.m, oldest)
}

// Len is the number of keys held.
func (r *Relay) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}
