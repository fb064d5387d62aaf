package exec

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// checkGrant is what the executor asks of a grant body: the shape every
// reader agrees on (kinds.GrantBody.Validate). Whether it admits a bundle
// is kinds.GrantBody.Admits, the definition the plan and the reconciler
// share: a grant naming a service admits only a deploy as that service
// (DeployAs, from a placement), never a bare deploy.
func checkGrant(g *GrantBody) error {
	if err := g.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadGrant, err)
	}
	return nil
}

// As names the owner's service a peer runs as (a placement's replica);
// the zero value is a bare deploy.
type As struct {
	Owner   key.ID
	Service string
}

func subject(b *bundle.Bundle, as As) kinds.Subject {
	h := b.Hash()
	s := kinds.Subject{Peer: b.Peer().Bytes(), Bundle: h[:], Service: as.Service}
	if as.Service != "" {
		s.Owner = as.Owner.Bytes()
	}
	return s
}

// The bodies this package shares with the projections and the revocation
// code are defined once, in log/kinds.
type (
	GrantBody   = kinds.GrantBody
	RevokeBody  = kinds.RevokeBody
	ObserveBody = kinds.ObserveBody
	Usage       = kinds.Usage
)

// BundleBody is the body of a `bundle` card: the publication of a peer
// bundle by content hash (the bytes travel as a blob).
type BundleBody struct {
	Hash    []byte `cbor:"hash"`
	Name    string `cbor:"name"`
	Version string `cbor:"version"`
	Peer    []byte `cbor:"peer"`
	Size    uint64 `cbor:"size"`
}

// grant is a decoded grant card of this host.
type grant struct {
	id   card.ID
	seq  uint64
	body GrantBody
	peer key.ID
	bndl bundle.Hash
}

func (g *grant) expired(now time.Time) bool {
	return g.body.Expires != 0 && now.Unix() >= g.body.Expires
}

// grantIndex folds the host's own log into its grants and revocations. It is
// fed incrementally: cards are scanned from the last seen sequence number.
type grantIndex struct {
	// prove checks that a bundle's manifest peer is proven (Host.provePeer);
	// nil proves nothing.
	prove   func(*bundle.Bundle) error
	seen    uint64
	grants  map[card.ID]*grant
	order   []*grant // by seq
	revoked map[card.ID]string
}

func newGrantIndex() *grantIndex {
	return &grantIndex{grants: map[card.ID]*grant{}, revoked: map[card.ID]string{}}
}

// add folds one card of the host's log. Malformed grant or revoke bodies are
// ignored (they grant nothing); they were verified as cards already.
func (x *grantIndex) add(c *card.Card) {
	if c.Seq() > x.seen {
		x.seen = c.Seq()
	}
	switch c.Kind() {
	case card.KindGrant:
		var b GrantBody
		if c.DecodeBody(&b) != nil || checkGrant(&b) != nil {
			return
		}
		g := &grant{id: c.ID(), seq: c.Seq(), body: b}
		if b.Peer != nil {
			g.peer, _ = key.IDFromBytes(b.Peer)
		}
		if b.Bundle != nil {
			g.bndl, _ = bundle.HashFromBytes(b.Bundle)
		}
		x.grants[g.id] = g
		x.order = append(x.order, g)
	case card.KindRevoke:
		var b RevokeBody
		if c.DecodeBody(&b) != nil {
			return
		}
		id, err := card.IDFromBytes(b.Card)
		if err != nil {
			return
		}
		reason := b.Reason
		if reason == "" {
			reason = "no reason given"
		}
		// The reason names the revoke card: the decision and its card
		// travel together (the stopped peer's reason, its observe card,
		// the instance's log line, a refused call).
		x.revoked[id] = fmt.Sprintf("%s (revoke card %s)", reason, c.ID())
	case card.KindCRL:
		// A revocation list of the host's own cards withdraws them too.
		var b struct {
			Revoked [][]byte `cbor:"revoked"`
		}
		if c.DecodeBody(&b) != nil {
			return
		}
		for _, r := range b.Revoked {
			if id, err := card.IDFromBytes(r); err == nil {
				if _, ok := x.revoked[id]; !ok {
					x.revoked[id] = fmt.Sprintf("listed in revocation list (crl) card %s", c.ID())
				}
			}
		}
	}
}

// dead tells why a grant no longer allows anything ("" while it is live).
func (x *grantIndex) dead(g *grant, now time.Time) string {
	if r, ok := x.revoked[g.id]; ok {
		return fmt.Sprintf("grant %s revoked: %s", g.id, r)
	}
	if g.expired(now) {
		return fmt.Sprintf("grant %s expired at %s", g.id, time.Unix(g.body.Expires, 0).UTC().Format(time.RFC3339))
	}
	return ""
}

// match finds the newest live grant of this host that covers the bundle and
// allows what its manifest asks. With no covering live grant it returns
// ErrNoGrant; with covering grants that all allow less than the manifest
// asks, ErrExceedsGrant naming the first shortfall.
func (x *grantIndex) match(b *bundle.Bundle, as As, now time.Time) (*grant, error) {
	var shortfall, unproven error
	var deadWhy string
	proofDone := false
	subj := subject(b, as)
	for i := len(x.order) - 1; i >= 0; i-- {
		g := x.order[i]
		if g.body.Admits(subj) != "" {
			continue
		}
		// A grant by peer identity (and no hash) admits only code whose
		// peer is proven (a grant naming the hash consented to these exact
		// bytes; one naming only a service consented to what the owner
		// places, and DeployAs's caller checked the placement's author).
		if g.body.Bundle == nil && g.body.Peer != nil {
			if !proofDone {
				proofDone = true
				unproven = fmt.Errorf("%w: no proof was looked for", ErrUnprovenPeer)
				if x.prove != nil {
					unproven = x.prove(b)
				}
			}
			if unproven != nil {
				continue
			}
		}
		if why := x.dead(g, now); why != "" {
			if deadWhy == "" {
				deadWhy = why
			}
			continue
		}
		if err := allows(g, &b.Manifest); err != nil {
			if shortfall == nil {
				shortfall = err
			}
			continue
		}
		return g, nil
	}
	if shortfall != nil {
		return nil, shortfall
	}
	if unproven != nil {
		return nil, fmt.Errorf("%w for peer %s bundle %s: %w", ErrNoGrant, b.Peer(), b.Hash(), unproven)
	}
	if deadWhy != "" {
		return nil, fmt.Errorf("%w for peer %s bundle %s: %s", ErrNoGrant, b.Peer(), b.Hash(), deadWhy)
	}
	return nil, fmt.Errorf("%w for peer %s bundle %s", ErrNoGrant, b.Peer(), b.Hash())
}

// provePeer checks the manifest's peer claim against the cards this host
// holds: a `bundle` card naming the bundle's hash and peer must be signed by
// the peer's own key, or by an identity the peer's own log delegates to (its
// owner, who then speaks for it; kinds.Delegations, the same reading the
// trust rule uses). The peer's secret key is its publisher's, never the
// host's (ARCHITECTURE.md, Execution).
func (h *Host) provePeer(b *bundle.Bundle) error {
	p, hash := b.Peer(), b.Hash()
	var dels kinds.Delegations
	if publishes(h.cfg.Log, p, p, hash, &dels) {
		return nil
	}
	owners := dels.Live(p, h.cfg.Now().Unix())
	for _, o := range owners {
		if publishes(h.cfg.Log, o, p, hash, nil) {
			return nil
		}
	}
	return fmt.Errorf("%w: no bundle card for %s signed by %s or an owner it delegates to (%d known); publish it with 'sublog bundle publish FILE --as PEER'",
		ErrUnprovenPeer, hash, p, len(owners))
}

// publishes reports whether author's log holds a bundle card naming hash
// and peer; dels, when set, also folds the log's delegations.
func publishes(l Log, author, peer key.ID, hash bundle.Hash, dels *kinds.Delegations) bool {
	found := false
	_ = l.Scan(author, 1, func(c *card.Card) error {
		switch c.Kind() {
		case card.KindBundle:
			var bb BundleBody
			if c.DecodeBody(&bb) == nil && string(bb.Hash) == string(hash[:]) && string(bb.Peer) == string(peer.Bytes()) {
				found = true
			}
		case card.KindDelegate:
			var d kinds.DelegateBody
			if dels != nil && c.DecodeBody(&d) == nil {
				dels.Delegate(c.ID(), d)
			}
		case card.KindRevoke:
			var r kinds.RevokeBody
			if dels != nil && c.DecodeBody(&r) == nil {
				if id, err := card.IDFromBytes(r.Card); err == nil {
					dels.Withdraw(id)
				}
			}
		case card.KindCRL:
			var r kinds.CRLBody
			if dels != nil && c.DecodeBody(&r) == nil {
				for _, x := range r.Revoked {
					if id, err := card.IDFromBytes(x); err == nil {
						dels.Withdraw(id)
					}
				}
			}
		}
		if found {
			return io.EOF
		}
		return nil
	})
	return found
}

// allows checks that the manifest asks for no more than the grant gives.
func allows(g *grant, m *bundle.Manifest) error {
	for _, c := range m.Caps {
		if !slices.Contains(g.body.Caps, c) {
			return fmt.Errorf("%w: the manifest needs host functions %q, grant %s gives [%s]",
				ErrExceedsGrant, c, g.id, strings.Join(g.body.Caps, " "))
		}
	}
	type lim struct {
		name     string
		ask, max uint64
	}
	gl, ml := withDefaults(g.body.Limits), m.Limits
	for _, l := range []lim{
		{"memory", ml.Memory, gl.Memory},
		{"cpu_req_ms", ml.CPUReqMS, gl.CPUReqMS},
		{"cpu_total_ms", ml.CPUTotalMS, gl.CPUTotalMS},
		{"instances", ml.Instances, gl.Instances},
		{"disk", ml.Disk, gl.Disk},
	} {
		if l.max != 0 && l.ask > l.max {
			return fmt.Errorf("%w: the manifest asks %s %d, grant %s allows %d", ErrExceedsGrant, l.name, l.ask, g.id, l.max)
		}
	}
	return nil
}

// Defaults for limits neither the grant nor the manifest states.
var Defaults = bundle.Limits{
	Memory:    64 << 20,
	CPUReqMS:  1000,
	Instances: 1,
	Disk:      1 << 20,
	// CPUTotalMS: no total unless stated.
}

func withDefaults(l bundle.Limits) bundle.Limits { return fillFrom(l, Defaults) }

// effective gives the limits enforced for a bundle under a grant: what the
// manifest asks (never more than the grant allows, see allows), and the
// grant's (or the defaults) where the manifest is silent.
func effective(g *grant, m *bundle.Manifest) bundle.Limits {
	return fillFrom(m.Limits, withDefaults(g.body.Limits))
}

// fillFrom returns l with each unset (zero) limit taken from d.
func fillFrom(l, d bundle.Limits) bundle.Limits {
	if l.Memory == 0 {
		l.Memory = d.Memory
	}
	if l.CPUReqMS == 0 {
		l.CPUReqMS = d.CPUReqMS
	}
	if l.CPUTotalMS == 0 {
		l.CPUTotalMS = d.CPUTotalMS
	}
	if l.Instances == 0 {
		l.Instances = d.Instances
	}
	if l.Disk == 0 {
		l.Disk = d.Disk
	}
	return l
}
