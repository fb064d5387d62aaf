package projections

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Errors of the projections: why a card is refused as input.
var (
	ErrBadBody   = errors.New("projections: card body does not decode")
	ErrBadIntent = errors.New("projections: intent card refused")
)

type pair struct{ owner, device key.ID }

type docKey struct {
	owner   key.ID
	service string
}

func (k docKey) less(o docKey) bool {
	if c := k.owner.Compare(o.owner); c != 0 {
		return c < 0
	}
	return k.service < o.service
}

type intentCard struct {
	c      *card.Card
	body   IntentBody
	owner  key.ID
	parsed *crdt.Parsed
}

type docState struct {
	key      docKey
	doc      *crdt.Doc
	cards    map[card.ID]*intentCard // every well-formed intent card for this document
	applied  map[card.ID]bool
	rejected map[card.ID]string
	queue    map[key.ID][]*intentCard // counted, not yet applied, per author in seq order
}

type delegation struct {
	grants []*card.Card // delegate cards that give authority
	revs   []*card.Card // delegate cards with revoked: true, or revoke cards naming a grant
}

type obsKey struct {
	host    key.ID
	owner   key.ID
	service string
}

// State is the fold of a set of verified cards into desired state, observed
// state and (on demand, at a given time) the plan. Add is incremental; the
// result depends only on the set of cards added, not on their order, as
// long as each author's cards arrive in chain order (as the store delivers
// them). State does no I/O.
type State struct {
	seen       map[card.ID]*card.Card
	bad        map[card.ID]string // refused cards: body or Automerge bytes invalid
	delegs     map[pair]*delegation
	delegCards map[card.ID]pair
	revokes    map[card.ID][]*card.Card // revoked card ID -> revoke cards naming it
	docs       map[docKey]*docState
	devIntents map[pair][]*intentCard // intent cards by a device speaking for an owner
	profiles   map[key.ID]*card.Card
	grants     map[card.ID]*card.Card
	observes   map[obsKey]*card.Card
}

// New returns an empty State.
func New() *State {
	return &State{seen: map[card.ID]*card.Card{}, bad: map[card.ID]string{},
		delegs: map[pair]*delegation{}, delegCards: map[card.ID]pair{}, revokes: map[card.ID][]*card.Card{},
		docs: map[docKey]*docState{}, devIntents: map[pair][]*intentCard{},
		profiles: map[key.ID]*card.Card{}, grants: map[card.ID]*card.Card{}, observes: map[obsKey]*card.Card{}}
}

// Check validates a card's body for the kinds the projections interpret,
// with no state: the check to run before a card is stored. For an intent
// card that includes parsing the Automerge change bytes.
func Check(c *card.Card) error {
	_, err := checkBody(c, true)
	return err
}

// checkBody decodes and checks a body; full adds Automerge's own parse of
// intent changes (Add leaves that to the application, which undoes a
// refused change).
func checkBody(c *card.Card, full bool) (any, error) {
	switch c.Kind() {
	case card.KindIntent:
		var b IntentBody
		if err := c.DecodeBody(&b); err != nil {
			return nil, fmt.Errorf("%w: intent: %w", ErrBadBody, err)
		}
		owner, err := key.IDFromBytes(b.Owner)
		if err != nil {
			return nil, fmt.Errorf("%w: intent owner: %w", ErrBadBody, err)
		}
		if b.Service == "" || len(b.Service) > 63 {
			return nil, fmt.Errorf("%w: intent service %q", ErrBadBody, b.Service)
		}
		check := crdt.CheckStructure
		if full {
			check = crdt.Check
		}
		p, err := check(c.Author(), owner, b.Service, b.Changes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadIntent, err)
		}
		return &intentCard{c: c, body: b, owner: owner, parsed: p}, nil
	case card.KindDelegate:
		var b DelegateBody
		if err := c.DecodeBody(&b); err != nil {
			return nil, fmt.Errorf("%w: delegate: %w", ErrBadBody, err)
		}
		if _, err := key.IDFromBytes(b.Device); err != nil {
			return nil, fmt.Errorf("%w: delegate device: %w", ErrBadBody, err)
		}
		if b.Upto != nil && !b.Revoked {
			return nil, fmt.Errorf("%w: delegate: upto without revoked", ErrBadBody)
		}
		return &b, nil
	case card.KindProfile:
		var b ProfileBody
		if err := c.DecodeBody(&b); err != nil {
			return nil, fmt.Errorf("%w: profile: %w", ErrBadBody, err)
		}
		return &b, nil
	case card.KindGrant:
		var b GrantBody
		if err := c.DecodeBody(&b); err != nil {
			return nil, fmt.Errorf("%w: grant: %w", ErrBadBody, err)
		}
		if err := b.Validate(); err != nil {
			return nil, fmt.Errorf("%w: grant: %w", ErrBadBody, err)
		}
		return &b, nil
	case card.KindRevoke:
		var b RevokeBody
		if err := c.DecodeBody(&b); err != nil {
			return nil, fmt.Errorf("%w: revoke: %w", ErrBadBody, err)
		}
		if _, err := card.IDFromBytes(b.Card); err != nil {
			return nil, fmt.Errorf("%w: revoke card: %w", ErrBadBody, err)
		}
		return &b, nil
	case card.KindCRL:
		var b CRLBody
		if err := c.DecodeBody(&b); err != nil {
			return nil, fmt.Errorf("%w: crl: %w", ErrBadBody, err)
		}
		for _, id := range b.Revoked {
			if _, err := card.IDFromBytes(id); err != nil {
				return nil, fmt.Errorf("%w: crl entry: %w", ErrBadBody, err)
			}
		}
		return &b, nil
	case card.KindObserve:
		var b ObserveBody
		if err := c.DecodeBody(&b); err != nil {
			return nil, fmt.Errorf("%w: observe: %w", ErrBadBody, err)
		}
		if !validStates[b.State] {
			return nil, fmt.Errorf("%w: observe state %q", ErrBadBody, b.State)
		}
		if _, err := key.IDFromBytes(b.Peer); err != nil {
			return nil, fmt.Errorf("%w: observe peer: %w", ErrBadBody, err)
		}
		if err := idOpt(b.Owner); err != nil {
			return nil, err
		}
		if err := idOpt(b.To); err != nil {
			return nil, err
		}
		return &b, nil
	}
	return nil, nil
}

func idOpt(b []byte) error {
	if b == nil {
		return nil
	}
	if _, err := key.IDFromBytes(b); err != nil {
		return fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	return nil
}

func mustID(b []byte) key.ID {
	id, _ := key.IDFromBytes(b)
	return id
}

// Add folds one verified card in and reports whether it was refused (its
// body or Automerge bytes are invalid: it then takes no part in any
// projection). Adding a card twice changes nothing.
func (s *State) Add(c *card.Card) error {
	if _, ok := s.seen[c.ID()]; ok {
		if r, bad := s.bad[c.ID()]; bad {
			return errors.New(r)
		}
		return nil
	}
	s.seen[c.ID()] = c
	v, err := checkBody(c, false)
	if err != nil {
		s.bad[c.ID()] = err.Error()
		return err
	}
	switch b := v.(type) {
	case *intentCard:
		s.addIntent(b)
	case *DelegateBody:
		p := pair{c.Author(), mustID(b.Device)}
		s.delegCards[c.ID()] = p
		d := s.deleg(p)
		if b.Revoked {
			d.revs = append(d.revs, c)
		} else {
			d.grants = append(d.grants, c)
		}
		if r := s.revokedBy(c); r != nil {
			d.revs = append(d.revs, r)
		}
		s.recount(p)
	case *ProfileBody:
		if old, ok := s.profiles[c.Author()]; !ok || c.Seq() > old.Seq() {
			s.profiles[c.Author()] = c
		}
	case *GrantBody:
		s.grants[c.ID()] = c
	case *RevokeBody:
		s.withdraw(c, card.ID(b.Card))
	case *CRLBody:
		for _, id := range b.Revoked {
			s.withdraw(c, card.ID(id))
		}
	case *ObserveBody:
		k := obsKey{host: c.Author(), service: b.Service}
		if b.Owner != nil {
			k.owner = mustID(b.Owner)
		}
		if b.Service == "" {
			k.service = "peer:" + hex.EncodeToString(b.Peer)
		}
		if old, ok := s.observes[k]; !ok || c.Seq() > old.Seq() {
			s.observes[k] = c
		}
	}
	return nil
}

// withdraw records that card c (a revoke or crl) names target.
func (s *State) withdraw(c *card.Card, target card.ID) {
	s.revokes[target] = append(s.revokes[target], c)
	if p, ok := s.delegCards[target]; ok && p.owner == c.Author() {
		s.deleg(p).revs = append(s.deleg(p).revs, c)
		s.recount(p)
	}
}

// revokedBy returns the earliest revoke or crl card by t's own author
// naming t.
func (s *State) revokedBy(t *card.Card) *card.Card {
	var best *card.Card
	for _, r := range s.revokes[t.ID()] {
		if r.Author() == t.Author() && (best == nil || r.Seq() < best.Seq()) {
			best = r
		}
	}
	return best
}

func (s *State) deleg(p pair) *delegation {
	d := s.delegs[p]
	if d == nil {
		d = &delegation{}
		s.delegs[p] = d
	}
	return d
}

func (s *State) addIntent(ic *intentCard) {
	k := docKey{ic.owner, ic.body.Service}
	ds := s.docs[k]
	if ds == nil {
		ds = &docState{key: k, doc: crdt.New(k.owner, k.service), cards: map[card.ID]*intentCard{},
			applied: map[card.ID]bool{}, rejected: map[card.ID]string{}, queue: map[key.ID][]*intentCard{}}
		s.docs[k] = ds
	}
	ds.cards[ic.c.ID()] = ic
	if a := ic.c.Author(); a != ic.owner {
		p := pair{ic.owner, a}
		s.devIntents[p] = append(s.devIntents[p], ic)
	}
	if ok, _ := s.counts(ic); ok {
		ds.enqueue(ic)
		ds.drain()
	}
}

// cutoff is the device log position after which none of its intent counts
// for the owner, and the card that set it; ok false when never revoked.
func (d *delegation) cutoff() (upto uint64, by *card.Card, ok bool) {
	for _, r := range d.revs {
		u := uint64(0)
		if r.Kind() == card.KindDelegate {
			var b DelegateBody
			if r.DecodeBody(&b) == nil && b.Upto != nil {
				u = *b.Upto
			}
		}
		if !ok || u < upto || (u == upto && idLess(r.ID(), by.ID())) {
			upto, by, ok = u, r, true
		}
	}
	return upto, by, ok
}

func idLess(a, b card.ID) bool { return string(a[:]) < string(b[:]) }

// counts reports whether an intent card speaks for its owner, and if not,
// why. See ARCHITECTURE.md, Delegation.
func (s *State) counts(ic *intentCard) (bool, string) {
	a := ic.c.Author()
	if a == ic.owner {
		return true, "the owner's own intent"
	}
	d := s.delegs[pair{ic.owner, a}]
	if d == nil || len(d.grants) == 0 {
		return false, "the author is not a device the owner delegated to"
	}
	if upto, by, ok := d.cutoff(); ok && ic.c.Seq() > upto {
		return false, fmt.Sprintf("delegation revoked by %s after device seq %d; this card is seq %d", by.ID(), upto, ic.c.Seq())
	}
	for _, g := range d.grants {
		var b DelegateBody
		if g.DecodeBody(&b) != nil {
			continue
		}
		if b.Until != 0 && ic.c.TS() > b.Until {
			continue
		}
		if len(b.Services) > 0 && !contains(b.Services, ic.body.Service) {
			continue
		}
		return true, "delegated by " + g.ID().String()
	}
	return false, "outside the scope of every delegation (services or until)"
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// recount re-decides every intent card of the device for the owner after
// the delegation changed; a document whose counted set changed is rebuilt
// from its counted cards (Automerge cannot un-apply a change).
func (s *State) recount(p pair) {
	touched := map[docKey]bool{}
	for _, ic := range s.devIntents[p] {
		ds := s.docs[docKey{ic.owner, ic.body.Service}]
		ok, _ := s.counts(ic)
		_, queued := ds.queuedOrDone(ic)
		if ok != queued {
			touched[ds.key] = true
		}
	}
	var keys []docKey
	for k := range touched {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	for _, k := range keys {
		s.rebuild(s.docs[k])
	}
}

func (s *State) rebuild(ds *docState) {
	ds.doc = crdt.New(ds.key.owner, ds.key.service)
	ds.applied, ds.rejected, ds.queue = map[card.ID]bool{}, map[card.ID]string{}, map[key.ID][]*intentCard{}
	var all []*intentCard
	for _, ic := range ds.cards {
		if ok, _ := s.counts(ic); ok {
			all = append(all, ic)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].c.Seq() < all[j].c.Seq() })
	for _, ic := range all {
		ds.enqueue(ic)
	}
	ds.drain()
}

func (ds *docState) queuedOrDone(ic *intentCard) (string, bool) {
	id := ic.c.ID()
	if ds.applied[id] {
		return "applied", true
	}
	if r, ok := ds.rejected[id]; ok {
		return r, true
	}
	for _, q := range ds.queue[ic.c.Author()] {
		if q == ic {
			return "queued", true
		}
	}
	return "", false
}

func (ds *docState) enqueue(ic *intentCard) {
	a := ic.c.Author()
	q := ds.queue[a]
	i := sort.Search(len(q), func(i int) bool { return q[i].c.Seq() >= ic.c.Seq() })
	if i < len(q) && q[i] == ic {
		return
	}
	q = append(q, nil)
	copy(q[i+1:], q[i:])
	q[i] = ic
	ds.queue[a] = q
}

// drain applies queued cards whose dependencies are present, each author's
// in its chain order, until nothing more can be applied.
func (ds *docState) drain() {
	for {
		progress := false
		var authors []key.ID
		for a, q := range ds.queue {
			if len(q) > 0 {
				authors = append(authors, a)
			}
		}
		sort.Slice(authors, func(i, j int) bool { return authors[i].Compare(authors[j]) < 0 })
		for _, a := range authors {
			q := ds.queue[a]
			for len(q) > 0 {
				ic := q[0]
				if len(ds.doc.Ready(ic.parsed)) > 0 {
					break
				}
				if _, err := ds.doc.Apply(ic.parsed, ic.c.ID().String()); err != nil {
					ds.rejected[ic.c.ID()] = err.Error()
				} else {
					ds.applied[ic.c.ID()] = true
				}
				q = q[1:]
				progress = true
			}
			ds.queue[a] = q
		}
		if !progress {
			return
		}
	}
}

// Doc returns the intent document of (owner, service), or nil.
func (s *State) Doc(owner key.ID, service string) *crdt.Doc {
	if ds := s.docs[docKey{owner, service}]; ds != nil {
		return ds.doc
	}
	return nil
}

// Card returns a card the state has seen.
func (s *State) Card(id card.ID) (*card.Card, bool) {
	c, ok := s.seen[id]
	return c, ok
}

// Len is the number of cards seen.
func (s *State) Len() int { return len(s.seen) }

// Encode is the deterministic CBOR encoding of a projection value.
func Encode(v any) []byte { return canon.MustMarshal(v) }
