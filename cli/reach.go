package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/discovery"
)

// reachFlags are the flags of every command that reaches a peer by its
// identity (sync, connect, gateway): where to look for its addresses.
type reachFlags struct {
	tokens, relays, dns []string
	dnsServer           string
	noCache             bool
}

func (f *reachFlags) add(c *cobra.Command) {
	c.Flags().StringArrayVar(&f.tokens, "token", nil, "an out-of-band token of the peer (repeatable; 'sublog token' prints one)")
	c.Flags().StringArrayVar(&f.relays, "pkarr", nil, "a PKARR relay URL to look the identity up on (repeatable; none is contacted unless named)")
	c.Flags().StringArrayVar(&f.dns, "dns", nil, "a domain whose _sublog TXT records hold hints (repeatable)")
	c.Flags().StringVar(&f.dnsServer, "dns-server", "", "DNS server HOST:PORT (default: the system's)")
	c.Flags().BoolVar(&f.noCache, "no-cache", false, "neither read nor write the home's discovery cache")
}

// reachTarget is the identity a command is to reach, and any addresses
// given with it (IDENTITY@HOST:PORT): hints, tried first, never trusted.
type reachTarget struct {
	id     key.ID
	direct []string
}

// isAddrArg tells a bare HOST:PORT argument from an identity argument
// (a name, a prefix, a full identity, or IDENTITY@HOST:PORT).
func isAddrArg(s string) bool { return !strings.Contains(s, "@") && strings.Contains(s, ":") }

// parseReach reads the peer a command is to reach: arg (an identity as
// every command takes it, or IDENTITY@HOST:PORT), or, when arg is empty,
// the identity the tokens name (all of them the same one).
func (a *App) parseReach(arg string, f *reachFlags) (reachTarget, error) {
	var t reachTarget
	for _, tok := range f.tokens {
		tk, err := discovery.DecodeToken(tok, a.Now())
		if err != nil {
			return t, rejected(fmt.Errorf("--token: %w", err), "ask the peer for a fresh token ('sublog token' there)")
		}
		if t.id.IsZero() {
			t.id = tk.ID()
		} else if tk.ID() != t.id {
			return t, usage(fmt.Errorf("--token: the tokens name two identities (%s, %s)", t.id.Short(), tk.ID().Short()))
		}
	}
	if arg == "" {
		if t.id.IsZero() {
			return t, usage(errors.New("give the peer's IDENTITY or a --token"))
		}
		return t, nil
	}
	name := arg
	if i := strings.LastIndexByte(arg, '@'); i >= 0 {
		addr := arg[i+1:]
		if err := discovery.CheckAddr(addr); err != nil {
			return t, usage(fmt.Errorf("%q: want IDENTITY@HOST:PORT: %v", arg, err))
		}
		name, t.direct = arg[:i], []string{addr}
	}
	id, err := a.identityArg(name, hostID)
	if err != nil {
		if isMalformed(err) {
			return t, usage(fmt.Errorf("IDENTITY: %w", err))
		}
		return t, err
	}
	if !t.id.IsZero() && id != t.id {
		return t, usage(fmt.Errorf("--token names %s, not %s", t.id.Short(), id.Short()))
	}
	t.id = id
	return t, nil
}

// pinned is the channel's Accept for a connection made to reach want at
// addr: the peer there must prove want, and nothing else is accepted (an
// address is a hint; the identity proven in the channel is the fact).
func pinned(want key.ID, addr string) func(key.ID) error {
	return func(p key.ID) error {
		if p != want {
			return fmt.Errorf("the peer at %s proved another identity than %s: refused (an address is only a hint)", addr, want)
		}
		return nil
	}
}

// reach finds t.id: it calls try with each candidate address in turn (the
// direct ones, then the resolver's: tokens, the home's cache, PKARR
// relays, DNS) until one returns nil. try must return nil only when the
// peer at the address proved t.id on the connection it keeps (pinned), so
// the connection that proves the identity is the one used.
func (a *App) reach(ctx context.Context, t reachTarget, f *reachFlags, try discovery.ProverFunc) (*discovery.Result, error) {
	var errs []error
	for _, addr := range t.direct {
		err := try(ctx, addr, t.id)
		if err == nil {
			return &discovery.Result{ID: t.id, Addr: addr, Source: "argument", Attempts: []discovery.Attempt{}}, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	for _, u := range f.relays {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, usage(fmt.Errorf("--pkarr %q: want an http:// or https:// relay URL", u))
		}
	}
	r := &discovery.Resolver{Tokens: f.tokens, Relays: f.relays, DNSNames: f.dns,
		DNS: &discovery.DNSClient{Server: f.dnsServer}, Prover: try, Now: a.Now}
	if !f.noCache {
		c, err := discoveryCache(a)
		if err != nil {
			return nil, rejected(err, "")
		}
		r.Cache = c
	}
	if len(t.direct) > 0 && len(r.Tokens)+len(r.Relays)+len(r.DNSNames) == 0 {
		if _, ok := r.Cache.Lookup(t.id); !ok {
			return nil, rejected(errors.Join(errs...), "")
		}
	}
	res, err := r.Resolve(ctx, t.id)
	if err != nil {
		if res != nil {
			for _, at := range res.Attempts {
				for _, c := range at.Candidates {
					if c.Outcome == discovery.Rejected {
						fmt.Fprintf(a.Err(), "sublog: %s (%s): %s\n", c.Addr, at.Source, c.Reason)
					}
				}
			}
		}
		return res, rejected(errors.Join(append(errs, err)...),
			"give a fresh token with --token, a relay with --pkarr URL, a domain with --dns NAME, or IDENTITY@HOST:PORT")
	}
	return res, nil
}
