package golden

// Capability vectors: cap IDs of the built-in specs and of a signed spec
// document, spec documents that must be refused, and bundle expansion with
// its refusals.

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func init() {
	Register(&Suite{Name: "cap-id", Generate: genCapIDs, Check: checkCapID})
	Register(&Suite{Name: "cap-spec-reject", Generate: genCapSpecRejects, Check: checkCapSpecReject})
	Register(&Suite{Name: "cap-bundle", Generate: genCapBundles, Check: checkCapBundle})
}

// capsReason names the rejections of the caps and capsule vectors: the
// CBOR-level reasons first (they are the most specific), then ours, then
// the card and store reasons of Reason.
func capsReason(err error) string {
	for _, r := range []struct {
		name string
		err  error
	}{
		{"duplicate-key", canon.ErrDuplicateKey},
		{"indefinite-length", canon.ErrIndefinite},
		{"tag", canon.ErrTag},
		{"trailing-bytes", canon.ErrTrailing},
		{"non-canonical", canon.ErrNonCanonical},
		{"unknown-field", canon.ErrUnknownField},
		{"too-deep", canon.ErrTooDeep},
		{"bad-signature", caps.ErrBadSignature},
		{"bundle-cycle", caps.ErrBundleCycle},
		{"bundle-too-large", caps.ErrBundleTooLarge},
		{"conflict", caps.ErrConflict},
		{"unsupported-cap", caps.ErrUnsupported},
		{"bad-spec", caps.ErrBadSpec},
		{"not-a-recipient", capsule.ErrNotRecipient},
		{"tampered", capsule.ErrTampered},
		{"shredded", capsule.ErrShredded},
		{"unsupported-keying", capsule.ErrUnsupportedKeying},
		{"bad-revocation", capsule.ErrBadRevocation},
		{"capsule-malformed", capsule.ErrMalformed},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return Reason(err)
}

func expectCapsReject(v *Vector, err error, want string) error {
	if err == nil {
		return fmt.Errorf("%w: %s: accepted, want reject %s", ErrMismatch, v.ID(), want)
	}
	if got := capsReason(err); got != want {
		return fmt.Errorf("%w: %s: rejected as %s (%v), want %s", ErrMismatch, v.ID(), got, err, want)
	}
	return nil
}

// --- cap IDs ------------------------------------------------------------------

func genCapIDs() ([]*Vector, error) {
	var out []*Vector
	for _, sp := range append(append([]caps.Spec{}, caps.Atomic...), caps.CoreV1) {
		v := newVector("cap-id", "builtin-"+sp.Name, "accept",
			"built-in "+sp.Label()+": cap_id = \"b\" + base32lower(sha256(canonical CBOR of the spec without signatures))")
		v.SetHex("spec", canon.MustMarshal(sp))
		v.Set("cap-id", sp.ID())
		out = append(out, v)
	}
	d := &caps.Doc{Spec: caps.Spec{Schema: caps.SchemaV1, Name: "example-chat", Semver: "1.2.0",
		Purpose: "an application schema for chat notes", Behavior: "body {msg: text}",
		Interop: &caps.Interop{Requires: []string{caps.CardV1.ID()}}, DocsURI: "https://example.org/chat"}}
	for _, n := range []string{"alice", "bob"} {
		if err := d.Sign(Fixture(n)); err != nil {
			return nil, err
		}
	}
	b, err := d.Marshal()
	if err != nil {
		return nil, err
	}
	v := newVector("cap-id", "signed-spec", "accept",
		"a spec signed by alice and bob: each signature is a tagged COSE_Sign1 (EdDSA, kid) with a detached payload,",
		"the spec's canonical CBOR without signatures, and external_aad \"sublog/v1/capspec\"; signatures do not change the cap ID")
	v.SetHex("spec", b)
	v.Set("cap-id", d.ID())
	v.Set("signers", Fixture("alice").ID().String()+","+Fixture("bob").ID().String())
	out = append(out, v)
	return out, nil
}

func checkCapID(v *Vector) error {
	b, err := v.Hex("spec")
	if err != nil {
		return err
	}
	want, err := v.Must("cap-id")
	if err != nil {
		return err
	}
	d, err := caps.ParseDoc(b)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	if d.ID() != want {
		return fmt.Errorf("%w: %s: cap ID %s, want %s", ErrMismatch, v.ID(), d.ID(), want)
	}
	if s, ok := v.Get("signers"); ok {
		signers, _ := d.Signers()
		var got []string
		for _, id := range signers {
			got = append(got, id.String())
		}
		if strings.Join(got, ",") != s {
			return fmt.Errorf("%w: %s: signers %v, want %s", ErrMismatch, v.ID(), got, s)
		}
	}
	return nil
}

// --- refused spec documents ----------------------------------------------------

func genCapSpecRejects() ([]*Vector, error) {
	var out []*Vector
	add := func(name, reason string, b []byte, comment string) {
		v := newVector("cap-spec-reject", name, "reject "+reason, comment)
		v.SetHex("spec", b)
		out = append(out, v)
	}
	base := caps.Spec{Schema: caps.SchemaV1, Name: "example", Semver: "1.0.0", Purpose: "example"}
	mut := func(f func(*caps.Spec)) []byte { s := base; f(&s); return canon.MustMarshal(s) }
	add("bad-schema", "bad-spec", mut(func(s *caps.Spec) { s.Schema = "cap-spec/v2" }), "schema must be cap-spec/v1")
	add("bad-semver", "bad-spec", mut(func(s *caps.Spec) { s.Semver = "1.0" }), "semver must be MAJOR.MINOR.PATCH")
	add("bad-member-id", "bad-spec", mut(func(s *caps.Spec) { s.Members = []string{"bnot-a-cap-id"} }), "members must be cap IDs")
	add("empty-members", "bad-spec", canon.MustMarshal(map[string]any{"schema": caps.SchemaV1, "name": "example", "semver": "1.0.0",
		"purpose": "example", "members": []any{}}), "an empty members list must be omitted")
	m := map[string]any{"schema": caps.SchemaV1, "name": "example", "semver": "1.0.0", "purpose": "example", "color": "blue"}
	add("unknown-field", "unknown-field", canon.MustMarshal(m), "cap-spec/v1 has no field color")
	good := canon.MustMarshal(base)
	add("non-canonical-length", "non-canonical", append([]byte{0xb8, byte(len(m) - 1)}, good[1:]...), "map length in a two-byte head")

	signed := &caps.Doc{Spec: base}
	signed.Sign(Fixture("alice"))
	flipped := &caps.Doc{Spec: base, Signatures: [][]byte{append([]byte(nil), signed.Signatures[0]...)}}
	flipped.Signatures[0][len(flipped.Signatures[0])-1] ^= 1
	b, _ := flipped.Marshal()
	add("flipped-signature", "bad-signature", b, "the last byte of alice's signature flipped")
	other := &caps.Doc{Spec: caps.Spec{Schema: caps.SchemaV1, Name: "other", Semver: "1.0.0", Purpose: "other"}}
	other.Sign(Fixture("alice"))
	lifted := &caps.Doc{Spec: base, Signatures: other.Signatures}
	b, _ = lifted.Marshal()
	add("lifted-signature", "bad-signature", b, "alice's signature over another spec")
	dup := &caps.Doc{Spec: base, Signatures: [][]byte{signed.Signatures[0], signed.Signatures[0]}}
	b, _ = dup.Marshal()
	add("duplicate-signer", "bad-signature", b, "two signatures by alice")
	return out, nil
}

func checkCapSpecReject(v *Vector) error {
	_, reason, _ := v.Expect()
	b, err := v.Hex("spec")
	if err != nil {
		return err
	}
	_, err = caps.ParseDoc(b)
	return expectCapsReject(v, err, reason)
}

// --- bundles -------------------------------------------------------------------

func specOf(name string, members ...string) caps.Spec {
	return caps.Spec{Schema: caps.SchemaV1, Name: name, Semver: "1.0.0", Purpose: "vector " + name, Members: members}
}

func genCapBundles() ([]*Vector, error) {
	var out []*Vector
	add := func(name, expect string, specs []caps.Spec, supported []string, reqs []string, comment string) {
		v := newVector("cap-bundle", name, expect, comment,
			"the node knows the built-in caps plus spec.N, supports the built-ins plus 'supported', and checks 'reqs'")
		for i, s := range specs {
			v.SetHex(fmt.Sprintf("spec.%d", i+1), canon.MustMarshal(s))
		}
		if len(supported) > 0 {
			v.Set("supported", strings.Join(supported, ","))
		}
		v.Set("reqs", strings.Join(reqs, ","))
		if expect == "accept" {
			set := caps.Builtin()
			for _, s := range specs {
				set.Learn(s)
			}
			exp, _ := set.Expand(reqs)
			v.Set("expanded", strings.Join(exp, ","))
		}
		out = append(out, v)
	}
	enc := specOf("encrypted-notes", caps.CapsuleV1.ID(), caps.SuiteHPKE.ID(), caps.SuiteAEAD.ID(), caps.VisDirect.ID())
	outer := specOf("notes-suite", enc.ID(), caps.CardV1.ID(), caps.VisPublic.ID())
	add("flat", "accept", []caps.Spec{enc}, nil, []string{enc.ID()}, "a bundle of built-in members expands to them, sorted")
	add("nested", "accept", []caps.Spec{enc, outer}, nil, []string{outer.ID(), caps.VisDirect.ID()},
		"bundles expand recursively; duplicates collapse")
	add("core", "accept", nil, nil, []string{caps.CoreV1.ID()}, "the built-in sublog-core bundle")
	x := specOf("app-x")
	add("declared-member", "accept", []caps.Spec{x, specOf("with-x", x.ID(), caps.CardV1.ID())}, []string{x.ID()},
		[]string{specOf("with-x", x.ID(), caps.CardV1.ID()).ID()}, "a member the node declares supported")
	add("unknown-member", "reject unsupported-cap", []caps.Spec{specOf("with-x", x.ID(), caps.CardV1.ID())}, nil,
		[]string{specOf("with-x", x.ID(), caps.CardV1.ID()).ID()}, "a bundle expanding to a member the node does not support")
	add("unknown-cap", "reject unsupported-cap", nil, nil, []string{x.ID()}, "an atomic cap the node does not know")
	var chain []caps.Spec
	id := caps.CardV1.ID()
	for i := 0; i <= caps.MaxBundleDepth; i++ {
		s := specOf(fmt.Sprintf("level-%d", i), id)
		chain = append(chain, s)
		id = s.ID()
	}
	add("too-deep", "reject bundle-too-large", chain, nil, []string{id}, fmt.Sprintf("bundles nested deeper than %d", caps.MaxBundleDepth))
	a := specOf("conflict-a")
	b := caps.Spec{Schema: caps.SchemaV1, Name: "conflict-b", Semver: "1.0.0", Purpose: "vector conflict-b",
		Interop: &caps.Interop{Conflicts: []string{a.ID()}}}
	add("conflict", "reject conflict", []caps.Spec{a, b}, []string{a.ID(), b.ID()}, []string{a.ID(), b.ID()},
		"two required caps where one declares a conflict with the other")
	return out, nil
}

func checkCapBundle(v *Vector) error {
	accept, reason, _ := v.Expect()
	set := caps.Builtin()
	for i := 1; ; i++ {
		if _, ok := v.Get(fmt.Sprintf("spec.%d", i)); !ok {
			break
		}
		b, err := v.Hex(fmt.Sprintf("spec.%d", i))
		if err != nil {
			return err
		}
		d, err := caps.ParseDoc(b)
		if err != nil {
			return fmt.Errorf("%w: %s: spec.%d: %v", ErrMismatch, v.ID(), i, err)
		}
		set.Learn(d.Spec)
	}
	if s, ok := v.Get("supported"); ok {
		for _, id := range strings.Split(s, ",") {
			sp, known := set.Spec(id)
			if !known {
				return fmt.Errorf("%w: %s: supported %s has no spec", ErrVectorFormat, v.ID(), id)
			}
			set.Add(sp)
		}
	}
	r, err := v.Must("reqs")
	if err != nil {
		return err
	}
	reqs := strings.Split(r, ",")
	err = set.Require(reqs)
	if !accept {
		return expectCapsReject(v, err, reason)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	exp, err := set.Expand(reqs)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	if want, _ := v.Get("expanded"); strings.Join(exp, ",") != want {
		return fmt.Errorf("%w: %s: expanded to %v, want %s", ErrMismatch, v.ID(), exp, want)
	}
	return nil
}

var _ = card.KindCRL
var _ key.ID
