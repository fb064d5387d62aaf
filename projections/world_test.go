package projections

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// world is a small in-memory network of identities, each with its own log
// and its own view (the cards it has received), for scenario and property
// tests.
type world struct {
	t     testing.TB
	ids   map[string]*key.Secret
	logs  map[key.ID][]*card.Card
	views map[string]*view
	clock int64
}

type view struct {
	st    *State
	cards map[card.ID]*card.Card
	order []*card.Card
}

func newWorld(t testing.TB, names ...string) *world {
	w := &world{t: t, ids: map[string]*key.Secret{}, logs: map[key.ID][]*card.Card{}, views: map[string]*view{}, clock: 1_700_000_000}
	for i, n := range names {
		sk, err := key.FromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if err != nil {
			t.Fatal(err)
		}
		w.ids[n] = sk
		w.views[n] = &view{st: New(), cards: map[card.ID]*card.Card{}}
	}
	return w
}

func (w *world) id(n string) key.ID { return w.ids[n].ID() }

// append signs a card in n's log and adds it to n's own view.
func (w *world) append(n, kind string, body any) *card.Card {
	w.t.Helper()
	sk := w.ids[n]
	log := w.logs[sk.ID()]
	var prev card.ID
	if len(log) > 0 {
		prev = log[len(log)-1].ID()
	}
	w.clock += 60
	c, err := card.Sign(sk, uint64(len(log)+1), prev, card.Draft{Kind: kind, TS: w.clock, Body: body}, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	w.logs[sk.ID()] = append(log, c)
	w.views[n].add(c)
	return c
}

func (v *view) add(c *card.Card) {
	if _, ok := v.cards[c.ID()]; ok {
		return
	}
	v.cards[c.ID()] = c
	v.order = append(v.order, c)
	v.st.Add(c)
}

// sync gives each of a and b every card the other has, in chain order.
func (w *world) sync(a, b string) {
	va, vb := w.views[a], w.views[b]
	for _, c := range append([]*card.Card(nil), va.order...) {
		vb.add(c)
	}
	for _, c := range append([]*card.Card(nil), vb.order...) {
		va.add(c)
	}
}

// intent has n build the minimal changes from its view and append them;
// it returns nil when the manifest changes nothing.
func (w *world) intent(n, owner string, m *crdt.Manifest) *card.Card {
	w.t.Helper()
	c, err := w.tryIntent(n, owner, m)
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

func (w *world) tryIntent(n, owner string, m *crdt.Manifest) (*card.Card, error) {
	o := w.id(owner)
	d := w.views[n].st.Doc(o, m.Service)
	if d == nil {
		d = crdt.New(o, m.Service)
	}
	ch, err := d.Build(w.id(n), m, time.Unix(w.clock+60, 0))
	if errors.Is(err, crdt.ErrUnchanged) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return w.append(n, card.KindIntent, IntentBody{Service: m.Service, Owner: o.Bytes(), Changes: ch}), nil
}

func (w *world) delegate(owner, dev string, services ...string) *card.Card {
	return w.append(owner, card.KindDelegate, DelegateBody{Device: w.id(dev).Bytes(), Services: services})
}

// undelegate revokes dev, keeping its intent up to the last card of dev
// that owner has seen.
func (w *world) undelegate(owner, dev string) *card.Card {
	var upto uint64
	for _, c := range w.views[owner].order {
		if c.Author() == w.id(dev) && c.Seq() > upto {
			upto = c.Seq()
		}
	}
	return w.append(owner, card.KindDelegate, DelegateBody{Device: w.id(dev).Bytes(), Revoked: true, Upto: &upto})
}

func (w *world) profile(h string, cpu, mem uint64, labels map[string]string) *card.Card {
	return w.append(h, card.KindProfile, ProfileBody{CPU: cpu, Memory: mem, Disk: 1 << 30, GPU: 0, Labels: labels})
}

func (w *world) grant(h, owner, service string) *card.Card {
	return w.append(h, card.KindGrant, GrantBody{Service: service, Owner: w.id(owner).Bytes(), Limits: GrantLimits{Memory: 1 << 30, Instances: 4}})
}

func (w *world) revoke(n string, c *card.Card) *card.Card {
	return w.append(n, card.KindRevoke, RevokeBody{Card: idBytes(c.ID()), Reason: "test"})
}

func (w *world) observe(h, owner, service, state string) *card.Card {
	return w.append(h, card.KindObserve, ObserveBody{Peer: w.id(h).Bytes(), Service: service, Owner: w.id(owner).Bytes(), State: state})
}

// all returns every card of every log.
func (w *world) all() []*card.Card {
	var out []*card.Card
	for _, l := range w.logs {
		out = append(out, l...)
	}
	return out
}

// snapshot renders the three projections as bytes.
func snapshot(s *State, now time.Time) []byte {
	var b bytes.Buffer
	b.Write(Encode(s.Desired()))
	b.WriteString("|")
	b.Write(Encode(s.Observed()))
	b.WriteString("|")
	b.Write(Encode(s.Plan(now)))
	return b.Bytes()
}

func fold(cards []*card.Card) *State {
	s := New()
	for _, c := range cards {
		s.Add(c)
	}
	return s
}

func spec(replicas int64, version string) *crdt.Manifest {
	r := replicas
	cpu, mem := int64(250), int64(64<<20)
	return &crdt.Manifest{Service: "web", Bundle: "sha256:" + fmt.Sprintf("%064x", 1), Replicas: &r, Version: version, CPU: &cpu, Memory: &mem}
}

func idBytes(id card.ID) []byte { return id[:] }
