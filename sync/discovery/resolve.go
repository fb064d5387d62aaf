package discovery

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Sources, in the order a Resolver tries them.
const (
	SourceToken = "token"
	SourceCache = "cache"
	SourcePKARR = "pkarr"
	SourceDHT   = "dht"
	SourceDNS   = "dns"
)

// Outcomes of an attempt or a candidate.
const (
	Accepted = "accepted" // a candidate proved the identity
	Rejected = "rejected" // the hint or every candidate failed a check
	Empty    = "empty"    // the source had nothing for the identity
	Failed   = "error"    // the source could not be asked
	Skipped  = "skipped"  // a candidate already tried in this resolution
)

// Resolver finds a proven address for an identity. Configure the sources
// it may use; unset sources are not tried. It holds no state of its own
// beyond the Cache.
type Resolver struct {
	Tokens   []string     // out-of-band tokens, tried first
	Relays   []string     // PKARR relay base URLs
	DNSNames []string     // domains with _sublog TXT hints
	DHT      *DHT         // Mainline DHT node, tried after the relays; nil: not used
	Relay    *RelayClient // nil: default client
	DNS      *DNSClient   // nil: system resolver
	Prover   Prover       // required: proves each candidate
	Cache    *Cache       // nil: no caching and no rollback memory across runs
	Now      func() time.Time
	// CacheTTL caps how long a proven token or DNS result is cached (default 1 h).
	CacheTTL time.Duration
}

// Hint is what a source gave: candidates, not facts.
type Hint struct {
	Addrs   []string  `json:"addrs,omitempty"`
	Profile string    `json:"profile,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	// Timestamp is the PKARR packet's time, for PKARR hints.
	Timestamp time.Time `json:"timestamp,omitzero"`
}

// Candidate is one address tried.
type Candidate struct {
	Addr    string `json:"addr"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

// Attempt is one source tried: what it gave and why it was accepted or rejected.
type Attempt struct {
	Source     string      `json:"source"`
	Where      string      `json:"where,omitempty"`
	Outcome    string      `json:"outcome"`
	Reason     string      `json:"reason,omitempty"`
	Gave       *Hint       `json:"gave,omitempty"`
	Candidates []Candidate `json:"candidates,omitempty"`
	err        error
}

// Err is the error behind a rejected or failed attempt (nil otherwise).
func (a *Attempt) Err() error { return a.err }

// Result of a resolution. On failure ID is set, Addr empty, and Attempts
// still says what each source gave.
type Result struct {
	ID       key.ID    `json:"identity"`
	Addr     string    `json:"addr,omitempty"`
	Source   string    `json:"source,omitempty"`
	Where    string    `json:"where,omitempty"`
	Profile  string    `json:"profile,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
	Attempts []Attempt `json:"attempts"`
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

type run struct {
	r     *Resolver
	ctx   context.Context
	want  key.ID
	res   *Result
	tried map[string]error // addresses already tried in this run
	pkarr uint64           // newest PKARR timestamp seen (cache and this run)
}

// Resolve tries, in order: the tokens, the cache, each PKARR relay, the
// Mainline DHT (when configured), each DNS name. The first candidate address
// that proves want wins. It returns an error wrapping ErrUnreachable when no
// source gave a proven address; the Result is returned in both cases. It
// never returns an address that has not proved want, and saves the cache
// before returning (a cache that cannot be saved is an error: the rollback
// floor must not be lost silently).
func (r *Resolver) Resolve(ctx context.Context, want key.ID) (*Result, error) {
	if r.Prover == nil {
		return nil, errors.New("discovery: resolver has no prover")
	}
	u := &run{r: r, ctx: ctx, want: want, res: &Result{ID: want, Attempts: []Attempt{}}, tried: map[string]error{}}
	if e, ok := r.Cache.Lookup(want); ok {
		u.pkarr = e.PkarrTS
	}
	done := u.tokens() || u.cache() || u.relays() || u.dht() || u.dns()
	saveErr := r.Cache.Save()
	if !done {
		if err := ctx.Err(); err != nil {
			return u.res, fmt.Errorf("%w: %s: %w", ErrUnreachable, want, err)
		}
		return u.res, fmt.Errorf("%w: %s: %s", ErrUnreachable, want, u.summary())
	}
	if saveErr != nil {
		return u.res, saveErr
	}
	return u.res, nil
}

func (u *run) summary() string {
	if len(u.res.Attempts) == 0 {
		return "no discovery source was given (use a token, a PKARR relay or a DNS name)"
	}
	var parts []string
	for _, a := range u.res.Attempts {
		s := a.Source
		if a.Where != "" {
			s += " " + a.Where
		}
		parts = append(parts, s+": "+a.Outcome+" ("+a.Reason+")")
	}
	return strings.Join(parts, "; ")
}

// fail records an attempt that gave no usable hint, or whose candidates all failed.
func (u *run) fail(a Attempt, outcome string, err error) bool {
	a.Outcome, a.Reason, a.err = outcome, err.Error(), err
	u.res.Attempts = append(u.res.Attempts, a)
	return false
}

// try proves each of h's addresses in order; the first that proves want
// becomes the result.
func (u *run) try(a Attempt, h Hint, cacheUntil time.Time) bool {
	gave := h // as the source gave it; h.Expires may be capped below
	a.Gave = &gave
	if len(h.Addrs) == 0 {
		return u.fail(a, Empty, errors.New("the hint names no address"))
	}
	for _, addr := range h.Addrs {
		if prev, ok := u.tried[addr]; ok {
			a.Candidates = append(a.Candidates, Candidate{Addr: addr, Outcome: Skipped, Reason: "already failed: " + prev.Error()})
			continue
		}
		if err := u.ctx.Err(); err != nil {
			return u.fail(a, Failed, err)
		}
		err := u.r.Prover.Prove(u.ctx, addr, u.want)
		if err != nil {
			u.tried[addr] = err
			a.Candidates = append(a.Candidates, Candidate{Addr: addr, Outcome: Rejected, Reason: err.Error()})
			continue
		}
		a.Candidates = append(a.Candidates, Candidate{Addr: addr, Outcome: Accepted, Reason: "the peer proved " + u.want.String()})
		a.Outcome, a.Reason = Accepted, "a candidate proved the identity"
		u.res.Attempts = append(u.res.Attempts, a)
		now := u.r.now()
		if h.Expires.IsZero() || cacheUntil.Before(h.Expires) {
			h.Expires = cacheUntil
		}
		u.res.Addr, u.res.Source, u.res.Where, u.res.Profile, u.res.Expires = addr, a.Source, a.Where, h.Profile, h.Expires
		source := a.Source
		if source == SourceCache {
			source = a.Where // keep naming where the hint first came from
		}
		u.r.Cache.Remember(u.want, addr, source, h.Profile, now, h.Expires)
		return true
	}
	a.Outcome, a.Reason = Rejected, "no candidate proved the identity"
	a.err = fmt.Errorf("%w: no candidate of %s proved %s", ErrProof, a.Source, u.want)
	u.res.Attempts = append(u.res.Attempts, a)
	return false
}

func (u *run) cacheTTL() time.Duration {
	if u.r.CacheTTL > 0 {
		return u.r.CacheTTL
	}
	return time.Hour
}

func profileString(id card.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// token decodes a token and checks it against want and now.
func (u *run) token(text string) (*Token, error) {
	t, err := DecodeToken(text, u.r.now())
	if err != nil {
		return nil, err
	}
	if t.ID() != u.want {
		return nil, fmt.Errorf("%w: the token is for %s, not %s", ErrWrongIdentity, t.ID(), u.want)
	}
	return t, nil
}

func tokenToHint(t *Token) Hint {
	return Hint{Addrs: t.Addrs(), Profile: profileString(t.Profile()), Expires: t.Expires()}
}

func (u *run) tokens() bool {
	for i, text := range u.r.Tokens {
		a := Attempt{Source: SourceToken, Where: fmt.Sprintf("#%d", i+1)}
		tok, err := u.token(text)
		if err != nil {
			u.fail(a, Rejected, err)
			continue
		}
		if u.try(a, tokenToHint(tok), u.r.now().Add(u.cacheTTL())) {
			return true
		}
	}
	return false
}

func (u *run) cache() bool {
	e, ok := u.r.Cache.Lookup(u.want)
	if !ok || e.Addr == "" {
		return false
	}
	a := Attempt{Source: SourceCache, Where: e.Source}
	now := u.r.now()
	if !now.Before(e.Expires) {
		u.r.Cache.Forget(u.want)
		return u.fail(a, Rejected, fmt.Errorf("%w: cached result expired at %s", ErrExpired, e.Expires.Format(time.RFC3339)))
	}
	if u.try(a, Hint{Addrs: []string{e.Addr}, Profile: e.Profile, Expires: e.Expires}, e.Expires) {
		return true
	}
	u.r.Cache.Forget(u.want)
	return false
}

func (u *run) relays() bool {
	for _, base := range u.r.Relays {
		p, err := u.r.Relay.Get(u.ctx, base, u.want)
		if u.packet(Attempt{Source: SourcePKARR, Where: base}, p, err) {
			return true
		}
	}
	return false
}

func (u *run) dht() bool {
	if u.r.DHT == nil {
		return false
	}
	p, err := u.r.DHT.Get(u.ctx, u.want)
	return u.packet(Attempt{Source: SourceDHT, Where: "mainline"}, p, err)
}

// packet judges a PKARR packet from a relay or the DHT: refused when older
// than one already seen (no rollback), else its records are the hint.
func (u *run) packet(a Attempt, p *SignedPacket, err error) bool {
	if err != nil {
		outcome := Rejected
		switch {
		case errors.Is(err, ErrNotFound):
			outcome = Empty
		case !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge):
			outcome = Failed
		}
		return u.fail(a, outcome, err)
	}
	if p.Timestamp() < u.pkarr {
		return u.fail(a, Rejected, fmt.Errorf("%w: packet of %s is older than one already seen (%s)", ErrStale,
			p.Time().Format(time.RFC3339Nano), time.UnixMicro(int64(u.pkarr)).UTC().Format(time.RFC3339Nano)))
	}
	u.pkarr = p.Timestamp()
	u.r.Cache.SeePacket(u.want, p.Timestamp())
	rec, err := p.Record()
	if err != nil {
		return u.fail(a, Rejected, err)
	}
	ttl := time.Duration(p.MinTTL()) * time.Second
	h := Hint{Addrs: rec.Addrs, Profile: profileString(rec.Profile), Timestamp: p.Time()}
	return u.try(a, h, u.r.now().Add(ttl))
}

func (u *run) dns() bool {
	for _, domain := range u.r.DNSNames {
		name := HintName(domain)
		a := Attempt{Source: SourceDNS, Where: strings.TrimSuffix(name, ".")}
		txts, err := u.r.DNS.TXT(u.ctx, name)
		if err != nil {
			outcome := Failed
			if errors.Is(err, ErrNotFound) {
				outcome = Empty
			} else if errors.Is(err, ErrMalformed) {
				outcome = Rejected
			}
			u.fail(a, outcome, err)
			continue
		}
		// A domain may list several identities: use the records for want,
		// newest first (a newer hint supersedes an older one); say why
		// every other record was passed over.
		var reasons []string
		var hints []*Token
		for _, txt := range txts {
			if !strings.HasPrefix(strings.TrimSpace(txt), TokenPrefix) {
				continue
			}
			tok, err := u.token(txt)
			if err != nil {
				reasons = append(reasons, err.Error())
				continue
			}
			hints = append(hints, tok)
		}
		sort.SliceStable(hints, func(i, j int) bool { return hints[i].Issued().After(hints[j].Issued()) })
		for _, tok := range hints {
			if u.try(a, tokenToHint(tok), u.r.now().Add(u.cacheTTL())) {
				return true
			}
			a.Candidates = nil
		}
		if len(hints) == 0 {
			err := fmt.Errorf("%w: no hint for %s among %d TXT records", ErrNotFound, u.want, len(txts))
			if len(reasons) > 0 {
				err = fmt.Errorf("%w: no valid hint for %s: %s", ErrWrongIdentity, u.want, strings.Join(reasons, "; "))
				u.fail(a, Rejected, err)
			} else {
				u.fail(a, Empty, err)
			}
		}
	}
	return false
}
