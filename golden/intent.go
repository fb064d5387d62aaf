package golden

import (
	"errors"
	"fmt"
	"github.com/sublog/sublog/log/kinds"
	"strconv"
	"strings"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/projections"
)

// Intent vectors (issue 5):
//   - intent-change: a manifest against an author's view gives exactly
//     these Automerge change bytes (the genesis change first for a new
//     service).
//   - intent-merge: a fixed history of signed cards (owner, two delegated
//     laptops editing offline, one revoked device) folds into exactly this
//     desired state (deterministic CBOR), these heads and these conflicts.
//   - plan: a fixed history with hosts, grants, a revocation and
//     observations gives exactly this plan at a given time.
//   - intent-reject: intent cards the fold must refuse.

func init() {
	Register(&Suite{Name: "intent-change", Generate: genIntentChanges, Check: checkIntentChange})
	Register(&Suite{Name: "intent-merge", Generate: genIntentMerges, Check: checkHistory})
	Register(&Suite{Name: "plan", Generate: genPlans, Check: checkHistory})
	Register(&Suite{Name: "intent-reject", Generate: genIntentRejects, Check: checkIntentReject})
}

func i64(n int64) *int64 { return &n }

func goldenManifest(replicas int64, version string, mem int64) *crdt.Manifest {
	return &crdt.Manifest{Service: "web", Bundle: "sha256:" + strings.Repeat("5e", 32), Replicas: i64(replicas),
		Version: version, CPU: i64(500), Memory: i64(mem), Disk: i64(10 << 20), GPU: i64(0),
		Labels: map[string]string{"zone": "eu"}, Policy: map[string]any{"restart": "always"}}
}

// history signs cards in several logs at fixed times.
type history struct {
	logs  map[key.ID][]*card.Card
	order []*card.Card
	ts    int64
	st    *projections.State // every card so far (the authors' shared view when they are in sync)
	views map[key.ID]*projections.State
}

func newHistory() *history {
	return &history{logs: map[key.ID][]*card.Card{}, ts: BaseTS, st: projections.New(), views: map[key.ID]*projections.State{}}
}

func (h *history) add(sk *key.Secret, kind string, body any) (*card.Card, error) {
	log := h.logs[sk.ID()]
	var prev card.ID
	if len(log) > 0 {
		prev = log[len(log)-1].ID()
	}
	h.ts += 60
	c, err := card.Sign(sk, uint64(len(log)+1), prev, card.Draft{Kind: kind, TS: h.ts, Body: body}, caps.Builtin())
	if err != nil {
		return nil, err
	}
	h.logs[sk.ID()] = append(log, c)
	h.order = append(h.order, c)
	_ = h.st.Add(c)
	if v := h.views[sk.ID()]; v != nil {
		_ = v.Add(c)
	}
	return c, nil
}

// fork gives an author a private view (offline from now on).
func (h *history) fork(id key.ID) {
	v := projections.New()
	for _, c := range h.order {
		_ = v.Add(c)
	}
	h.views[id] = v
}

func (h *history) intent(sk *key.Secret, owner key.ID, m *crdt.Manifest) (*card.Card, error) {
	view := h.st
	if v := h.views[sk.ID()]; v != nil {
		view = v
	}
	d := view.Doc(owner, m.Service)
	if d == nil {
		d = crdt.New(owner, m.Service)
	}
	b, err := d.Build(sk.ID(), m, time.Unix(h.ts+60, 0))
	if err != nil {
		return nil, err
	}
	return h.add(sk, card.KindIntent, projections.IntentBody{Service: m.Service, Owner: owner.Bytes(), Changes: b})
}

func genIntentChanges() ([]*Vector, error) {
	owner, laptop := Fixture("owner"), Fixture("laptop")
	var out []*Vector
	h := newHistory()
	if _, err := h.add(owner, card.KindDelegate, projections.DelegateBody{Device: laptop.ID().Bytes()}); err != nil {
		return nil, err
	}
	steps := []struct {
		name string
		sk   *key.Secret
		m    *crdt.Manifest
	}{
		{"01-create", owner, goldenManifest(2, "1.2.0", 64<<20)},
		{"02-scale", owner, goldenManifest(3, "1.2.0", 64<<20)},
		{"03-remove-fields", owner, &crdt.Manifest{Service: "web", Replicas: i64(3)}},
		{"04-remove-service", owner, &crdt.Manifest{Service: "web", Remove: true}},
		{"05-restore-by-device", laptop, goldenManifest(1, "2.0.0", 128<<20)},
	}
	for _, s := range steps {
		before := h.order
		c, err := h.intent(s.sk, owner.ID(), s.m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		var b projections.IntentBody
		if err := c.DecodeBody(&b); err != nil {
			return nil, err
		}
		v := newVector("intent-change", s.name, "accept",
			"the manifest (as JSON) applied by author to the view given by the earlier intent cards (card.N)",
			"gives exactly these Automerge change bytes; writes lists what they write (flat paths, typed values)")
		for i, g := range before {
			v.SetHex(fmt.Sprintf("card.%d", i+1), g.Bytes())
		}
		v.Set("owner", owner.ID().String())
		v.Set("author", s.sk.ID().String())
		v.Set("ts", strconv.FormatInt(h.ts, 10))
		v.Set("manifest", manifestText(s.m))
		v.SetHex("changes", b.Changes)
		d := h.st.Doc(owner.ID(), "web")
		v.Set("writes", strings.Join(d.WritesOf(c.ID().String()), "; "))
		out = append(out, v)
	}
	return out, nil
}

// manifestText is a stable one-line rendering of the manifests used here.
func manifestText(m *crdt.Manifest) string {
	if m.Remove {
		return "remove " + m.Service
	}
	parts := []string{"service=" + m.Service}
	if m.Bundle != "" {
		parts = append(parts, "bundle="+m.Bundle)
	}
	if m.Replicas != nil {
		parts = append(parts, fmt.Sprintf("replicas=%d", *m.Replicas))
	}
	if m.Version != "" {
		parts = append(parts, "version="+m.Version)
	}
	if m.Memory != nil {
		parts = append(parts, fmt.Sprintf("cpu=%d memory=%d disk=%d gpu=%d zone=eu restart=always", *m.CPU, *m.Memory, *m.Disk, *m.GPU))
	}
	return strings.Join(parts, " ")
}

func parseManifestText(s string) (*crdt.Manifest, error) {
	if svc, ok := strings.CutPrefix(s, "remove "); ok {
		return &crdt.Manifest{Service: svc, Remove: true}, nil
	}
	m := &crdt.Manifest{}
	for _, f := range strings.Fields(s) {
		k, val, _ := strings.Cut(f, "=")
		n, _ := strconv.ParseInt(val, 10, 64)
		switch k {
		case "service":
			m.Service = val
		case "bundle":
			m.Bundle = val
		case "replicas":
			m.Replicas = i64(n)
		case "version":
			m.Version = val
		case "cpu":
			m.CPU = i64(n)
		case "memory":
			m.Memory = i64(n)
		case "disk":
			m.Disk = i64(n)
		case "gpu":
			m.GPU = i64(n)
		case "zone":
			m.Labels = map[string]string{"zone": val}
		case "restart":
			m.Policy = map[string]any{"restart": val}
		default:
			return nil, fmt.Errorf("unknown manifest field %q", k)
		}
	}
	return m, nil
}

// givenCards decodes card.1, card.2, ... in order.
func givenCards(v *Vector) ([]*card.Card, error) {
	var out []*card.Card
	for i := 1; ; i++ {
		if _, ok := v.Get(fmt.Sprintf("card.%d", i)); !ok {
			return out, nil
		}
		b, err := v.Hex(fmt.Sprintf("card.%d", i))
		if err != nil {
			return nil, err
		}
		c, err := card.Decode(b, caps.Builtin())
		if err != nil {
			return nil, fmt.Errorf("%w: %s: card.%d: %v", ErrVectorFormat, v.ID(), i, err)
		}
		out = append(out, c)
	}
}

func checkIntentChange(v *Vector) error {
	cards, err := givenCards(v)
	if err != nil {
		return err
	}
	st := projections.New()
	for _, c := range cards {
		_ = st.Add(c)
	}
	var f [5]string
	for i, k := range []string{"owner", "author", "ts", "manifest", "writes"} {
		if f[i], err = v.Must(k); err != nil {
			return err
		}
	}
	owner, err1 := key.ParseID(f[0])
	author, err2 := key.ParseID(f[1])
	ts, err3 := strconv.ParseInt(f[2], 10, 64)
	m, err4 := parseManifestText(f[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrVectorFormat, v.ID(), err)
	}
	want, err := v.Hex("changes")
	if err != nil {
		return err
	}
	d := st.Doc(owner, m.Service)
	if d == nil {
		d = crdt.New(owner, m.Service)
	}
	got, err := d.Build(author, m, time.Unix(ts, 0))
	if err != nil {
		return fmt.Errorf("%w: %s: building: %v", ErrMismatch, v.ID(), err)
	}
	if string(got) != string(want) {
		return fmt.Errorf("%w: %s: change bytes differ:\n got %x\nwant %x", ErrMismatch, v.ID(), got, want)
	}
	p, err := crdt.Check(author, owner, m.Service, want)
	if err != nil {
		return fmt.Errorf("%w: %s: the vector's changes are refused: %v", ErrMismatch, v.ID(), err)
	}
	if _, err := d.Apply(p, "vector"); err != nil {
		return fmt.Errorf("%w: %s: the vector's changes do not apply: %v", ErrMismatch, v.ID(), err)
	}
	if w := strings.Join(d.WritesOf("vector"), "; "); w != f[4] {
		return fmt.Errorf("%w: %s: writes %q, vector says %q", ErrMismatch, v.ID(), w, f[4])
	}
	return nil
}

func genIntentMerges() ([]*Vector, error) {
	owner, l1, l2, l3 := Fixture("owner"), Fixture("laptop"), Fixture("laptop2"), Fixture("stolen")
	h := newHistory()
	steps := []func() error{
		func() error {
			_, err := h.add(owner, card.KindDelegate, projections.DelegateBody{Device: l1.ID().Bytes()})
			return err
		},
		func() error {
			_, err := h.add(owner, card.KindDelegate, projections.DelegateBody{Device: l2.ID().Bytes()})
			return err
		},
		func() error {
			_, err := h.add(owner, card.KindDelegate, projections.DelegateBody{Device: l3.ID().Bytes()})
			return err
		},
		func() error { _, err := h.intent(owner, owner.ID(), goldenManifest(1, "1.0.0", 64<<20)); return err },
		func() error { _, err := h.intent(l3, owner.ID(), goldenManifest(2, "1.0.0", 64<<20)); return err },
		func() error {
			upto := uint64(1)
			_, err := h.add(owner, card.KindDelegate, projections.DelegateBody{Device: l3.ID().Bytes(), Revoked: true, Upto: &upto})
			return err
		},
		func() error { h.fork(l1.ID()); h.fork(l2.ID()); h.fork(l3.ID()); return nil },
		func() error { _, err := h.intent(l1, owner.ID(), goldenManifest(2, "1.1.0", 64<<20)); return err },
		func() error { _, err := h.intent(l2, owner.ID(), goldenManifest(2, "1.0.0", 96<<20)); return err },
		func() error { _, err := h.intent(l1, owner.ID(), goldenManifest(4, "1.1.0", 64<<20)); return err },
		func() error { _, err := h.intent(l2, owner.ID(), goldenManifest(5, "1.0.0", 96<<20)); return err },
		func() error { _, err := h.intent(l3, owner.ID(), goldenManifest(9, "6.6.6", 64<<20)); return err },
	}
	var out []*Vector
	for i, s := range steps {
		if err := s(); err != nil {
			return nil, fmt.Errorf("intent-merge step %d: %w", i, err)
		}
	}
	v := newVector("intent-merge", "laptops-and-revoked-device", "accept",
		"folding card.N (any chain-respecting order) gives exactly this desired state (deterministic CBOR),",
		"these document heads and these conflicts; the revoked device's card after its upto does not count")
	for i, c := range h.order {
		v.SetHex(fmt.Sprintf("card.%d", i+1), c.Bytes())
	}
	setProjections(v, h.st, 0)
	out = append(out, v)
	return out, nil
}

func setProjections(v *Vector, st *projections.State, at int64) {
	ds := st.Desired()
	v.SetHex("desired", projections.Encode(ds))
	var heads []string
	for _, d := range ds {
		heads = append(heads, strings.Join(d.Heads, ","))
	}
	v.Set("heads", strings.Join(heads, ";"))
	var cs []string
	for _, d := range ds {
		for _, c := range d.Conflicts {
			cs = append(cs, fmt.Sprintf("%s %s winner %s", d.Service, c.Path, crdt.ShowValue(c.Winner.Value)))
		}
	}
	v.Set("conflicts", strings.Join(cs, "; "))
	if at != 0 {
		v.Set("at", strconv.FormatInt(at, 10))
		v.SetHex("observed", projections.Encode(st.Observed()))
		v.SetHex("plan", projections.Encode(st.Plan(time.Unix(at, 0))))
	}
}

// checkHistory folds the vector's cards in their order and in reverse
// chain-respecting order (logs reversed), and compares every projection.
func checkHistory(v *Vector) error {
	cards, err := givenCards(v)
	if err != nil {
		return err
	}
	at := int64(0)
	if s, ok := v.Get("at"); ok {
		if at, err = strconv.ParseInt(s, 10, 64); err != nil {
			return fmt.Errorf("%w: %s: at", ErrVectorFormat, v.ID())
		}
	}
	orders := [][]*card.Card{cards, reverseLogs(cards)}
	for k, order := range orders {
		st := projections.New()
		for _, c := range order {
			_ = st.Add(c)
		}
		got := &Vector{}
		setProjections(got, st, at)
		for _, f := range got.Fields {
			want, err := v.Must(f.Key)
			if err != nil {
				return err
			}
			if want != f.Value {
				return fmt.Errorf("%w: %s: %s differs (arrival order %d):\n got %s\nwant %s", ErrMismatch, v.ID(), f.Key, k, f.Value, want)
			}
		}
	}
	return nil
}

// reverseLogs delivers the logs one after the other, last author first.
func reverseLogs(cards []*card.Card) []*card.Card {
	var authors []key.ID
	by := map[key.ID][]*card.Card{}
	for _, c := range cards {
		if by[c.Author()] == nil {
			authors = append(authors, c.Author())
		}
		by[c.Author()] = append(by[c.Author()], c)
	}
	var out []*card.Card
	for i := len(authors) - 1; i >= 0; i-- {
		out = append(out, by[authors[i]]...)
	}
	return out
}

func genPlans() ([]*Vector, error) {
	owner, h1, h2, h3 := Fixture("owner"), Fixture("host1"), Fixture("host2"), Fixture("host3")
	h := newHistory()
	var g1 *card.Card
	profile := func(sk *key.Secret, cpu, mem uint64) error {
		_, err := h.add(sk, card.KindProfile, projections.ProfileBody{CPU: cpu, Memory: mem, Disk: 1 << 30, Labels: map[string]string{"zone": "eu"}})
		return err
	}
	grant := func(sk *key.Secret) (*card.Card, error) {
		return h.add(sk, card.KindGrant, projections.GrantBody{Service: "web", Owner: owner.ID().Bytes(), Limits: projections.GrantLimits{Memory: 1 << 30, Instances: 2}})
	}
	observe := func(sk *key.Secret, state string) error {
		_, err := h.add(sk, card.KindObserve, projections.ObserveBody{Peer: sk.ID().Bytes(), Service: "web", Owner: owner.ID().Bytes(), State: state})
		return err
	}
	var err error
	steps := []func() error{
		func() error { _, err := h.intent(owner, owner.ID(), goldenManifest(2, "1.0.0", 64<<20)); return err },
		func() error { return profile(h1, 4000, 4<<30) },
		func() error { g1, err = grant(h1); return err },
		func() error { return profile(h2, 4000, 4<<30) },
		func() error { _, err := grant(h2); return err },
		func() error { return profile(h3, 100, 1<<20) },
		func() error { _, err := grant(h3); return err },
		func() error { return observe(h1, kinds.StateRunning) },
		func() error { return observe(h2, kinds.StateSuspended) },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			return nil, fmt.Errorf("plan step %d: %w", i, err)
		}
	}
	at := BaseTS + 86400
	var out []*Vector
	snap := func(name, why string) {
		v := newVector("plan", name, "accept", "folding card.N gives exactly this desired state, observed state and plan at time at", why)
		for i, c := range h.order {
			v.SetHex(fmt.Sprintf("card.%d", i+1), c.Bytes())
		}
		setProjections(v, h.st, at)
		out = append(out, v)
	}
	snap("01-resume", "h1 runs web, h2 has it suspended, h3 is too small: resume on h2")
	gid := g1.ID()
	if _, err := h.add(h1, card.KindRevoke, projections.RevokeBody{Card: gid[:], Reason: "maintenance"}); err != nil {
		return nil, err
	}
	snap("02-suspend-after-revoke", "h1 withdraws its grant: web is suspended there (no free host to move to), h2 resumes, one replica is unmet")
	h4 := Fixture("host4")
	if err := profile(h4, 8000, 8<<30); err != nil {
		return nil, err
	}
	if _, err := grant(h4); err != nil {
		return nil, err
	}
	snap("03-move-to-new-host", "host4 offers a grant: web moves from host1 to host4, h2 resumes")
	return out, nil
}

func genIntentRejects() ([]*Vector, error) {
	owner, other := Fixture("owner"), Fixture("laptop")
	h := newHistory()
	good, err := h.intent(owner, owner.ID(), goldenManifest(1, "1.0.0", 64<<20))
	if err != nil {
		return nil, err
	}
	var gb projections.IntentBody
	_ = good.DecodeBody(&gb)
	forged := crdt.New(owner.ID(), "web")
	fb, err := forged.Build(other.ID(), goldenManifest(3, "x", 64<<20), time.Unix(BaseTS, 0))
	if err != nil {
		return nil, err
	}
	flipped := append([]byte(nil), gb.Changes...)
	flipped[len(flipped)/2] ^= 0x20
	cases := []struct {
		name, reason, why string
		changes           []byte
	}{
		{"not-automerge", "bad-changes", "the changes are not Automerge change chunks", []byte("not automerge")},
		{"checksum", "bad-changes", "one byte of a valid change flipped: the chunk checksum fails", flipped},
		{"trailing", "bad-changes", "a valid change followed by a stray byte", append(append([]byte(nil), gb.Changes...), 0)},
		{"wrong-actor", "wrong-actor", "valid changes whose actor is not the card's author", fb},
		{"empty", "no-changes", "an intent card with no changes", []byte{}},
	}
	var out []*Vector
	for _, c := range cases {
		card2, err := h.add(owner, card.KindIntent, projections.IntentBody{Service: "web", Owner: owner.ID().Bytes(), Changes: c.changes})
		if err != nil {
			return nil, err
		}
		v := newVector("intent-reject", c.name, "reject "+c.reason, c.why, "the projections must refuse it and stay as they were")
		v.SetHex("card", card2.Bytes())
		out = append(out, v)
	}
	return out, nil
}

func checkIntentReject(v *Vector) error {
	b, err := v.Hex("card")
	if err != nil {
		return err
	}
	_, reason, err := v.Expect()
	if err != nil {
		return err
	}
	c, err := card.Decode(b, caps.Builtin())
	if err != nil {
		return fmt.Errorf("%w: %s: the card itself is refused (%v); these vectors test the intent body", ErrMismatch, v.ID(), err)
	}
	err = projections.Check(c)
	want := map[string]error{"bad-changes": crdt.ErrBadChanges, "wrong-actor": crdt.ErrWrongActor, "no-changes": crdt.ErrNoChanges}[reason]
	if want == nil {
		return fmt.Errorf("%w: %s: unknown reason %q", ErrVectorFormat, v.ID(), reason)
	}
	if !errors.Is(err, want) {
		return fmt.Errorf("%w: %s: want %s, got %v", ErrMismatch, v.ID(), reason, err)
	}
	return nil
}
