package crdt

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
)

// parse is ParseManifest for tests, failing on error.
func parse(t *testing.T, doc map[string]any) *Manifest {
	t.Helper()
	doc["kind"], doc["service"] = "intent", "web"
	m, err := ParseManifest(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func paths(d Delta) string {
	var out []string
	for _, c := range d.Changes {
		out = append(out, c.Op()+" "+DisplayPath(c.Path))
	}
	return strings.Join(out, "; ")
}

// The story in the document: the owner applies a whole manifest, a
// device a partial one ({replicas, policy}); nothing the device left out is
// removed, and each side's later manifests remove only what that side set.
func TestThreeWayRemovesOnlyWhatTheAuthorSet(t *testing.T) {
	owner, dev := ident(t, 1), ident(t, 2)
	d := New(owner.ID(), "web")
	full := manifest(2, "1.2.0") // bundle, replicas, version, cpu, memory
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), full, time.Unix(1, 0))), "o1")

	partial := parse(t, map[string]any{"spec": map[string]any{"replicas": 3, "policy": map[string]any{"tier": "gold"}}})
	if got := paths(d.Diff(dev.ID(), partial)); got != "add spec.policy.tier; change spec.replicas" {
		t.Fatalf("device's diff: %s", got)
	}
	if k := d.Diff(dev.ID(), partial).Kept; len(k) != 4 {
		t.Fatalf("kept %v, want bundle, cpu, memory, version", k)
	}
	apply(t, d, dev.ID(), must(d.Build(dev.ID(), partial, time.Unix(2, 0))), "d1")
	got := d.Desired()
	if got.Replicas != 3 || got.Version != "1.2.0" || got.Bundle == "" || got.Memory != 64<<20 || got.CPU != 500 || got.Policy["tier"] != "gold" {
		t.Fatalf("after the device's partial manifest: %+v", got)
	}
	// Applying the same manifest again changes nothing.
	if _, err := d.Build(dev.ID(), partial, time.Unix(3, 0)); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("re-applied: %v", err)
	}
	// The device drops policy: its own field goes, nothing else.
	again := parse(t, map[string]any{"spec": map[string]any{"replicas": 3}})
	if got := paths(d.Diff(dev.ID(), again)); got != "delete spec.policy.tier" {
		t.Fatalf("device's second diff: %s", got)
	}
	apply(t, d, dev.ID(), must(d.Build(dev.ID(), again, time.Unix(3, 0))), "d2")
	// The owner re-applies its whole manifest but for replicas: replicas
	// is the device's value now, so the owner leaving it out keeps it.
	noReplicas := manifest(2, "1.3.0")
	noReplicas.Replicas = nil
	if got := paths(d.Diff(owner.ID(), noReplicas)); got != "change spec.version" {
		t.Fatalf("owner's diff: %s", got)
	}
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), noReplicas, time.Unix(4, 0))), "o2")
	if got := d.Desired(); got.Replicas != 3 || got.Version != "1.3.0" {
		t.Fatalf("owner's manifest without replicas: %+v", got)
	}
	// The owner leaves out memory, which it set: removed.
	noMem := manifest(2, "1.3.0")
	noMem.Replicas, noMem.Memory = nil, nil
	if got := paths(d.Diff(owner.ID(), noMem)); got != "delete spec.resources.memory" {
		t.Fatalf("owner drops memory: %s", got)
	}
}

func TestExplicitDeletion(t *testing.T) {
	owner, dev := ident(t, 1), ident(t, 2)
	d := New(owner.ID(), "web")
	m := manifest(2, "1.2.0")
	m.Policy = map[string]any{"tier": "gold", "zone": "eu"}
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), m, time.Unix(1, 0))), "o1")

	// A delete-only manifest (no spec) removes what it names, whoever set
	// it, and nothing else.
	del := parse(t, map[string]any{"delete": []any{"spec.version", "spec.policy.tier"}})
	if !del.Patch {
		t.Fatal("a manifest with only delete: is not a patch")
	}
	if got := paths(d.Diff(dev.ID(), del)); got != "delete spec.policy.tier; delete spec.version" {
		t.Fatalf("explicit deletion: %s", got)
	}
	apply(t, d, dev.ID(), must(d.Build(dev.ID(), del, time.Unix(2, 0))), "d1")
	if got := d.Desired(); got.Version != "" || got.Policy["tier"] != "" || got.Policy["zone"] != "eu" || got.Replicas != 2 {
		t.Fatalf("after deletion: %+v", got)
	}
	// A container with new content: the map becomes exactly what is given.
	repl := parse(t, map[string]any{"delete": []any{"spec.policy"}, "spec": map[string]any{"policy": map[string]any{"tier": "silver"}}})
	if got := paths(d.Diff(dev.ID(), repl)); got != "add spec.policy.tier; delete spec.policy.zone" {
		t.Fatalf("replace a map: %s", got)
	}
	// Deleting what is not there changes nothing.
	if _, err := d.Build(dev.ID(), parse(t, map[string]any{"delete": []any{"spec.version"}}), time.Unix(3, 0)); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("deleting an absent field: %v", err)
	}
}

func TestDeleteListRefusals(t *testing.T) {
	for _, c := range []struct {
		doc   map[string]any
		field string
	}{
		{map[string]any{"delete": "spec.version"}, "delete"},
		{map[string]any{"delete": []any{"spec.colour"}}, "delete.0"},
		{map[string]any{"delete": []any{"spec.version", 3}}, "delete.1"},
		{map[string]any{"delete": []any{"spec.placement.hosts.nope"}}, "delete.0"},
		{map[string]any{"delete": []any{"spec.policy.bad name"}}, "delete.0"},
		{map[string]any{"delete": []any{"spec.replicas"}, "spec": map[string]any{"replicas": 2}}, "delete.0"},
		{map[string]any{"delete": []any{"spec.version"}, "remove": true}, "delete"},
		{map[string]any{}, "spec"},
	} {
		c.doc["kind"], c.doc["service"] = "intent", "web"
		_, err := ParseManifest(c.doc, nil)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%v: %v, want a refusal of field %s", c.doc, err, c.field)
		}
	}
	m := parse(t, map[string]any{"delete": []any{"spec.placement.region", "spec.placement.labels.zone", "spec.policy.a.b", "spec.policy.a.b"}})
	if got := strings.Join(m.Delete, " "); got != strings.Join([]string{"spec" + Sep + "placement" + Sep + "labels" + Sep + "region",
		"spec" + Sep + "placement" + Sep + "labels" + Sep + "zone", "spec" + Sep + "policy" + Sep + "a.b"}, " ") {
		t.Fatalf("delete paths %q", m.Delete)
	}
}

// Two laptops (owner and device) apply partial manifests offline; merged in
// either order, the document holds both and the same heads: the merge stays
// Automerge's, nothing depends on who applied first.
func TestOfflinePartialManifestsMerge(t *testing.T) {
	owner, dev := ident(t, 1), ident(t, 2)
	g := must(New(owner.ID(), "web").Build(owner.ID(), manifest(1, "1.0.0"), time.Unix(1, 0)))
	a, b := New(owner.ID(), "web"), New(owner.ID(), "web")
	apply(t, a, owner.ID(), g, "o1")
	apply(t, b, owner.ID(), g, "o1")
	ea := must(a.Build(owner.ID(), parse(t, map[string]any{"spec": map[string]any{"bundle": "sha256:" + strings.Repeat("ab", 32),
		"replicas": 1, "version": "1.1.0", "resources": map[string]any{"cpu": "500m", "memory": "64Mi"}}}), time.Unix(2, 0)))
	eb := must(b.Build(dev.ID(), parse(t, map[string]any{"spec": map[string]any{"replicas": 4, "policy": map[string]any{"tier": "gold"}}}), time.Unix(2, 0)))
	apply(t, a, owner.ID(), ea, "o2")
	apply(t, a, dev.ID(), eb, "d1")
	apply(t, b, dev.ID(), eb, "d1")
	apply(t, b, owner.ID(), ea, "o2")
	for _, d := range []*Doc{a, b} {
		got := d.Desired()
		if got.Version != "1.1.0" || got.Replicas != 4 || got.Policy["tier"] != "gold" || got.Memory != 64<<20 || got.Bundle == "" {
			t.Fatalf("merged: %+v", got)
		}
	}
	if !sameHeads(a.Heads(), b.Heads()) {
		t.Fatal("the two orders give different documents")
	}
}

// The merged document as a manifest applies back to itself with no change,
// by the owner and by a device; edited, it changes exactly the edit.
func TestManifestOfDocumentRoundTrips(t *testing.T) {
	owner, dev := ident(t, 1), ident(t, 2)
	d := New(owner.ID(), "web")
	m := manifest(2, "1.2.0")
	m.Hosts, m.Avoid = []key.ID{dev.ID()}, []key.ID{owner.ID()}
	m.Labels = map[string]string{"zone": "eu"}
	m.Policy = map[string]any{"tier": "gold", "n": int64(-3), "on": true}
	eg := true
	m.Egress, m.Disk, m.GPU, m.Bandwidth = &eg, i64(10<<20), i64(1), i64(1000)
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), m, time.Unix(1, 0))), "o1")
	apply(t, d, dev.ID(), must(d.Build(dev.ID(), parse(t, map[string]any{"spec": map[string]any{"replicas": 5}}), time.Unix(2, 0))), "d1")
	got, problems := d.Manifest()
	if len(problems) > 0 || got.Owner == nil || *got.Owner != owner.ID() {
		t.Fatalf("manifest of the document: %+v %v", got, problems)
	}
	for _, who := range []key.ID{owner.ID(), dev.ID()} {
		if _, err := d.Build(who, got, time.Unix(3, 0)); !errors.Is(err, ErrUnchanged) {
			t.Fatalf("the document's own manifest applied by %s: %v (%s)", who.Short(), err, paths(d.Diff(who, got)))
		}
	}
	got.Version = "2.0.0"
	if p := paths(d.Diff(dev.ID(), got)); p != "change spec.version" {
		t.Fatalf("edited: %s", p)
	}
	// A removed service's manifest says so and applies back unchanged.
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), &Manifest{Service: "web", Remove: true}, time.Unix(4, 0))), "o2")
	rm, _ := d.Manifest()
	if !rm.Remove {
		t.Fatal("removed service's manifest lacks remove")
	}
	if _, err := d.Build(dev.ID(), &Manifest{Service: "web", Remove: true}, time.Unix(5, 0)); !errors.Is(err, ErrUnchanged) {
		t.Fatalf("removal again: %v", err)
	}
}

// The writer keeps the same rule against the values it wrote itself.
func TestWriterThreeWay(t *testing.T) {
	owner, dev := ident(t, 1), ident(t, 2)
	w := NewWriter(owner.ID(), "web")
	d := New(owner.ID(), "web")
	first := must(d.Build(owner.ID(), manifest(2, "1.0.0"), time.Unix(1, 0)))
	apply(t, d, owner.ID(), first, "o1")
	if err := w.Receive(first); err != nil {
		t.Fatal(err)
	}
	b := must(w.Write(dev.ID(), parse(t, map[string]any{"spec": map[string]any{"replicas": 3, "policy": map[string]any{"a": "b"}}}), time.Unix(2, 0)))
	apply(t, d, dev.ID(), b, "d1")
	b = must(w.Write(dev.ID(), parse(t, map[string]any{"spec": map[string]any{"replicas": 3}}), time.Unix(3, 0)))
	apply(t, d, dev.ID(), b, "d2")
	if got := d.Desired(); got.Version != "1.0.0" || got.Replicas != 3 || len(got.Policy) != 0 {
		t.Fatalf("writer: %+v", got)
	}
}

// FuzzManifestRoundTrip: whatever manifest and delete list the parser
// accepts, applying them never panics, and the document's own manifest
// applies back to it with no change, by the owner and by a device.
func FuzzManifestRoundTrip(f *testing.F) {
	f.Add(int64(2), "1.0.0", "tier", "gold", "spec.version")
	f.Add(int64(0), "x", "a.b", "", "spec.policy")
	f.Add(int64(7), "2", "n", "3", "spec.placement.labels.zone")
	owner, dev := ident(f, 1), ident(f, 2)
	f.Fuzz(func(t *testing.T, replicas int64, version, pk, pv, del string) {
		m, err := ParseManifest(map[string]any{"kind": "intent", "service": "web", "spec": map[string]any{
			"replicas": replicas, "version": version, "policy": map[string]any{pk: pv},
			"placement": map[string]any{"labels": map[string]any{"zone": pv}}}}, nil)
		if err != nil {
			return
		}
		d := New(owner.ID(), "web")
		apply(t, d, owner.ID(), must(d.Build(owner.ID(), m, time.Unix(1, 0))), "o1")
		dm, err := ParseManifest(map[string]any{"kind": "intent", "service": "web", "delete": []any{del}}, nil)
		if err == nil {
			b, err := d.Build(dev.ID(), dm, time.Unix(2, 0))
			switch {
			case err == nil:
				apply(t, d, dev.ID(), b, "d1")
			case !errors.Is(err, ErrUnchanged):
				t.Fatalf("delete %q: %v", del, err)
			}
		}
		got, problems := d.Manifest()
		if len(problems) > 0 {
			t.Fatalf("problems reading back: %v", problems)
		}
		for _, who := range []key.ID{owner.ID(), dev.ID()} {
			if _, err := d.Build(who, got, time.Unix(3, 0)); !errors.Is(err, ErrUnchanged) {
				t.Fatalf("the document's manifest applied by %s changes %s (%v)", who.Short(), paths(d.Diff(who, got)), err)
			}
		}
	})
}
