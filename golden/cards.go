package golden

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// The fixed inputs of the card vectors. Keys are derived from Master with
// key.DeriveSeed; times start at BaseTS (2026-01-01T00:00:00Z).
var (
	Master = []byte("sublog golden vectors v1")
	BaseTS = int64(1767225600)
)

// Fixture returns the named test identity.
func Fixture(name string) *key.Secret {
	sk, err := key.FromSeed(key.DeriveSeed(Master, name))
	if err != nil {
		panic(err)
	}
	return sk
}

func init() {
	Register(&Suite{Name: "key", Generate: genKeys, Check: checkKey})
	Register(&Suite{Name: "card", Generate: genCards, Check: checkCard})
	Register(&Suite{Name: "card-reject", Generate: genCardRejects, Check: checkCardReject})
	Register(&Suite{Name: "fork-proof", Generate: genForkProofs, Check: checkForkProof})
	Register(&Suite{Name: "cap-builtin", Generate: genCapBuiltin, Check: checkCapBuiltin})
}

func newVector(suite, name, expect string, comment ...string) *Vector {
	v := &Vector{Comment: comment}
	v.Set("suite", suite)
	v.Set("name", name)
	v.Set("expect", expect)
	return v
}

// --- keys -------------------------------------------------------------------

func genKeys() ([]*Vector, error) {
	var out []*Vector
	seeds := []struct{ name, seed string }{
		// RFC 8032 section 7.1, test 1.
		{"rfc8032-test1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"},
	}
	for _, n := range []string{"alice", "bob", "carol"} {
		seeds = append(seeds, struct{ name, seed string }{n, hex.EncodeToString(key.DeriveSeed(Master, n))})
	}
	for _, s := range seeds {
		seed, _ := hex.DecodeString(s.seed)
		sk, err := key.FromSeed(seed)
		if err != nil {
			return nil, err
		}
		v := newVector("key", s.name, "accept", "Ed25519 seed -> public key -> z-base-32 identity")
		v.Set("seed", s.seed)
		v.SetHex("public", sk.ID().Bytes())
		v.Set("text", sk.ID().String())
		out = append(out, v)
	}
	nonCanon := make([]byte, 32) // y = p: a non-reduced encoding of y = 0
	nonCanon[0] = 0xed
	for i := 1; i < 31; i++ {
		nonCanon[i] = 0xff
	}
	nonCanon[31] = 0x7f
	identity := make([]byte, 32)
	identity[0] = 1
	good := Fixture("alice").ID().String()
	bits := []byte(good)
	bits[len(bits)-1] = 'n' // same leading bits, non-zero trailing bits
	rejects := []struct{ name, field, val, reason, why string }{
		{"reject-non-canonical", "public", hex.EncodeToString(nonCanon), "non-canonical-key", "y coordinate not reduced mod p"},
		{"reject-small-order", "public", hex.EncodeToString(identity), "weak-key", "the identity point"},
		{"reject-short", "public", hex.EncodeToString(identity[:31]), "bad-length", "31 bytes"},
		{"reject-bad-alphabet", "text", "l" + good[1:], "bad-text", "'l' is not in the z-base-32 alphabet"},
		{"reject-trailing-bits", "text", string(bits), "bad-text", "non-zero unused trailing bits"},
		{"reject-text-length", "text", good[:51], "bad-length", "51 characters"},
	}
	for _, r := range rejects {
		v := newVector("key", r.name, "reject "+r.reason, r.why)
		v.Set(r.field, r.val)
		out = append(out, v)
	}
	return out, nil
}

func checkKey(v *Vector) error {
	accept, reason, _ := v.Expect()
	if accept {
		seed, err := v.Hex("seed")
		if err != nil {
			return err
		}
		pub, err := v.Hex("public")
		if err != nil {
			return err
		}
		text, err := v.Must("text")
		if err != nil {
			return err
		}
		sk, err := key.FromSeed(seed)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
		}
		if hex.EncodeToString(sk.ID().Bytes()) != hex.EncodeToString(pub) || sk.ID().String() != text {
			return fmt.Errorf("%w: %s: seed gives %s", ErrMismatch, v.ID(), sk.ID())
		}
		id, err := key.ParseID(text)
		if err != nil || id != sk.ID() {
			return fmt.Errorf("%w: %s: text does not parse back: %v", ErrMismatch, v.ID(), err)
		}
		return nil
	}
	if t, ok := v.Get("text"); ok {
		_, err := key.ParseID(t)
		return expectReject(v, err, reason)
	}
	pub, err := v.Hex("public")
	if err != nil {
		return err
	}
	_, err = key.IDFromBytes(pub)
	return expectReject(v, err, reason)
}

// --- cards ------------------------------------------------------------------

// chainDrafts is alice's fixed log: one card of every kind.
func chainDrafts() []card.Draft {
	alice, bob, carol := Fixture("alice").ID(), Fixture("bob").ID(), Fixture("carol").ID()
	bundleHash := sha256.Sum256([]byte("example peer bundle"))
	specBody, _ := canon.Marshal(caps.CardV1)
	return []card.Draft{
		{Kind: card.KindNote, Body: map[string]any{"msg": "hello, world"}},
		{Kind: card.KindProfile, Body: map[string]any{"cpu": 2000, "memory": 2 << 30, "disk": 10 << 30, "gpu": 0}},
		{Kind: card.KindGrant, Body: map[string]any{"peer": bob.Bytes(), "limits": map[string]any{"memory": 64 << 20, "cpu_req_ms": 200}, "caps": []string{"kv", "log", "req"}, "expires": BaseTS + 86400}},
		{Kind: card.KindRevoke, Body: nil}, // body filled in with the grant's ID
		{Kind: card.KindCRL, Body: nil},    // body filled in with the note's ID
		{Kind: card.KindCapspec, RawBody: specBody},
		{Kind: card.KindObserve, Body: map[string]any{"peer": bob.Bytes(), "state": "running", "usage": map[string]any{"memory": 1 << 20, "cpu_ms": 12}}},
		{Kind: card.KindDelegate, Body: map[string]any{"device": carol.Bytes(), "services": []string{"web"}, "until": BaseTS + 30*86400}},
		{Kind: card.KindBundle, Body: map[string]any{"hash": bundleHash[:], "name": "greeter", "version": "1.0.0", "peer": bob.Bytes(), "size": 1234}},
		{Kind: card.KindIntent, Body: map[string]any{"service": "web", "owner": alice.Bytes()}},
	}
}

// Chain signs alice's fixed log and returns its cards.
func Chain() ([]*card.Card, error) {
	sk := Fixture("alice")
	var out []*card.Card
	prev := card.ID{}
	for i, d := range chainDrafts() {
		d.TS = BaseTS + int64(i)
		switch d.Kind {
		case card.KindRevoke:
			g := out[2].ID()
			d.Body = map[string]any{"card": g[:], "reason": "host maintenance"}
		case card.KindCRL:
			n := out[0].ID()
			d.Body = map[string]any{"revoked": [][]byte{n[:]}}
		}
		c, err := card.Sign(sk, uint64(i+1), prev, d, caps.Builtin())
		if err != nil {
			return nil, fmt.Errorf("signing %s: %w", d.Kind, err)
		}
		out = append(out, c)
		prev = c.ID()
	}
	return out, nil
}

func genCards() ([]*Vector, error) {
	chain, err := Chain()
	if err != nil {
		return nil, err
	}
	seed := hex.EncodeToString(key.DeriveSeed(Master, "alice"))
	var out []*Vector
	for _, c := range chain {
		v := newVector("card", fmt.Sprintf("%02d-%s", c.Seq(), c.Kind()), "accept",
			"sign(seed, seq, prev, ts, net, kind, body) must give exactly these card bytes and ID;",
			"rid is derived (ARCHITECTURE.md), reqs are empty; body is canonical CBOR")
		v.Set("seed", seed)
		v.Set("author", c.Author().String())
		v.Set("seq", strconv.FormatUint(c.Seq(), 10))
		if p, ok := c.Prev(); ok {
			v.Set("prev", p.String())
		}
		v.Set("ts", strconv.FormatInt(c.TS(), 10))
		v.Set("net", c.Net())
		v.Set("kind", c.Kind())
		v.SetHex("body", c.Body())
		v.SetHex("card", c.Bytes())
		v.Set("id", c.ID().String())
		out = append(out, v)
	}
	return out, nil
}

func checkCard(v *Vector) error {
	seed, err := v.Hex("seed")
	if err != nil {
		return err
	}
	want, err := v.Hex("card")
	if err != nil {
		return err
	}
	body, err := v.Hex("body")
	if err != nil {
		return err
	}
	var fields [5]string
	for i, k := range []string{"seq", "ts", "net", "kind", "id"} {
		if fields[i], err = v.Must(k); err != nil {
			return err
		}
	}
	seq, err1 := strconv.ParseUint(fields[0], 10, 64)
	ts, err2 := strconv.ParseInt(fields[1], 10, 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%w: %s: seq or ts is not a number", ErrVectorFormat, v.ID())
	}
	var prev card.ID
	if p, ok := v.Get("prev"); ok {
		if prev, err = card.ParseID(p); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrVectorFormat, v.ID(), err)
		}
	}
	sk, err := key.FromSeed(seed)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrVectorFormat, v.ID(), err)
	}
	d := card.Draft{Kind: fields[3], Net: fields[2], TS: ts}
	if len(body) > 0 {
		d.RawBody = body
	}
	got, err := card.Sign(sk, seq, prev, d, caps.Builtin())
	if err != nil {
		return fmt.Errorf("%w: %s: signing: %v", ErrMismatch, v.ID(), err)
	}
	if string(got.Bytes()) != string(want) {
		return fmt.Errorf("%w: %s: card bytes differ:\n got %x\nwant %x", ErrMismatch, v.ID(), got.Bytes(), want)
	}
	c, err := card.Decode(want, caps.Builtin())
	if err != nil {
		return fmt.Errorf("%w: %s: the vector's card is refused: %v", ErrMismatch, v.ID(), err)
	}
	if c.ID().String() != fields[4] {
		return fmt.Errorf("%w: %s: card ID %s, vector says %s", ErrMismatch, v.ID(), c.ID(), fields[4])
	}
	if a, ok := v.Get("author"); ok && c.Author().String() != a {
		return fmt.Errorf("%w: %s: author %s, vector says %s", ErrMismatch, v.ID(), c.Author(), a)
	}
	return nil
}

// --- rejections ---------------------------------------------------------------

func genCardRejects() ([]*Vector, error) {
	chain, err := Chain()
	if err != nil {
		return nil, err
	}
	alice, bob := Fixture("alice"), Fixture("bob")
	c1, c2 := chain[0], chain[1]
	pairs := func() []Pair {
		p, err := PayloadPairs(c1)
		if err != nil {
			panic(err)
		}
		return p
	}
	var out []*Vector
	add := func(name, reason string, b []byte, given []*card.Card, why string) {
		v := newVector("card-reject", name, "reject "+reason, why)
		for i, g := range given {
			v.SetHex(fmt.Sprintf("given.%d", i+1), g.Bytes())
		}
		v.SetHex("card", b)
		out = append(out, v)
	}

	flipped := append([]byte(nil), c1.Bytes()...)
	flipped[len(flipped)-1] ^= 0x01
	add("bad-signature", "bad-signature", flipped, nil, "the last bit of a valid card's signature flipped")

	forged, err := card.SignPayload(bob, bob.ID().Bytes(), -8, c1.Payload())
	if err != nil {
		return nil, err
	}
	add("kid-mismatch", "kid-mismatch", forged, nil, "alice's payload, kid and signature of bob")

	p := pairs()
	p = append(p, Pair{"ver", []byte{0x01}})
	add("duplicate-key", "duplicate-key", Resign(alice, EncodeMap(p, false)), nil, "payload map repeats \"ver\"")

	add("indefinite-length", "indefinite-length", Resign(alice, EncodeMap(pairs(), true)), nil, "payload map in indefinite-length form")

	p = Set(pairs(), "ver", []byte{0x18, 0x01})
	add("non-shortest-integer", "non-canonical", Resign(alice, EncodeMap(p, false)), nil, "ver = 1 encoded in two bytes (0x1801)")

	p = Set(pairs(), "kind", []byte{0x78, 0x04, 'n', 'o', 't', 'e'})
	add("non-shortest-length", "non-canonical", Resign(alice, EncodeMap(p, false)), nil, "kind's text length in a one-byte argument (0x7804)")

	p = pairs()
	p[0], p[1] = p[1], p[0]
	add("unsorted-map", "non-canonical", Resign(alice, EncodeMap(p, false)), nil, "first two payload keys swapped")

	// Optional fields are left out when empty: present as null or empty they
	// would decode to the same card as absent, a second encoding of it.
	p = Set(pairs(), "prev", []byte{0xf6})
	add("null-optional", "non-canonical", Resign(alice, EncodeMap(p, false)), nil, "prev: null at seq 1 (prev must be absent)")

	p = Set(pairs(), "reqs", []byte{0x80})
	add("empty-optional", "non-canonical", Resign(alice, EncodeMap(p, false)), nil, "reqs: [] (an empty optional field must be absent)")

	p = Set(pairs(), "ts", append([]byte{0xc1}, canon.MustMarshal(BaseTS)...))
	add("unknown-tag", "tag", Resign(alice, EncodeMap(p, false)), nil, "ts wrapped in CBOR tag 1")

	p = Set(pairs(), "body", canon.MustMarshal(map[string]any{"blob": make([]byte, card.MaxSize)}))
	add("oversize", "too-large", Resign(alice, EncodeMap(p, false)), nil, "a 64 KiB body makes the card larger than 64 KiB")

	add("untagged", "not-cose-sign1", c1.Bytes()[1:], nil, "a valid card without the COSE_Sign1 tag 18")

	badAlg, err := card.SignPayload(alice, alice.ID().Bytes(), -7, c1.Payload())
	if err != nil {
		return nil, err
	}
	add("bad-algorithm", "bad-header", badAlg, nil, "protected header claims ES256 (-7)")

	unknownCap := caps.Spec{Schema: caps.SchemaV1, Name: "unknown-feature", Semver: "1.0.0", Purpose: "no node supports this"}.ID()
	p = Set(pairs(), "reqs", canon.MustMarshal([]string{unknownCap}))
	add("unsupported-cap", "unsupported-cap", Resign(alice, EncodeMap(p, false)), nil, "reqs names "+unknownCap+", which no node supports")

	add("trailing-bytes", "trailing-bytes", append(append([]byte(nil), c1.Bytes()...), 0x00), nil, "a valid card followed by one zero byte")

	// Chain rejections: the card is valid; the store holds the given cards.
	fake := sha256.Sum256([]byte("not alice's seq 1"))
	broken, err := card.Sign(alice, 2, card.ID(fake), card.Draft{Kind: card.KindNote, TS: BaseTS + 1}, nil)
	if err != nil {
		return nil, err
	}
	add("broken-prev", "bad-chain", broken.Bytes(), []*card.Card{c1}, "seq 2 whose prev is not the stored seq 1")

	add("skipped-seq", "gap", chain[2].Bytes(), []*card.Card{c1}, "seq 3 offered when the store holds only seq 1")

	add("replayed", "replayed", c1.Bytes(), []*card.Card{c1, c2}, "seq 1 offered again")

	other, err := card.Sign(alice, 2, c1.ID(), card.Draft{Kind: card.KindNote, TS: BaseTS + 1, Body: map[string]any{"msg": "the other history"}}, nil)
	if err != nil {
		return nil, err
	}
	add("fork", "fork", other.Bytes(), []*card.Card{c1, c2}, "a second, different seq 2 by alice")
	return out, nil
}

func checkCardReject(v *Vector) error {
	_, reason, _ := v.Expect()
	b, err := v.Hex("card")
	if err != nil {
		return err
	}
	var given [][]byte
	for i := 1; ; i++ {
		g, ok := v.Get(fmt.Sprintf("given.%d", i))
		if !ok {
			break
		}
		gb, err := hex.DecodeString(g)
		if err != nil {
			return fmt.Errorf("%w: %s: given.%d is not hex", ErrVectorFormat, v.ID(), i)
		}
		given = append(given, gb)
	}
	if len(given) == 0 {
		_, err := card.Decode(b, caps.Builtin())
		return expectReject(v, err, reason)
	}
	dir, err := os.MkdirTemp("", "sublog-golden-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := sublog.Open(dir, sublog.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	for i, g := range given {
		if _, err := st.Import(g); err != nil {
			return fmt.Errorf("%w: %s: given.%d refused: %v", ErrMismatch, v.ID(), i+1, err)
		}
	}
	_, err = st.Import(b)
	return expectReject(v, err, reason)
}

// --- fork proofs --------------------------------------------------------------

func genForkProofs() ([]*Vector, error) {
	chain, err := Chain()
	if err != nil {
		return nil, err
	}
	alice, bob := Fixture("alice"), Fixture("bob")
	other, err := card.Sign(alice, 2, chain[0].ID(), card.Draft{Kind: card.KindNote, TS: BaseTS + 1, Body: map[string]any{"msg": "the other history"}}, nil)
	if err != nil {
		return nil, err
	}
	p, err := sublog.NewForkProof(chain[1].Bytes(), other.Bytes())
	if err != nil {
		return nil, err
	}
	v := newVector("fork-proof", "same-seq", "accept", "two valid cards by alice at seq 2; verifies with nothing else")
	v.SetHex("proof", p.Encode())
	v.Set("author", p.Author().String())
	v.Set("seq", "2")
	out := []*Vector{v}
	a, b := p.Cards()
	bobCard, err := card.Sign(bob, 2, card.ID(sha256.Sum256([]byte("x"))), card.Draft{Kind: card.KindNote, TS: BaseTS}, nil)
	if err != nil {
		return nil, err
	}
	wire := func(x, y []byte) []byte { return canon.MustMarshal(map[string]any{"v": 1, "a": x, "b": y}) }
	for _, r := range []struct {
		name, why string
		proof     []byte
	}{
		{"reject-same-card", "one card twice", wire(a.Bytes(), a.Bytes())},
		{"reject-two-authors", "cards by alice and bob", wire(a.Bytes(), bobCard.Bytes())},
		{"reject-order", "cards not in canonical order (a must have the smaller ID)", wire(b.Bytes(), a.Bytes())},
		{"reject-different-seq", "seq 1 and seq 2 of one chain", wire(chain[0].Bytes(), chain[1].Bytes())},
	} {
		v := newVector("fork-proof", r.name, "reject bad-proof", r.why)
		v.SetHex("proof", r.proof)
		out = append(out, v)
	}
	return out, nil
}

func checkForkProof(v *Vector) error {
	accept, reason, _ := v.Expect()
	b, err := v.Hex("proof")
	if err != nil {
		return err
	}
	p, err := sublog.DecodeForkProof(b)
	if !accept {
		return expectReject(v, err, reason)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	if a, _ := v.Get("author"); a != p.Author().String() {
		return fmt.Errorf("%w: %s: author %s", ErrMismatch, v.ID(), p.Author())
	}
	if s, _ := v.Get("seq"); s != strconv.FormatUint(p.Seq(), 10) {
		return fmt.Errorf("%w: %s: seq %d", ErrMismatch, v.ID(), p.Seq())
	}
	return nil
}

// --- built-in capability IDs ----------------------------------------------------

func genCapBuiltin() ([]*Vector, error) {
	v := newVector("cap-builtin", "card-v1", "accept", "cap_id = \"b\" + base32lower(sha256(canonical CBOR of the spec without signatures))")
	v.SetHex("spec", canon.MustMarshal(caps.CardV1))
	v.Set("cap-id", caps.CardV1.ID())
	return []*Vector{v}, nil
}

func checkCapBuiltin(v *Vector) error {
	spec, err := v.Hex("spec")
	if err != nil {
		return err
	}
	want, err := v.Must("cap-id")
	if err != nil {
		return err
	}
	var s caps.Spec
	if err := canon.Unmarshal(spec, &s); err != nil {
		return fmt.Errorf("%w: %s: spec: %v", ErrMismatch, v.ID(), err)
	}
	if got := s.ID(); got != want {
		return fmt.Errorf("%w: %s: cap ID %s, vector says %s", ErrMismatch, v.ID(), got, want)
	}
	return nil
}
