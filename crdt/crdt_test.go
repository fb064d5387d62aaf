package crdt

import (
	"bytes"
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
)

func ident(t testing.TB, n byte) *key.Secret {
	t.Helper()
	seed := bytes.Repeat([]byte{n}, 32)
	sk, err := key.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func i64(n int64) *int64 { return &n }

func manifest(replicas int64, version string) *Manifest {
	return &Manifest{Service: "web", Bundle: "sha256:" + strings.Repeat("ab", 32), Replicas: i64(replicas),
		Version: version, CPU: i64(500), Memory: i64(64 << 20)}
}

// apply checks and applies b (by author) to d, failing the test on error.
func apply(t testing.TB, d *Doc, author key.ID, b []byte, tag string) {
	t.Helper()
	p, err := Check(author, d.Owner(), d.Service(), b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply(p, tag); err != nil {
		t.Fatal(err)
	}
}

func TestGenesisDeterministic(t *testing.T) {
	o := ident(t, 1).ID()
	a, err := Genesis(o, "web")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Genesis(o, "web")
	c, _ := Genesis(o, "api")
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatal("genesis is not a function of (owner, service)")
	}
}

func TestTwoDevicesMergeDifferentFields(t *testing.T) {
	owner, l1, l2 := ident(t, 1), ident(t, 2), ident(t, 3)
	base := New(owner.ID(), "web")
	apply(t, base, owner.ID(), must(base.Build(owner.ID(), manifest(1, "1.0.0"), time.Unix(100, 0))), "c0")

	// Two laptops, same starting view, offline edits of different fields.
	d1, d2 := New(owner.ID(), "web"), New(owner.ID(), "web")
	for _, d := range []*Doc{d1, d2} {
		apply(t, d, owner.ID(), must(New(owner.ID(), "web").Build(owner.ID(), manifest(1, "1.0.0"), time.Unix(100, 0))), "c0")
	}
	e1 := must(d1.Build(l1.ID(), manifest(3, "1.0.0"), time.Unix(200, 0)))
	e2 := must(d2.Build(l2.ID(), manifest(1, "2.0.0"), time.Unix(201, 0)))
	apply(t, d1, l1.ID(), e1, "c1")
	apply(t, d2, l2.ID(), e2, "c2")
	apply(t, d1, l2.ID(), e2, "c2")
	apply(t, d2, l1.ID(), e1, "c1")
	for _, d := range []*Doc{d1, d2} {
		got := d.Desired()
		if got.Replicas != 3 || got.Version != "2.0.0" {
			t.Fatalf("merged desired = %+v", got)
		}
		if len(d.Conflicts()) != 0 {
			t.Fatalf("unexpected conflicts %+v", d.Conflicts())
		}
	}
	s1, _ := d1.Save()
	s2, _ := d2.Save()
	_ = s2
	if len(s1) == 0 || !sameHeads(d1.Heads(), d2.Heads()) {
		t.Fatal("documents did not converge")
	}
	if p := d1.Provenance("spec", "replicas"); len(p) != 1 || p[0] != "c1" {
		t.Fatalf("provenance of replicas = %v", p)
	}
}

func TestSameFieldConflictShowsWinner(t *testing.T) {
	owner, l1, l2 := ident(t, 1), ident(t, 2), ident(t, 3)
	g := must(New(owner.ID(), "web").Build(owner.ID(), manifest(1, "1.0.0"), time.Unix(100, 0)))
	d1, d2 := New(owner.ID(), "web"), New(owner.ID(), "web")
	apply(t, d1, owner.ID(), g, "c0")
	apply(t, d2, owner.ID(), g, "c0")
	e1 := must(d1.Build(l1.ID(), manifest(4, "1.0.0"), time.Unix(200, 0)))
	e2 := must(d2.Build(l2.ID(), manifest(5, "1.0.0"), time.Unix(200, 0)))
	apply(t, d1, l1.ID(), e1, "c1")
	apply(t, d1, l2.ID(), e2, "c2")
	apply(t, d2, l2.ID(), e2, "c2")
	apply(t, d2, l1.ID(), e1, "c1")
	r1, r2 := d1.Desired().Replicas, d2.Desired().Replicas
	if r1 != r2 || (r1 != 4 && r1 != 5) {
		t.Fatalf("replicas %d vs %d", r1, r2)
	}
	for _, d := range []*Doc{d1, d2} {
		cs := d.Conflicts()
		if len(cs) != 1 || cs[0].Path != "spec.replicas" || len(cs[0].Losers) != 1 {
			t.Fatalf("conflicts = %+v", cs)
		}
		if cs[0].Winner.Value != "i:"+map[int64]string{4: "4", 5: "5"}[r1] {
			t.Fatalf("winner %+v but value %d", cs[0].Winner, r1)
		}
	}
	// A later write that has seen both settles it.
	apply(t, d1, owner.ID(), must(d1.Build(owner.ID(), manifest(r1, "1.0.0"), time.Unix(300, 0))), "c3")
	if cs := d1.Conflicts(); len(cs) != 0 {
		t.Fatalf("conflict not settled: %+v", cs)
	}
}

func TestRemoveFieldAndService(t *testing.T) {
	owner := ident(t, 1)
	d := New(owner.ID(), "web")
	m := manifest(2, "1.0.0")
	m.Labels = map[string]string{"zone": "eu"}
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), m, time.Unix(1, 0))), "c1")
	if d.Desired().Labels["zone"] != "eu" {
		t.Fatal("label not set")
	}
	m.Labels = nil
	m.Version = ""
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), m, time.Unix(2, 0))), "c2")
	got := d.Desired()
	if got.Labels != nil || got.Version != "" || got.Replicas != 2 {
		t.Fatalf("fields not removed: %+v", got)
	}
	if _, err := d.Build(owner.ID(), m, time.Unix(3, 0)); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("unchanged manifest: %v", err)
	}
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), &Manifest{Service: "web", Remove: true}, time.Unix(3, 0))), "c3")
	if got := d.Desired(); !got.Removed || got.Replicas != 2 {
		t.Fatalf("removal: %+v", got)
	}
}

func TestCheckRejects(t *testing.T) {
	owner, dev := ident(t, 1), ident(t, 2)
	good := must(New(owner.ID(), "web").Build(owner.ID(), manifest(1, "1"), time.Unix(1, 0)))
	cases := map[string][]byte{
		"empty":    nil,
		"garbage":  []byte("not automerge at all"),
		"trailing": append(append([]byte(nil), good...), 0x00),
		"flipped":  flip(good, len(good)/2),
		"truncate": good[:len(good)-3],
	}
	for name, b := range cases {
		if _, err := Check(owner.ID(), owner.ID(), "web", b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Check(dev.ID(), owner.ID(), "web", good); !errors.Is(err, ErrWrongActor) {
		t.Errorf("foreign actor: %v", err)
	}
	if _, err := Check(owner.ID(), owner.ID(), "api", good); !errors.Is(err, ErrWrongActor) {
		t.Errorf("genesis of another service: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x40
	return c
}

func TestMissingDepsAndSeq(t *testing.T) {
	owner := ident(t, 1)
	d := New(owner.ID(), "web")
	c1 := must(d.Build(owner.ID(), manifest(1, "1"), time.Unix(1, 0)))
	apply(t, d, owner.ID(), c1, "c1")
	c2 := must(d.Build(owner.ID(), manifest(2, "1"), time.Unix(2, 0)))
	fresh := New(owner.ID(), "web")
	p, _ := Check(owner.ID(), owner.ID(), "web", c2)
	if _, err := fresh.Apply(p, "c2"); !errors.Is(err, ErrMissingDeps) {
		t.Fatalf("missing deps: %v", err)
	}
	// Same actor seq twice (a second, different change at seq 2).
	apply(t, d, owner.ID(), c2, "c2")
	other := New(owner.ID(), "web")
	apply(t, other, owner.ID(), c1, "c1")
	c2b := must(other.Build(owner.ID(), manifest(7, "1"), time.Unix(9, 0)))
	p, _ = Check(owner.ID(), owner.ID(), "web", c2b)
	if _, err := d.Apply(p, "c2b"); !errors.Is(err, ErrActorSeq) {
		t.Fatalf("duplicate actor seq: %v", err)
	}
}

func TestManifestErrorsNameFieldAndLine(t *testing.T) {
	lines := map[string]int{"spec.resources.memory": 7, "spec.replicas": 5, "spec.placement.hosts.0": 11}
	lineOf := func(p string) int { return lines[p] }
	spec := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"kind": "intent", "service": "web", "spec": m}
	}
	cases := []struct {
		doc   map[string]any
		field string
		line  int
	}{
		{spec("resources", map[string]any{"memory": "64Q"}), "spec.resources.memory", 7},
		{spec("replicas", "two"), "spec.replicas", 5},
		{spec("replicas", -1), "spec.replicas", 5},
		{spec("placement", map[string]any{"hosts": []any{"nope"}}), "spec.placement.hosts.0", 11},
		{spec("colour", "red"), "spec.colour", 0},
		{spec("bundle", "md5:00"), "spec.bundle", 0},
		{map[string]any{"kind": "intent", "spec": map[string]any{}}, "service", 0},
	}
	for _, c := range cases {
		_, err := ParseManifest(c.doc, lineOf)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || fe.Line != c.line {
			t.Errorf("%v: got %v, want field %s line %d", c.doc, err, c.field, c.line)
		}
	}
	pl, err := ParseManifest(spec("placement", map[string]any{"region": "home-lab", "labels": map[string]any{"zone": "eu"}}), nil)
	if err != nil || pl.Labels["region"] != "home-lab" || pl.Labels["zone"] != "eu" {
		t.Fatalf("placement shorthand: %+v %v", pl, err)
	}
	if _, err := ParseManifest(spec("placement", map[string]any{"region": 3}), nil); err == nil {
		t.Fatal("a non-string placement shorthand was accepted")
	}
	m, err := ParseManifest(spec("replicas", uint64(2), "resources", map[string]any{"cpu": "500m", "memory": "64Mi", "gpu": 0}), nil)
	if err != nil || *m.Replicas != 2 || *m.CPU != 500 || *m.Memory != 64<<20 || *m.GPU != 0 {
		t.Fatalf("%+v %v", m, err)
	}
}

func TestConvergenceShuffled(t *testing.T) {
	// Several actors build on random views; every causal delivery order
	// yields the same document, writes and conflicts.
	r := rand.New(rand.NewSource(1))
	owner := ident(t, 1)
	ids := []*key.Secret{owner, ident(t, 2), ident(t, 3)}
	type card struct {
		author key.ID
		b      []byte
		tag    string
	}
	var cards []card
	views := make([]*Doc, len(ids))
	for i := range views {
		views[i] = New(owner.ID(), "web")
	}
	for n := 0; n < 30; n++ {
		i := r.Intn(len(ids))
		if r.Intn(3) == 0 { // sync from a random other view
			for _, c := range cards {
				if p, _ := Check(c.author, owner.ID(), "web", c.b); len(views[i].Ready(p)) == 0 {
					views[i].Apply(p, c.tag)
				}
			}
		}
		b, err := views[i].Build(ids[i].ID(), manifest(int64(r.Intn(4)), []string{"1", "2", "3"}[r.Intn(3)]), time.Unix(int64(n), 0))
		if errors.Is(err, ErrUnchanged) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		tag := string(rune('a' + n))
		apply(t, views[i], ids[i].ID(), b, tag)
		cards = append(cards, card{ids[i].ID(), b, tag})
	}
	var ref []byte
	var refC []Conflict
	for k := 0; k < 5; k++ {
		order := r.Perm(len(cards))
		d := New(owner.ID(), "web")
		for len(order) > 0 {
			var rest []int
			for _, j := range order {
				p, _ := Check(cards[j].author, owner.ID(), "web", cards[j].b)
				if len(d.Ready(p)) > 0 {
					rest = append(rest, j)
					continue
				}
				if _, err := d.Apply(p, cards[j].tag); err != nil {
					t.Fatal(err)
				}
			}
			order = rest
		}
		s, _ := d.Save()
		_ = s
		got := d.Desired()
		enc := []byte(strings.Join(append(got.Heads, got.Version), ","))
		cs := d.Conflicts()
		if k == 0 {
			ref, refC = enc, cs
			continue
		}
		if !bytes.Equal(ref, enc) || !equalConflicts(refC, cs) {
			t.Fatalf("order %d differs:\n%s\n%s\n%+v\n%+v", k, ref, enc, refC, cs)
		}
	}
}

func equalConflicts(a, b []Conflict) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Path != b[i].Path || a[i].Winner != b[i].Winner || len(a[i].Losers) != len(b[i].Losers) {
			return false
		}
		for j := range a[i].Losers {
			if a[i].Losers[j] != b[i].Losers[j] {
				return false
			}
		}
	}
	return true
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestOpWritesMatchDiff checks the operation decoder against the naive
// way of learning what a change wrote: fork the document at the change's
// dependencies and compare it before and after the change.
func TestOpWritesMatchDiff(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	owner := ident(t, 1)
	ids := []*key.Secret{owner, ident(t, 2), ident(t, 3)}
	views := []*Doc{New(owner.ID(), "web"), New(owner.ID(), "web"), New(owner.ID(), "web")}
	ref := New(owner.ID(), "web")
	var all [][]byte
	var authors []key.ID
	checked := 0
	for n := 0; n < 60; n++ {
		i := r.Intn(3)
		if r.Intn(3) == 0 {
			for k, b := range all {
				p, _ := Check(authors[k], owner.ID(), "web", b)
				if len(views[i].Ready(p)) == 0 {
					views[i].Apply(p, "x")
				}
			}
		}
		m := manifest(int64(r.Intn(3)), []string{"1", "2"}[r.Intn(2)])
		if r.Intn(2) == 0 {
			m.Labels = map[string]string{"zone": []string{"eu", "us"}[r.Intn(2)]}
		}
		b, err := views[i].Build(ids[i].ID(), m, time.Unix(int64(n), 0))
		if errors.Is(err, ErrUnchanged) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		apply(t, views[i], ids[i].ID(), b, "x")
		all, authors = append(all, b), append(authors, ids[i].ID())
	}
	for k, b := range all {
		p, _ := Check(authors[k], owner.ID(), "web", b)
		for _, c := range p.chs {
			if ref.Has(c.hash) {
				continue
			}
			base := New(owner.ID(), "web").am
			if len(c.deps) > 0 {
				var err error
				if base, err = ref.am.Fork(c.deps...); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := flatten(base)
			if err := base.LoadIncremental(c.raw); err != nil {
				t.Fatal(err)
			}
			after, _ := flatten(base)
			naive := diff(before, after)
			got := ref.writesPreview(c)
			for p, v := range naive {
				if got[p] != v {
					t.Fatalf("change %d: naive says %s=%q, decoder %q", k, DisplayPath(p), v, got[p])
				}
			}
			for p, v := range got {
				if _, ok := naive[p]; !ok && before[p] != v {
					t.Fatalf("change %d: decoder says %s=%q, which changes nothing (was %q)", k, DisplayPath(p), v, before[p])
				}
			}
			checked++
			if _, err := ref.Apply(&Parsed{author: authors[k], chs: []rawChange{c}}, "x"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d changes checked", checked)
	}
}
