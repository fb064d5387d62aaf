package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/key"
)

// Every field of the schema survives renderManifest and append's parser,
// including values YAML would otherwise read as numbers or booleans.
func TestRenderManifestRoundTrips(t *testing.T) {
	ids := make([]key.ID, 3)
	for i := range ids {
		sk, err := key.FromSeed(key.DeriveSeed([]byte("render"), string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = sk.ID()
	}
	n := func(v int64) *int64 { return &v }
	yes := true
	m := &crdt.Manifest{Service: "web", Owner: &ids[0], Bundle: "sha256:" + strings.Repeat("ab", 32),
		Replicas: n(3), Version: "1.10", CPU: n(1500), Memory: n(64 << 20), Disk: n(1000), GPU: n(2),
		Bandwidth: n(10 << 20), Egress: &yes, Hosts: []key.ID{ids[1], ids[2]}, Avoid: []key.ID{ids[0]},
		Labels: map[string]string{"zone": "eu", "true": "no", "1": "0x10"},
		Policy: map[string]any{"tier": "gold", "on": true, "n": int64(-4), "yes": "true", "quote": "a \"b\"\n\tc"}}
	text := renderManifest(m)
	d, err := ParseDoc("rendered", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	got, err := parseIntent(d)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	// The same manifest: applying one over a document made of the other
	// changes nothing.
	doc := crdt.New(ids[0], "web")
	b, err := doc.Build(ids[0], m, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	p, err := crdt.Check(ids[0], ids[0], "web", b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := doc.Apply(p, "c"); err != nil {
		t.Fatal(err)
	}
	if delta := doc.Diff(ids[1], got); len(delta.Changes) != 0 {
		t.Fatalf("rendered manifest differs: %+v\n%s", delta.Changes, text)
	}
	if !strings.Contains(text, "  replicas: 3\n") || !strings.Contains(text, "    cpu: \"1500m\"\n") || !strings.Contains(text, "\"1\": \"0x10\"") {
		t.Fatalf("unexpected rendering:\n%s", text)
	}
	// A removed service renders as a removal that parses back as one.
	m.Remove = true
	d, err = ParseDoc("removed", []byte(renderManifest(m)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseIntent(d); err != nil || !got.Remove {
		t.Fatalf("removed: %+v %v", got, err)
	}
}
