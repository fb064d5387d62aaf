// Package reconcile owns the deterministic part of reconciliation across
// hosts (ARCHITECTURE.md, Reconciliation): folding the card set (intent,
// profiles, grants, revocations, delegations, placements, host-lost cards
// and every host's newest card as its heartbeat) into the placements a
// service controller should write, and the replicas a host should run. It
// is pure: no clock, no randomness, no I/O; time enters only as the `now`
// of a pass, and only to judge leases and grant expiry.
package reconcile

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
	"github.com/sublog/sublog/log/units"
	"github.com/sublog/sublog/projections"
)

// DefaultLease is how long (seconds) a controller waits without hearing
// from a host before it declares the host lost; an intent sets its own
// with `policy: {lease: 45s}`.
const DefaultLease = 30

// ErrBadBody: a placement or host-lost card whose body does not decode.
var ErrBadBody = errors.New("reconcile: card body refused")

// DecodePlacement strictly decodes and checks a placement card's body.
func DecodePlacement(c *card.Card) (*kinds.PlacementBody, error) {
	if c.Kind() != kinds.KindPlacement {
		return nil, fmt.Errorf("%w: kind %q is not %s", ErrBadBody, c.Kind(), kinds.KindPlacement)
	}
	var b kinds.PlacementBody
	if err := c.DecodeBody(&b); err != nil {
		return nil, fmt.Errorf("%w: placement: %w", ErrBadBody, err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	return &b, nil
}

// DecodeHostLost strictly decodes and checks a host-lost card's body.
func DecodeHostLost(c *card.Card) (*kinds.HostLostBody, error) {
	if c.Kind() != kinds.KindHostLost {
		return nil, fmt.Errorf("%w: kind %q is not %s", ErrBadBody, c.Kind(), kinds.KindHostLost)
	}
	var b kinds.HostLostBody
	if err := c.DecodeBody(&b); err != nil {
		return nil, fmt.Errorf("%w: host-lost: %w", ErrBadBody, err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	return &b, nil
}

type svcKey struct {
	owner   key.ID
	service string
}

func (k svcKey) less(o svcKey) bool {
	if c := k.owner.Compare(o.owner); c != 0 {
		return c < 0
	}
	return k.service < o.service
}

type replicaKey struct {
	svcKey
	replica uint64
}

type grantRec struct {
	id     card.ID
	body   kinds.GrantBody
	author key.ID
}

type placeRec struct {
	id     card.ID
	author key.ID
	body   kinds.PlacementBody
	host   key.ID
}

// newer is the merge rule of placements: the higher epoch wins, and
// between two placements of one epoch (two controllers writing during a
// partition) the smaller card ID.
func (p *placeRec) newer(o *placeRec) bool {
	if p.body.Epoch != o.body.Epoch {
		return p.body.Epoch > o.body.Epoch
	}
	return string(p.id[:]) < string(o.id[:])
}

type lossRec struct {
	id     card.ID
	author key.ID
	ts     int64
	body   kinds.HostLostBody
}

type delegRec struct {
	id       card.ID
	device   key.ID
	services []string
	until    int64
}

// State is the fold of a set of verified cards. Add is incremental and its
// result depends only on the set of cards added (each author's in chain
// order, as the store delivers them), never on arrival order across
// authors. It keeps, per key, only what a pass reads (the newest profile,
// the winning placement of each author per replica, the newest card time
// of each identity), so a pass costs the same however long the history.
type State struct {
	ps       *projections.State
	svcs     []svc // cached services(); nil or dirty: recompute
	dirty    bool
	profiles map[key.ID]*card.Card
	pbody    map[key.ID]*projections.ProfileBody
	grants   map[key.ID][]*grantRec // by host, in ID order
	revoked  map[card.ID][]key.ID   // card -> authors of revokes/crl entries naming it
	heard    map[key.ID]int64       // newest card time per author
	places   map[replicaKey]map[key.ID]*placeRec
	maxEpoch map[replicaKey]uint64
	losses   map[key.ID]map[key.ID]*lossRec // host -> author -> newest loss card
	delegs   map[key.ID][]*delegRec         // owner -> delegate cards
	undeleg  map[key.ID]map[key.ID]bool     // owner -> devices revoked
	bad      map[card.ID]string
}

// New returns an empty State.
func New() *State {
	return &State{ps: projections.New(), profiles: map[key.ID]*card.Card{}, pbody: map[key.ID]*projections.ProfileBody{},
		grants: map[key.ID][]*grantRec{}, revoked: map[card.ID][]key.ID{}, heard: map[key.ID]int64{},
		places: map[replicaKey]map[key.ID]*placeRec{}, maxEpoch: map[replicaKey]uint64{},
		losses: map[key.ID]map[key.ID]*lossRec{}, delegs: map[key.ID][]*delegRec{}, undeleg: map[key.ID]map[key.ID]bool{},
		bad: map[card.ID]string{}}
}

// Add folds one verified card in. A card whose body the projections or
// this package refuse takes no part (its error is returned); adding a card
// twice changes nothing.
func (s *State) Add(c *card.Card) error {
	if r, ok := s.bad[c.ID()]; ok {
		return errors.New(r)
	}
	if t := c.TS(); t > s.heard[c.Author()] {
		s.heard[c.Author()] = t
	}
	switch c.Kind() {
	case card.KindIntent, card.KindDelegate:
		s.dirty = true
		if err := s.ps.Add(c); err != nil {
			return err
		}
		if c.Kind() == card.KindDelegate {
			var b kinds.DelegateBody
			_ = c.DecodeBody(&b)
			dev, _ := key.IDFromBytes(b.Device)
			if b.Revoked {
				if s.undeleg[c.Author()] == nil {
					s.undeleg[c.Author()] = map[key.ID]bool{}
				}
				s.undeleg[c.Author()][dev] = true
			} else {
				s.delegs[c.Author()] = append(s.delegs[c.Author()], &delegRec{id: c.ID(), device: dev, services: b.Services, until: b.Until})
			}
		}
	case card.KindProfile:
		var b projections.ProfileBody
		if err := c.DecodeBody(&b); err != nil {
			return s.refuse(c, fmt.Errorf("%w: profile: %w", ErrBadBody, err))
		}
		if old, ok := s.profiles[c.Author()]; !ok || c.Seq() > old.Seq() {
			s.profiles[c.Author()], s.pbody[c.Author()] = c, &b
		}
	case card.KindGrant:
		var b kinds.GrantBody
		if err := c.DecodeBody(&b); err != nil || b.Validate() != nil {
			return s.refuse(c, fmt.Errorf("%w: grant", ErrBadBody))
		}
		g, cid := s.grants[c.Author()], c.ID()
		i := sort.Search(len(g), func(i int) bool { return string(g[i].id[:]) >= string(cid[:]) })
		if i < len(g) && g[i].id == c.ID() {
			return nil
		}
		g = append(g, nil)
		copy(g[i+1:], g[i:])
		g[i] = &grantRec{id: c.ID(), body: b, author: c.Author()}
		s.grants[c.Author()] = g
	case card.KindRevoke, card.KindCRL:
		s.dirty = true // a revoked delegation changes who may place
		_ = s.ps.Add(c)
		var ids [][]byte
		if c.Kind() == card.KindRevoke {
			var b kinds.RevokeBody
			if c.DecodeBody(&b) == nil {
				ids = [][]byte{b.Card}
			}
		} else {
			var b kinds.CRLBody
			if c.DecodeBody(&b) == nil {
				ids = b.Revoked
			}
		}
		for _, raw := range ids {
			if id, err := card.IDFromBytes(raw); err == nil {
				s.revoked[id] = append(s.revoked[id], c.Author())
			}
		}
	case kinds.KindPlacement:
		b, err := DecodePlacement(c)
		if err != nil {
			return s.refuse(c, err)
		}
		owner, _ := key.IDFromBytes(b.Owner)
		host, _ := key.IDFromBytes(b.Host)
		rk := replicaKey{svcKey{owner, b.Service}, b.Replica}
		p := &placeRec{id: c.ID(), author: c.Author(), body: *b, host: host}
		m := s.places[rk]
		if m == nil {
			m = map[key.ID]*placeRec{}
			s.places[rk] = m
		}
		if old := m[c.Author()]; old == nil || p.newer(old) {
			m[c.Author()] = p
		}
	case kinds.KindHostLost:
		b, err := DecodeHostLost(c)
		if err != nil {
			return s.refuse(c, err)
		}
		host, _ := key.IDFromBytes(b.Host)
		m := s.losses[host]
		if m == nil {
			m = map[key.ID]*lossRec{}
			s.losses[host] = m
		}
		l := &lossRec{id: c.ID(), author: c.Author(), ts: c.TS(), body: *b}
		if old := m[c.Author()]; old == nil || l.body.Last > old.body.Last || (l.body.Last == old.body.Last && l.ts > old.ts) {
			m[c.Author()] = l
		}
	}
	return nil
}

func (s *State) refuse(c *card.Card, err error) error {
	s.bad[c.ID()] = err.Error()
	return err
}

func (s *State) isRevoked(id card.ID, author key.ID) bool {
	for _, a := range s.revoked[id] {
		if a == author {
			return true
		}
	}
	return false
}

// Speaks reports whether author may place replicas of owner's service at
// now: the owner itself, or a device with a live delegation (not revoked
// by the owner, not past its until, naming the service or every service).
func (s *State) Speaks(owner, author key.ID, service string, now int64) bool {
	if owner == author {
		return true
	}
	if s.undeleg[owner][author] {
		return false
	}
	for _, d := range s.delegs[owner] {
		if d.device != author || s.isRevoked(d.id, owner) || (d.until != 0 && d.until <= now) {
			continue
		}
		if len(d.services) == 0 {
			return true
		}
		for _, x := range d.services {
			if x == service {
				return true
			}
		}
	}
	return false
}

// current is the placement in force for a replica: the newest by the merge
// rule among the placements of authors who speak for the owner.
func (s *State) current(rk replicaKey, now int64) *placeRec {
	var best *placeRec
	for a, p := range s.places[rk] {
		if !s.Speaks(rk.owner, a, rk.service, now) {
			continue
		}
		if best == nil || p.newer(best) {
			best = p
		}
	}
	return best
}

// Lease is a service's lease in seconds: policy.lease of its intent (a
// duration like 45s, or whole seconds), else DefaultLease; values outside
// 1 s .. 1 day are ignored.
func Lease(d crdt.Desired) int64 {
	v, ok := d.Policy["lease"]
	if !ok {
		return DefaultLease
	}
	var sec int64
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		sec = n
	} else if du, err := units.ParseDuration(v); err == nil {
		sec = int64(du / time.Second)
	}
	if sec < 1 || sec > kinds.MaxLease {
		return DefaultLease
	}
	return sec
}

// liveness of a host for one owner's service at now.
type liveness int

const (
	alive     liveness = iota
	lost               // not heard within the lease, or declared lost and silent since
	returning          // declared lost, heard since, but for less than a lease
)

func (s *State) liveness(h, owner key.ID, service string, lease, now int64) (liveness, *lossRec) {
	heard := s.heard[h]
	var decl *lossRec
	for a, l := range s.losses[h] {
		if !s.Speaks(owner, a, service, now) {
			continue
		}
		if decl == nil || l.body.Last > decl.body.Last || (l.body.Last == decl.body.Last && string(l.id[:]) < string(decl.id[:])) {
			decl = l
		}
	}
	if now-heard > lease {
		return lost, decl
	}
	if decl != nil && decl.body.Last >= heard {
		return lost, decl
	}
	if decl != nil && heard < decl.ts+lease {
		return returning, decl
	}
	return alive, decl
}

// admitting is the host's first live grant (in ID order) that admits the
// service's replica and whose limits hold its resources, or nil and why.
func (s *State) admitting(h key.ID, sv *svc, now int64) (*grantRec, string) {
	subj, d := sv.subj, sv.d
	why := "no grant from this host admits the service"
	for _, g := range s.grants[h] {
		if w := g.body.Admits(subj); w != "" {
			continue
		}
		switch {
		case s.isRevoked(g.id, h):
			why = "grant " + g.id.Short() + " revoked by the host"
		case g.body.Expires != 0 && now >= g.body.Expires:
			why = "grant " + g.id.Short() + " expired"
		case !fitsGrant(&g.body.Limits, d):
			why = "grant " + g.id.Short() + " limits are below the intent's resources"
		default:
			return g, ""
		}
	}
	return nil, why
}

func fitsGrant(l *kinds.Limits, d crdt.Desired) bool {
	return (l.Memory == 0 || uint64(d.Memory) <= l.Memory) && (l.Disk == 0 || uint64(d.Disk) <= l.Disk)
}

// grantLive reports whether the grant named by a placement is still a
// live grant of host h that admits d.
func (s *State) grantLive(h key.ID, gid []byte, sv *svc, now int64) bool {
	id, err := card.IDFromBytes(gid)
	if err != nil {
		return false
	}
	for _, g := range s.grants[h] {
		if g.id != id {
			continue
		}
		return g.body.Admits(sv.subj) == "" && !s.isRevoked(id, h) &&
			(g.body.Expires == 0 || now < g.body.Expires) && fitsGrant(&g.body.Limits, sv.d)
	}
	return false
}
