package golden

// Encrypted-card vectors: one card per visibility mode (sealed with a fixed
// randomness stream, so the ephemeral keys, CEKs and padding are fixed in the
// generator only; the checker needs nothing but the file), tampered cards that
// must not decrypt, and revocation bodies (revoke, crl).

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func init() {
	Register(&Suite{Name: "capsule", Generate: genCapsules, Check: checkCapsule})
	Register(&Suite{Name: "capsule-reject", Generate: genCapsuleRejects, Check: checkCapsuleReject})
	Register(&Suite{Name: "crl", Generate: genCRLs, Check: checkCRL})
}

// detRand is the generator's fixed randomness: ChaCha8 under a seed derived
// from the vector's name.
type detRand struct{ r *mrand.ChaCha8 }

func (d detRand) Read(p []byte) (int, error) { return d.r.Read(p) }

func newDetRand(name string) detRand {
	var seed [32]byte
	copy(seed[:], key.DeriveSeed(Master, "capsule-rand/"+name))
	return detRand{mrand.NewChaCha8(seed)}
}

type sealedCase struct {
	name, vis string
	to        []string
	reader    string // fixture that can read ("" for public)
	other     string // fixture that cannot
	kek       bool
	body      any
}

var sealedCases = []sealedCase{
	{name: "public", vis: capsule.Public, body: map[string]string{"msg": "hello, world"}},
	{name: "direct", vis: capsule.Direct, to: []string{"bob"}, reader: "bob", other: "carol", body: map[string]string{"msg": "for bob"}},
	{name: "trustset", vis: capsule.TrustSet, to: []string{"bob", "carol", "dave"}, reader: "carol", other: "eve", body: map[string]string{"msg": "for friends"}},
	{name: "group", vis: capsule.Group, to: []string{"bob", "carol", "dave", "erin", "frank"}, reader: "erin", other: "eve", body: map[string]string{"msg": "for the group"}},
	{name: "node", vis: capsule.Node, kek: true, other: "bob", body: map[string]string{"msg": "for this node"}},
}

// sealCard seals body for c and signs alice's card at seq 1 with draft
// changes applied after sealing (tampering).
func sealCard(c sealedCase, tweak func(*card.Draft)) (*card.Card, *capsule.KEK, error) {
	rnd := newDetRand(c.name)
	rid := make([]byte, card.RIDSize)
	rnd.Read(rid)
	body := canon.MustMarshal(c.body)
	p := capsule.Params{Net: card.DefaultNet, RID: rid, Visibility: c.vis, Body: body}
	for _, n := range c.to {
		p.Recipients = append(p.Recipients, Fixture(n).ID())
	}
	var kek *capsule.KEK
	if c.kek {
		var err error
		if kek, err = capsule.NewKEK(rnd); err != nil {
			return nil, nil, err
		}
		p.KEK = kek
	}
	s, err := capsule.Seal(p, rnd)
	if err != nil {
		return nil, nil, err
	}
	d := s.Draft(card.Draft{Kind: card.KindNote, TS: BaseTS, RID: rid})
	if tweak != nil {
		tweak(&d)
	}
	cd, err := card.Sign(Fixture("alice"), 1, card.ID{}, d, caps.Builtin())
	return cd, kek, err
}

func genCapsules() ([]*Vector, error) {
	var out []*Vector
	for _, c := range sealedCases {
		cd, kek, err := sealCard(c, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		v := newVector("capsule", c.name, "accept",
			"alice's card with visibility "+c.vis+"; body = {capsule, payload}; policy_ref = SHA-256(\"sublog/v1/policy\\0\" || policy);",
			"content_hash = SHA-256(payload); payload = ChaCha20-Poly1305(CEK, zero nonce, pad(body), AAD {net, rid, policy_ref});",
			"wraps = HPKE base(X25519 of the Ed25519 identity, HKDF-SHA256, ChaCha20-Poly1305, info \"sublog/v1/capsule\", AAD {net, rid, content_hash, policy_ref})")
		v.SetHex("card", cd.Bytes())
		v.SetHex("plaintext", canon.MustMarshal(c.body))
		if c.reader != "" {
			v.SetHex("reader-seed", key.DeriveSeed(Master, c.reader))
		}
		if c.other != "" {
			v.SetHex("other-seed", key.DeriveSeed(Master, c.other))
		}
		if kek != nil {
			v.SetHex("kek-id", kek.ID[:])
			v.SetHex("kek", kek.Key[:])
		}
		out = append(out, v)
	}
	// A gated card: the CEK is wrapped only to the gate; bob's signed request
	// (fixed nonce and ts) gets it released.
	gv, err := genGated()
	if err != nil {
		return nil, err
	}
	out = append(out, gv)
	// Padding: two bodies of different sizes in one bucket, audiences of 1
	// and 3 in one wrap bucket: all four cards have the same length.
	v := newVector("capsule", "bucket-equal-length", "accept",
		"card.1..4: group of 1 with a 10-byte body, group of 1 with 200 bytes, group of 3 with 10 bytes, group of 3 with 150 bytes;",
		"padding (payload buckets and wrap buckets) makes them all the same length")
	for i, c := range []sealedCase{
		{name: "pad-1", vis: capsule.Group, to: []string{"bob"}, body: strings.Repeat("a", 10)},
		{name: "pad-2", vis: capsule.Group, to: []string{"bob"}, body: strings.Repeat("b", 200)},
		{name: "pad-3", vis: capsule.Group, to: []string{"bob", "carol", "dave"}, body: strings.Repeat("c", 10)},
		{name: "pad-4", vis: capsule.Group, to: []string{"bob", "carol", "dave"}, body: strings.Repeat("d", 150)},
	} {
		cd, _, err := sealCard(c, nil)
		if err != nil {
			return nil, err
		}
		v.SetHex(fmt.Sprintf("card.%d", i+1), cd.Bytes())
	}
	out = append(out, v)
	return out, nil
}

func genGated() (*Vector, error) {
	rnd := newDetRand("gated")
	rid := make([]byte, card.RIDSize)
	rnd.Read(rid)
	body := canon.MustMarshal(map[string]string{"msg": "released by the gate"})
	gate := Fixture("gate").ID()
	s, err := capsule.Seal(capsule.Params{Net: card.DefaultNet, RID: rid, Visibility: capsule.Group, Gate: &gate, Body: body}, rnd)
	if err != nil {
		return nil, err
	}
	cd, err := card.Sign(Fixture("alice"), 1, card.ID{}, s.Draft(card.Draft{Kind: card.KindNote, TS: BaseTS, RID: rid}), caps.Builtin())
	if err != nil {
		return nil, err
	}
	req, _, err := capsule.NewGateRequest(Fixture("bob"), cd.Body(), capsule.BindingOf(cd), time.Unix(BaseTS, 0), rnd)
	if err != nil {
		return nil, err
	}
	v := newVector("capsule", "gated", "accept",
		"a group card whose CEK is wrapped only to the gate identity (info \"sublog/v1/capsule-gate\");",
		"request: bob's signed gate request (Ed25519 over \"sublog/v1/gate-request\\0\" || request without sig);",
		"a gate holding gate-seed answers at ts with the CEK HPKE-wrapped to bob; bob cannot read without it")
	v.SetHex("card", cd.Bytes())
	v.SetHex("plaintext", body)
	v.SetHex("gate-seed", key.DeriveSeed(Master, "gate"))
	v.SetHex("requester-seed", key.DeriveSeed(Master, "bob"))
	v.SetHex("request", req)
	v.Set("ts", fmt.Sprint(BaseTS))
	return v, nil
}

func checkGated(v *Vector, c *card.Card, want []byte) error {
	gs, err := v.Hex("gate-seed")
	if err != nil {
		return err
	}
	rs, err := v.Hex("requester-seed")
	if err != nil {
		return err
	}
	reqb, err := v.Hex("request")
	if err != nil {
		return err
	}
	gsk, err1 := key.FromSeed(gs)
	rsk, err2 := key.FromSeed(rs)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%w: %s: bad seeds", ErrVectorFormat, v.ID())
	}
	if _, err := capsule.OpenCard(c, capsule.Keys{Identities: []*key.Secret{rsk, gsk}}); !errors.Is(err, capsule.ErrNotRecipient) {
		return fmt.Errorf("%w: %s: gated card opened without the gate: %v", ErrMismatch, v.ID(), err)
	}
	req, who, err := capsule.ParseGateRequest(reqb)
	if err != nil || who != rsk.ID() {
		return fmt.Errorf("%w: %s: request: %v", ErrMismatch, v.ID(), err)
	}
	g := capsule.NewGate(gsk, func(id key.ID, rid []byte) bool { return id == rsk.ID() && bytes.Equal(rid, c.RID()) })
	resp := g.Handle(reqb, time.Unix(req.TS, 0), crand.Reader)
	cek, err := capsule.OpenGateResponse(rsk, req, resp)
	if err != nil {
		return fmt.Errorf("%w: %s: gate: %v", ErrMismatch, v.ID(), err)
	}
	o, err := capsule.OpenWithCEK(c.Body(), capsule.BindingOf(c), cek)
	if err != nil || !bytes.Equal(o.Body, want) {
		return fmt.Errorf("%w: %s: released CEK: %v", ErrMismatch, v.ID(), err)
	}
	g.Disable()
	if _, err := capsule.OpenGateResponse(rsk, req, g.Handle(reqb, time.Unix(req.TS, 0), crand.Reader)); !errors.Is(err, capsule.ErrGateDisabled) {
		return fmt.Errorf("%w: %s: disabled gate: %v", ErrMismatch, v.ID(), err)
	}
	return nil
}

func keysFromVector(v *Vector, field string) (capsule.Keys, error) {
	var k capsule.Keys
	if _, ok := v.Get(field); ok {
		seed, err := v.Hex(field)
		if err != nil {
			return k, err
		}
		sk, err := key.FromSeed(seed)
		if err != nil {
			return k, fmt.Errorf("%w: %s: %s: %v", ErrVectorFormat, v.ID(), field, err)
		}
		k.Identities = []*key.Secret{sk}
	}
	return k, nil
}

func checkCapsule(v *Vector) error {
	if _, ok := v.Get("card.1"); ok {
		n := -1
		for i := 1; ; i++ {
			if _, ok := v.Get(fmt.Sprintf("card.%d", i)); !ok {
				break
			}
			b, err := v.Hex(fmt.Sprintf("card.%d", i))
			if err != nil {
				return err
			}
			if _, err := card.Decode(b, caps.Builtin()); err != nil {
				return fmt.Errorf("%w: %s: card.%d: %v", ErrMismatch, v.ID(), i, err)
			}
			if n >= 0 && len(b) != n {
				return fmt.Errorf("%w: %s: card.%d is %d bytes, card.1 %d", ErrMismatch, v.ID(), i, len(b), n)
			}
			n = len(b)
		}
		return nil
	}
	b, err := v.Hex("card")
	if err != nil {
		return err
	}
	want, err := v.Hex("plaintext")
	if err != nil {
		return err
	}
	c, err := card.Decode(b, caps.Builtin())
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	if _, ok := v.Get("gate-seed"); ok {
		return checkGated(v, c, want)
	}
	reader, err := keysFromVector(v, "reader-seed")
	if err != nil {
		return err
	}
	if _, ok := v.Get("kek"); ok {
		kek, err := v.Hex("kek")
		if err != nil {
			return err
		}
		kid, err := v.Hex("kek-id")
		if err != nil {
			return err
		}
		reader.KEK = func(id []byte) ([]byte, error) {
			if bytes.Equal(id, kid) {
				return bytes.Clone(kek), nil
			}
			return nil, capsule.ErrNoKEK
		}
	}
	o, err := capsule.OpenCard(c, reader)
	if err != nil {
		return fmt.Errorf("%w: %s: reader: %v", ErrMismatch, v.ID(), err)
	}
	if !bytes.Equal(o.Body, want) {
		return fmt.Errorf("%w: %s: plaintext %x, want %x", ErrMismatch, v.ID(), o.Body, want)
	}
	if _, ok := v.Get("other-seed"); ok {
		other, err := keysFromVector(v, "other-seed")
		if err != nil {
			return err
		}
		if _, err := capsule.OpenCard(c, other); !errors.Is(err, capsule.ErrNotRecipient) {
			return fmt.Errorf("%w: %s: other reader got %v, want not-a-recipient", ErrMismatch, v.ID(), err)
		}
	}
	return nil
}

func genCapsuleRejects() ([]*Vector, error) {
	var out []*Vector
	direct := sealedCases[1]
	add := func(name, reason, comment string, tweak func(*card.Draft)) error {
		cd, _, err := sealCard(direct, tweak)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		v := newVector("capsule-reject", name, "reject "+reason, comment,
			"the card itself is validly signed; bob (reader-seed) must not get a plaintext")
		v.SetHex("card", cd.Bytes())
		v.SetHex("reader-seed", key.DeriveSeed(Master, direct.reader))
		out = append(out, v)
		return nil
	}
	flip := func(b []byte) []byte { c := bytes.Clone(b); c[0] ^= 1; return c }
	steps := []struct {
		name, reason, comment string
		tweak                 func(*card.Draft)
	}{
		{"tampered-net", "not-a-recipient", "the card's net differs from the one sealed (the key wraps are bound to it)", func(d *card.Draft) { d.Net = "net:other" }},
		{"tampered-rid", "not-a-recipient", "the card's rid differs from the one sealed", func(d *card.Draft) { d.RID = flip(d.RID) }},
		{"tampered-policy-ref", "tampered", "policy_ref does not hash the capsule's policy", func(d *card.Draft) { d.PolicyRef = flip(d.PolicyRef) }},
		{"tampered-content-hash", "tampered", "content_hash does not hash the payload", func(d *card.Draft) { d.ContentHash = flip(d.ContentHash) }},
		{"altered-payload", "not-a-recipient", "one payload byte flipped and content_hash recomputed: the key wraps bind content_hash, so none opens", func(d *card.Draft) {
			var env capsule.Envelope
			canon.Unmarshal(d.RawBody, &env)
			env.Payload[5] ^= 1
			d.RawBody = canon.MustMarshal(env)
			d.ContentHash = sha(env.Payload)
		}},
		{"altered-policy", "not-a-recipient", "distribution changed and policy_ref recomputed: the wraps' AAD no longer matches", func(d *card.Draft) {
			var env capsule.Envelope
			canon.Unmarshal(d.RawBody, &env)
			env.Capsule.Policy.Distribution = capsule.DistPublic
			d.RawBody = canon.MustMarshal(env)
			d.PolicyRef = env.Capsule.Policy.Ref()
		}},
		{"short-wrap", "capsule-malformed", "a key wrap of 79 bytes", func(d *card.Draft) {
			var env capsule.Envelope
			canon.Unmarshal(d.RawBody, &env)
			env.Capsule.Wraps[0] = env.Capsule.Wraps[0][:79]
			d.RawBody = canon.MustMarshal(env)
		}},
		{"unknown-visibility", "capsule-malformed", "visibility \"friends\"", func(d *card.Draft) {
			var env capsule.Envelope
			canon.Unmarshal(d.RawBody, &env)
			env.Capsule.Policy.Visibility = "friends"
			d.RawBody = canon.MustMarshal(env)
			d.PolicyRef = env.Capsule.Policy.Ref()
		}},
	}
	for _, s := range steps {
		if err := add(s.name, s.reason, s.comment, s.tweak); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func sha(b []byte) []byte {
	h := card.IDOf(b) // SHA-256
	return h[:]
}

func checkCapsuleReject(v *Vector) error {
	_, reason, _ := v.Expect()
	b, err := v.Hex("card")
	if err != nil {
		return err
	}
	c, err := card.Decode(b, caps.Builtin())
	if err != nil {
		return expectCapsReject(v, err, reason)
	}
	k, err := keysFromVector(v, "reader-seed")
	if err != nil {
		return err
	}
	_, err = capsule.OpenCard(c, k)
	return expectCapsReject(v, err, reason)
}

// --- revocation bodies ---------------------------------------------------------

func genCRLs() ([]*Vector, error) {
	alice := Fixture("alice")
	first, err := card.Sign(alice, 1, card.ID{}, card.Draft{Kind: card.KindNote, TS: BaseTS, Body: map[string]string{"msg": "to be withdrawn"}}, caps.Builtin())
	if err != nil {
		return nil, err
	}
	var out []*Vector
	add := func(name, expect, kind string, body []byte, comment string) error {
		cd, err := card.Sign(alice, 2, first.ID(), card.Draft{Kind: kind, TS: BaseTS + 1, RawBody: body}, caps.Builtin())
		if err != nil {
			return err
		}
		v := newVector("crl", name, expect, comment)
		v.SetHex("card", cd.Bytes())
		if expect == "accept" {
			fid := first.ID()
			v.SetHex("revoked", fid[:])
		}
		out = append(out, v)
		return nil
	}
	id := first.ID()
	crl, _ := capsule.MarshalCRL([]card.ID{id})
	steps := []struct {
		name, expect, kind string
		body               []byte
		comment            string
	}{
		{"crl", "accept", card.KindCRL, crl, "alice's crl card listing her card 1"},
		{"revoke", "accept", card.KindRevoke, canon.MustMarshal(capsule.RevokeBody{Card: id[:], Reason: "withdrawn"}), "alice's revoke card withdrawing her card 1"},
		{"crl-empty", "reject bad-revocation", card.KindCRL, canon.MustMarshal(map[string]any{"revoked": []any{}}), "a crl with no IDs"},
		{"crl-short-id", "reject bad-revocation", card.KindCRL, canon.MustMarshal(map[string]any{"revoked": [][]byte{id[:31]}}), "a 31-byte card ID"},
		{"crl-duplicate", "reject bad-revocation", card.KindCRL, canon.MustMarshal(map[string]any{"revoked": [][]byte{id[:], id[:]}}), "one ID twice"},
		{"crl-unknown-field", "reject unknown-field", card.KindCRL, canon.MustMarshal(map[string]any{"revoked": [][]byte{id[:]}, "why": "x"}), "a field crl bodies do not have"},
		{"revoke-short-id", "reject bad-revocation", card.KindRevoke, canon.MustMarshal(map[string]any{"card": id[:16]}), "a 16-byte card ID"},
	}
	for _, s := range steps {
		if err := add(s.name, s.expect, s.kind, s.body, s.comment); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func checkCRL(v *Vector) error {
	accept, reason, _ := v.Expect()
	b, err := v.Hex("card")
	if err != nil {
		return err
	}
	c, err := card.Decode(b, caps.Builtin())
	if err != nil {
		if accept {
			return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
		}
		return expectCapsReject(v, err, reason)
	}
	var ids [][]byte
	switch c.Kind() {
	case card.KindCRL:
		var body *capsule.CRLBody
		if body, err = capsule.DecodeCRL(c); err == nil {
			ids = body.Revoked
		}
	case card.KindRevoke:
		var body *capsule.RevokeBody
		if body, err = capsule.DecodeRevoke(c); err == nil {
			ids = [][]byte{body.Card}
		}
	default:
		return fmt.Errorf("%w: %s: kind %q", ErrVectorFormat, v.ID(), c.Kind())
	}
	if !accept {
		return expectCapsReject(v, err, reason)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	var got []string
	for _, id := range ids {
		got = append(got, hex.EncodeToString(id))
	}
	if want, _ := v.Get("revoked"); strings.Join(got, ",") != want {
		return fmt.Errorf("%w: %s: revoked %v, want %s", ErrMismatch, v.ID(), got, want)
	}
	return nil
}
