package caps

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

func testKey(t testing.TB, name string) *key.Secret {
	t.Helper()
	sk, err := key.FromSeed(key.DeriveSeed([]byte("caps-test"), name))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func atom(name string) Spec {
	return Spec{Schema: SchemaV1, Name: name, Semver: "1.0.0", Purpose: "test cap " + name}
}

func bundle(name string, members ...string) Spec {
	s := atom(name)
	s.Members = members
	return s
}

func TestBuiltinIDsWellFormedAndDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, sp := range append(append([]Spec{}, Atomic...), CoreV1) {
		if err := sp.Validate(); err != nil {
			t.Fatalf("%s: %v", sp.Label(), err)
		}
		id := sp.ID()
		if err := ValidID(id); err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[id]; dup {
			t.Fatalf("%s and %s share ID %s", sp.Label(), other, id)
		}
		seen[id] = sp.Label()
	}
	b := Builtin()
	for id := range seen {
		if !b.Supports(id) {
			t.Errorf("builtin set does not support %s", seen[id])
		}
	}
}

func TestUnknownReqRejectedThenAccepted(t *testing.T) {
	s := Builtin()
	x := atom("x-feature")
	err := s.Require([]string{CardV1.ID(), x.ID()})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), x.ID()) {
		t.Fatalf("want unsupported naming %s, got %v", x.ID(), err)
	}
	s.Add(x)
	if err := s.Require([]string{CardV1.ID(), x.ID()}); err != nil {
		t.Fatalf("after Add: %v", err)
	}
}

func TestBundleExpandsBeforeEnforcement(t *testing.T) {
	s := Builtin()
	ok := bundle("b-ok", VisDirect.ID(), SuiteHPKE.ID())
	if _, err := s.Learn(ok); err != nil {
		t.Fatal(err)
	}
	if err := s.Require([]string{ok.ID()}); err != nil {
		t.Fatalf("bundle of supported members: %v", err)
	}
	unknown := atom("nobody-has-this")
	bad := bundle("b-bad", VisDirect.ID(), unknown.ID())
	if _, err := s.Learn(bad); err != nil {
		t.Fatal(err)
	}
	err := s.Require([]string{bad.ID()})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), unknown.ID()) ||
		!strings.Contains(err.Error(), "b-bad/1.0.0") {
		t.Fatalf("want unsupported naming member and bundle, got %v", err)
	}
	// An unknown bundle is just an unknown cap.
	if err := s.Require([]string{bundle("never-learned", VisDirect.ID()).ID()}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown bundle: %v", err)
	}
	// Nested bundles expand too.
	outer := bundle("outer", ok.ID(), CardV1.ID())
	s.Learn(outer)
	got, err := s.Expand([]string{outer.ID()})
	if err != nil {
		t.Fatal(err)
	}
	want := uniqSorted([]string{VisDirect.ID(), SuiteHPKE.ID(), CardV1.ID()})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("expand = %v, want %v", got, want)
	}
}

func TestExpandDeterministic(t *testing.T) {
	s := Builtin()
	a, err := s.Expand([]string{CoreV1.ID(), VisNode.ID()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Expand([]string{VisNode.ID(), CoreV1.ID(), CoreV1.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) || len(a) != len(Atomic) {
		t.Fatalf("expansions differ or wrong size: %d vs %d (want %d)", len(a), len(b), len(Atomic))
	}
}

// Content addressing makes real cycles impossible to build (a bundle's ID
// depends on its members), so the test plants one directly in the graph: the
// expander must stop with an error, not loop.
func TestBundleCycleIsAnError(t *testing.T) {
	s := Builtin()
	a, b := bundle("cyc-a", CardV1.ID()), bundle("cyc-b", CardV1.ID())
	ida, idb := a.ID(), b.ID()
	a.Members, b.Members = []string{idb}, []string{ida}
	s.specs[ida], s.specs[idb] = a, b
	for _, f := range []func() error{
		func() error { _, err := s.Expand([]string{ida}); return err },
		func() error { return s.Require([]string{idb}) },
	} {
		if err := f(); !errors.Is(err, ErrBundleCycle) {
			t.Fatalf("want ErrBundleCycle, got %v", err)
		}
	}
	self := bundle("self", CardV1.ID())
	ids := self.ID()
	self.Members = []string{ids}
	s.specs[ids] = self
	if _, err := s.Expand([]string{ids}); !errors.Is(err, ErrBundleCycle) {
		t.Fatalf("self cycle: %v", err)
	}
}

func TestBundleBounds(t *testing.T) {
	s := Builtin()
	// Depth: a chain of nested bundles deeper than the bound.
	id := CardV1.ID()
	for i := 0; i <= MaxBundleDepth; i++ {
		sp := bundle(fmt.Sprintf("deep-%d", i), id)
		if _, err := s.Learn(sp); err != nil {
			t.Fatal(err)
		}
		id = sp.ID()
	}
	if _, err := s.Expand([]string{id}); !errors.Is(err, ErrBundleTooLarge) {
		t.Fatalf("depth: %v", err)
	}
	// Width: 8 bundles of 64 distinct atoms each is over MaxExpanded.
	var outer []string
	for i := range 8 {
		var m []string
		for j := range MaxMembers {
			m = append(m, atom(fmt.Sprintf("w-%d-%d", i, j)).ID())
		}
		sp := bundle(fmt.Sprintf("wide-%d", i), m...)
		s.Learn(sp)
		outer = append(outer, sp.ID())
	}
	top := bundle("wide", outer...)
	s.Learn(top)
	if _, err := s.Expand([]string{top.ID()}); !errors.Is(err, ErrBundleTooLarge) {
		t.Fatalf("width: %v", err)
	}
	// Diamond: shared sub-bundles are expanded once, not exponentially.
	d := bundle("d0", CardV1.ID())
	s.Learn(d)
	for i := 1; i < MaxBundleDepth; i++ {
		nd := bundle(fmt.Sprintf("d%d", i), d.ID(), bundle(fmt.Sprintf("d%dx", i), d.ID()).ID())
		s.Learn(bundle(fmt.Sprintf("d%dx", i), d.ID()))
		s.Learn(nd)
		d = nd
	}
	if _, err := s.Expand([]string{d.ID()}); err != nil {
		t.Fatalf("diamond: %v", err)
	}
}

func TestConflict(t *testing.T) {
	s := Builtin()
	a := atom("conf-a")
	b := atom("conf-b")
	b.Interop = &Interop{Conflicts: []string{a.ID()}}
	s.Add(a)
	s.Add(b)
	if err := s.Require([]string{a.ID()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Require([]string{a.ID(), b.ID()}); !errors.Is(err, ErrConflict) {
		t.Fatalf("want conflict, got %v", err)
	}
}

func TestNegotiate(t *testing.T) {
	s := Builtin()
	x := atom("theirs-only").ID()
	got := s.Negotiate([]string{x, VisGroup.ID(), "garbage", CardV1.ID(), CardV1.ID()})
	want := uniqSorted([]string{VisGroup.ID(), CardV1.ID()})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("negotiate = %v, want %v", got, want)
	}
}

func TestSpecValidate(t *testing.T) {
	good := atom("ok")
	for name, mut := range map[string]func(*Spec){
		"schema":      func(s *Spec) { s.Schema = "cap-spec/v2" },
		"name":        func(s *Spec) { s.Name = "Bad Name" },
		"semver":      func(s *Spec) { s.Semver = "1.0" },
		"purpose":     func(s *Spec) { s.Purpose = "" },
		"member id":   func(s *Spec) { s.Members = []string{"bnotanid"} },
		"dup member":  func(s *Spec) { s.Members = []string{CardV1.ID(), CardV1.ID()} },
		"empty inter": func(s *Spec) { s.Interop = &Interop{} },
		"conflict id": func(s *Spec) { s.Interop = &Interop{Conflicts: []string{"x"}} },
	} {
		s := good
		mut(&s)
		if err := s.Validate(); !errors.Is(err, ErrBadSpec) {
			t.Errorf("%s: want ErrBadSpec, got %v", name, err)
		}
	}
}

func TestDocSignParse(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	d := &Doc{Spec: bundle("signed", CardV1.ID())}
	id := d.ID()
	if err := d.Sign(alice); err != nil {
		t.Fatal(err)
	}
	if err := d.Sign(bob); err != nil {
		t.Fatal(err)
	}
	if d.ID() != id {
		t.Fatal("signatures changed the cap ID")
	}
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDoc(b)
	if err != nil {
		t.Fatal(err)
	}
	signers, _ := got.Signers()
	if got.ID() != id || len(signers) != 2 || signers[0] != alice.ID() || signers[1] != bob.ID() {
		t.Fatalf("round trip: id %s signers %v", got.ID(), signers)
	}

	// A signature over another spec does not verify on this one.
	other := &Doc{Spec: atom("other")}
	other.Sign(alice)
	forged := &Doc{Spec: d.Spec, Signatures: other.Signatures}
	fb, _ := forged.Marshal()
	if _, err := ParseDoc(fb); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("lifted signature: %v", err)
	}
	// A flipped signature byte.
	bad := &Doc{Spec: d.Spec, Signatures: [][]byte{bytes.Clone(d.Signatures[0])}}
	bad.Signatures[0][len(bad.Signatures[0])-1] ^= 1
	bb, _ := bad.Marshal()
	if _, err := ParseDoc(bb); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("flipped signature: %v", err)
	}
	// Twice the same signer.
	dup := &Doc{Spec: d.Spec, Signatures: [][]byte{d.Signatures[0], d.Signatures[0]}}
	db, _ := dup.Marshal()
	if _, err := ParseDoc(db); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("duplicate signer: %v", err)
	}
	// Unknown field, non-canonical encoding.
	var m map[string]any
	if err := canon.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["extra"] = 1
	if _, err := ParseDoc(canon.MustMarshal(m)); !errors.Is(err, canon.ErrUnknownField) {
		t.Fatalf("unknown field: %v", err)
	}
	nc := append([]byte{0xb9, 0x00, byte(len(m) - 1)}, b[1:]...) // map length in a non-shortest head
	if _, err := ParseDoc(nc); !errors.Is(err, canon.ErrNonCanonical) {
		t.Fatalf("non-canonical: %v", err)
	}
}

func TestNotice(t *testing.T) {
	curator, mallory := testKey(t, "curator"), testKey(t, "mallory")
	old, repl := atom("old"), atom("new")
	b, err := SignNotice(curator, Notice{Cap: old.ID(), ReplacedBy: []string{repl.ID()}, Reason: "superseded", TS: 100})
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParseNotice(b)
	if err != nil {
		t.Fatal(err)
	}
	if n.Signer != curator.ID() || n.Cap != old.ID() {
		t.Fatalf("notice %+v", n)
	}
	s := Builtin()
	s.Add(old)
	trusted := func(id key.ID) bool { return id == curator.ID() }
	mb, _ := SignNotice(mallory, Notice{Cap: old.ID(), TS: 1})
	mn, _ := ParseNotice(mb)
	if err := s.Deprecate(mn, trusted); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("untrusted notice: %v", err)
	}
	if err := s.Deprecate(n, trusted); err != nil {
		t.Fatal(err)
	}
	if d := s.Deprecated([]string{old.ID()}); len(d) != 1 || d[0].ReplacedBy[0] != repl.ID() {
		t.Fatalf("deprecated = %+v", d)
	}
	if err := s.Require([]string{old.ID()}); err != nil {
		t.Fatalf("deprecation must not unsupport: %v", err)
	}
	b[len(b)-1] ^= 1
	if _, err := ParseNotice(b); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered notice: %v", err)
	}
}

func FuzzParseDoc(f *testing.F) {
	d := &Doc{Spec: bundle("fz", CardV1.ID())}
	d.Sign(testKey(f, "fz"))
	b, _ := d.Marshal()
	f.Add(b)
	f.Add(canon.MustMarshal(CardV1))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDoc(b)
		if err != nil {
			return
		}
		again, err := d.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted doc does not re-encode to itself: %v", err)
		}
	})
}

func FuzzParseNotice(f *testing.F) {
	b, _ := SignNotice(testKey(f, "fz"), Notice{Cap: CardV1.ID(), TS: 1})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNotice(b)
		if err == nil && ValidID(n.Cap) != nil {
			t.Fatal("accepted notice with bad cap")
		}
	})
}

func TestAdvertise(t *testing.T) {
	s := Builtin()
	a := s.Advertise()
	if a.Schema != SchemaNodeCaps || len(a.Supported) != len(Atomic)+1 {
		t.Fatalf("advert %+v", a)
	}
	for i := 1; i < len(a.Supported); i++ {
		if a.Supported[i-1] >= a.Supported[i] {
			t.Fatal("advert not sorted")
		}
	}
	b, err := canon.Marshal(a)
	if err != nil || canon.Check(b) != nil {
		t.Fatal("advert does not encode canonically")
	}
	if got := s.Negotiate(a.Supported); len(got) != len(a.Supported) {
		t.Fatalf("negotiating with ourselves lost caps: %d of %d", len(got), len(a.Supported))
	}
}
