package caps_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// The card decoder enforces reqs through the Set: bundles expand first and
// the error names the unsupported cap.
func TestCardDecodeEnforcesExpandedReqs(t *testing.T) {
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("caps-card"), "a"))
	unknown := caps.Spec{Schema: caps.SchemaV1, Name: "later", Semver: "0.1.0", Purpose: "not yet"}
	b := caps.Spec{Schema: caps.SchemaV1, Name: "mix", Semver: "1.0.0", Purpose: "bundle",
		Members: []string{caps.CardV1.ID(), unknown.ID()}}
	producer := caps.Builtin()
	producer.Add(unknown)
	producer.Learn(b)
	c, err := card.Sign(sk, 1, card.ID{}, card.Draft{Kind: "note", Body: map[string]string{"a": "b"},
		Reqs: []string{b.ID()}}, producer)
	if err != nil {
		t.Fatal(err)
	}
	reader := caps.Builtin()
	_, err = card.Decode(c.Bytes(), reader)
	if !errors.Is(err, card.ErrUnsupportedCp) || !strings.Contains(err.Error(), b.ID()) {
		t.Fatalf("unknown bundle: %v", err)
	}
	reader.Learn(b)
	_, err = card.Decode(c.Bytes(), reader)
	if !errors.Is(err, caps.ErrUnsupported) || !strings.Contains(err.Error(), unknown.ID()) {
		t.Fatalf("bundle with unknown member: %v", err)
	}
	reader.Add(unknown)
	if _, err := card.Decode(c.Bytes(), reader); err != nil {
		t.Fatalf("once supported: %v", err)
	}
}
