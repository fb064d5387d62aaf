package home

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/key"
)

func TestTrustSets(t *testing.T) {
	h, _, err := Init(t.TempDir(), "", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := key.Generate(rand.Reader)
	b, _ := key.Generate(rand.Reader)
	if _, err := h.TrustSet("friends"); !errors.Is(err, ErrNoSet) {
		t.Fatalf("missing set: %v", err)
	}
	if err := h.SetTrustSet("friends", []key.ID{b.ID(), a.ID(), b.ID()}); err != nil {
		t.Fatal(err)
	}
	got, err := h.TrustSet("friends")
	if err != nil || len(got) != 2 || got[0].Compare(got[1]) >= 0 {
		t.Fatalf("set = %v, %v (want 2 sorted members)", got, err)
	}
	if err := h.SetTrustSet("Bad Name", []key.ID{a.ID()}); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
	if err := h.SetTrustSet("friends", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.TrustSet("friends"); !errors.Is(err, ErrNoSet) {
		t.Fatalf("deleted set: %v", err)
	}
	os.WriteFile(filepath.Join(h.Dir, "trustsets.json"), []byte(`{"x": ["not-an-id"]}`), 0o600)
	if _, err := h.TrustSets(); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("damaged file: %v", err)
	}
}

func TestLearnedCaps(t *testing.T) {
	h, _, err := Init(t.TempDir(), "", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x := caps.Spec{Schema: caps.SchemaV1, Name: "x", Semver: "1.0.0", Purpose: "x"}
	bundle := caps.Spec{Schema: caps.SchemaV1, Name: "xb", Semver: "1.0.0", Purpose: "b", Members: []string{x.ID(), caps.CardV1.ID()}}
	if _, err := h.AddCapSpec(&caps.Doc{Spec: bundle}, false); err != nil {
		t.Fatal(err)
	}
	set, err := h.Caps()
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Require([]string{bundle.ID()}); !errors.Is(err, caps.ErrUnsupported) {
		t.Fatalf("bundle with undeclared member: %v", err)
	}
	if _, err := h.AddCapSpec(&caps.Doc{Spec: bundle}, true); err == nil {
		t.Fatal("declared a bundle supported")
	}
	if _, err := h.AddCapSpec(&caps.Doc{Spec: x}, true); err != nil {
		t.Fatal(err)
	}
	if set, err = h.Caps(); err != nil {
		t.Fatal(err)
	}
	if err := set.Require([]string{bundle.ID()}); err != nil {
		t.Fatalf("after declaring x: %v", err)
	}
	// The store opened by the home enforces the learned set.
	st, err := h.OpenStore(sublog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// A spec file whose name is not its cap ID is refused.
	os.Rename(filepath.Join(h.Dir, "caps", x.ID()+".capspec"), filepath.Join(h.Dir, "caps", bundle.ID()+"x.capspec"))
	if _, err := h.Caps(); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("misnamed spec file: %v", err)
	}
}
