package capsule

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func sk(t testing.TB, name string) *key.Secret {
	t.Helper()
	s, err := key.FromSeed(key.DeriveSeed([]byte("capsule-test"), name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var rid = bytes.Repeat([]byte{7}, 16)

func body(t testing.TB, n int) []byte {
	return canon.MustMarshal(map[string]string{"msg": string(bytes.Repeat([]byte("x"), n))})
}

func keysOf(s ...*key.Secret) Keys { return Keys{Identities: s} }

func TestEachVisibilityMode(t *testing.T) {
	alice, bob, carol, dave, eve := sk(t, "alice"), sk(t, "bob"), sk(t, "carol"), sk(t, "dave"), sk(t, "eve")
	kek, _ := NewKEK(rand.Reader)
	kekStore := func(id []byte) ([]byte, error) {
		if bytes.Equal(id, kek.ID[:]) {
			return bytes.Clone(kek.Key[:]), nil
		}
		return nil, ErrNoKEK
	}
	cases := []struct {
		vis     string
		to      []key.ID
		kek     *KEK
		readers []Keys
		others  []Keys
	}{
		{Direct, []key.ID{bob.ID()}, nil, []Keys{keysOf(bob)}, []Keys{keysOf(alice), keysOf(carol)}},
		{TrustSet, []key.ID{bob.ID(), carol.ID()}, nil, []Keys{keysOf(bob), keysOf(carol), keysOf(eve, carol)}, []Keys{keysOf(dave)}},
		{Group, []key.ID{bob.ID(), carol.ID(), dave.ID()}, nil, []Keys{keysOf(bob), keysOf(carol), keysOf(dave)}, []Keys{keysOf(eve)}},
		{Node, []key.ID{alice.ID()}, nil, []Keys{keysOf(alice)}, []Keys{keysOf(bob)}},
		{Node, nil, kek, []Keys{{KEK: kekStore}}, []Keys{keysOf(alice), {KEK: func([]byte) ([]byte, error) { return nil, ErrNoKEK }}}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%d", c.vis, len(c.to)), func(t *testing.T) {
			pt := body(t, 100)
			s, err := Seal(Params{Net: "net:t", RID: rid, Visibility: c.vis, Recipients: c.to, Body: pt, KEK: c.kek}, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			b := Binding{Net: "net:t", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash}
			for _, k := range c.readers {
				o, err := Open(s.Body, b, k)
				if err != nil {
					t.Fatalf("reader: %v", err)
				}
				if !bytes.Equal(o.Body, pt) || o.Policy.Visibility != c.vis {
					t.Fatal("wrong plaintext or policy")
				}
			}
			for _, k := range c.others {
				if _, err := Open(s.Body, b, k); !errors.Is(err, ErrNotRecipient) {
					t.Fatalf("non-recipient: want ErrNotRecipient, got %v", err)
				}
			}
			if bytes.Contains(s.Body, pt[4:]) {
				t.Fatal("plaintext visible in the sealed body")
			}
			// Tampering with any bound field makes decryption fail.
			reader := c.readers[0]
			for name, tb := range map[string]Binding{
				"net":          {Net: "net:u", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash},
				"rid":          {Net: "net:t", RID: bytes.Repeat([]byte{8}, 16), PolicyRef: s.PolicyRef, ContentHash: s.ContentHash},
				"policy_ref":   {Net: "net:t", RID: rid, PolicyRef: flip(s.PolicyRef), ContentHash: s.ContentHash},
				"content_hash": {Net: "net:t", RID: rid, PolicyRef: s.PolicyRef, ContentHash: flip(s.ContentHash)},
			} {
				if o, err := Open(s.Body, tb, reader); err == nil || o != nil {
					t.Errorf("tampered %s: decrypted", name)
				}
			}
			// A body whose payload or policy was altered, with the hashes
			// recomputed to match, still fails: the AEADs bind them.
			env, _ := DecodeEnvelope(s.Body)
			env.Payload[3] ^= 1
			nb := canon.MustMarshal(env)
			b2 := b
			b2.ContentHash = hashPayload(env.Payload)
			if _, err := Open(nb, b2, reader); err == nil {
				t.Error("altered payload with matching content_hash decrypted")
			}
			env.Payload[3] ^= 1
			env.Capsule.Policy.Distribution = DistPublic
			nb = canon.MustMarshal(env)
			b3 := b
			b3.PolicyRef = env.Capsule.Policy.Ref()
			if _, err := Open(nb, b3, reader); err == nil {
				t.Error("altered policy with matching policy_ref decrypted")
			}
			if _, err := Open(nb, b, reader); !errors.Is(err, ErrTampered) {
				t.Errorf("altered policy: want ErrTampered, got %v", err)
			}
		})
	}
}

func flip(b []byte) []byte { c := bytes.Clone(b); c[0] ^= 1; return c }

func TestPublic(t *testing.T) {
	pt := body(t, 10)
	s, err := Seal(Params{Net: "n", RID: rid, Visibility: Public, Body: pt}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(s.Body, Binding{Net: "n", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash}, Keys{})
	if err != nil || !bytes.Equal(o.Body, pt) || o.Policy.Flags[0] != FlagPermanent {
		t.Fatalf("public: %v", err)
	}
	if _, err := Seal(Params{Net: "n", RID: rid, Visibility: Public, Body: pt, Recipients: []key.ID{sk(t, "a").ID()}}, rand.Reader); !errors.Is(err, ErrMalformed) {
		t.Fatalf("public with recipients: %v", err)
	}
}

func TestSealRefusals(t *testing.T) {
	a, b := sk(t, "a"), sk(t, "b")
	pt := body(t, 1)
	for name, p := range map[string]Params{
		"direct two":   {Visibility: Direct, Recipients: []key.ID{a.ID(), b.ID()}},
		"direct none":  {Visibility: Direct},
		"group none":   {Visibility: Group},
		"unknown vis":  {Visibility: "friends", Recipients: []key.ID{a.ID()}},
		"bad dist":     {Visibility: Direct, Recipients: []key.ID{a.ID()}, Distribution: "everywhere"},
		"node nothing": {Visibility: Node},
	} {
		p.Net, p.RID, p.Body = "n", rid, pt
		if _, err := Seal(p, rand.Reader); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: want ErrMalformed, got %v", name, err)
		}
	}
	mls := caps.Spec{Schema: caps.SchemaV1, Name: "group-keying-mls", Semver: "1.0.0", Purpose: "later"}
	if _, err := Seal(Params{Net: "n", RID: rid, Body: pt, Visibility: Group, Recipients: []key.ID{a.ID()}, Keying: mls}, rand.Reader); !errors.Is(err, ErrUnsupportedKeying) {
		t.Errorf("mls keying: %v", err)
	}
	big := canon.MustMarshal(bytes.Repeat([]byte{1}, PayloadBuckets[len(PayloadBuckets)-1]))
	if _, err := Seal(Params{Net: "n", RID: rid, Body: big, Visibility: Direct, Recipients: []key.ID{a.ID()}}, rand.Reader); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

// Two bodies of different sizes in one bucket, and audiences of different
// sizes in one wrap bucket, give sealed bodies of exactly the same length.
func TestPaddingHidesSizes(t *testing.T) {
	var ids []key.ID
	for i := range 20 {
		ids = append(ids, sk(t, fmt.Sprint("m", i)).ID())
	}
	seal := func(n int, to []key.ID) int {
		s, err := Seal(Params{Net: "n", RID: rid, Visibility: TrustSet, Recipients: to, Body: body(t, n)}, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return len(s.Body)
	}
	if a, b := seal(10, ids[:1]), seal(200, ids[:1]); a != b {
		t.Errorf("bodies of 10 and 200 bytes: %d vs %d", a, b)
	}
	if a, b := seal(300, ids[:2]), seal(900, ids[:2]); a != b {
		t.Errorf("bodies of 300 and 900 bytes: %d vs %d", a, b)
	}
	if a, b := seal(10, ids[:1]), seal(10, ids[:4]); a != b {
		t.Errorf("audiences of 1 and 4: %d vs %d", a, b)
	}
	if a, b := seal(10, ids[:5]), seal(10, ids[:16]); a != b {
		t.Errorf("audiences of 5 and 16: %d vs %d", a, b)
	}
	if a, b := seal(10, ids[:4]), seal(10, ids[:5]); a == b {
		t.Errorf("different buckets should differ (sanity): %d", a)
	}
	// The same in a direct card: recipient count 1 vs node mode with a KEK.
	s1, _ := Seal(Params{Net: "n", RID: rid, Visibility: Direct, Recipients: ids[:1], Body: body(t, 1)}, rand.Reader)
	s2, _ := Seal(Params{Net: "n", RID: rid, Visibility: Direct, Recipients: ids[1:2], Body: body(t, 150)}, rand.Reader)
	if len(s1.Body) != len(s2.Body) {
		t.Errorf("direct: %d vs %d", len(s1.Body), len(s2.Body))
	}
}

func TestKEKShred(t *testing.T) {
	alice := sk(t, "alice")
	kek, _ := NewKEK(rand.Reader)
	s, err := Seal(Params{Net: "n", RID: rid, Visibility: Node, KEK: kek, Body: body(t, 5)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := Binding{Net: "n", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash}
	present := Keys{Identities: []*key.Secret{alice}, KEK: func(id []byte) ([]byte, error) { return bytes.Clone(kek.Key[:]), nil }}
	if o, err := Open(s.Body, b, present); err != nil || o.Via != "kek" {
		t.Fatalf("with KEK: %v", err)
	}
	gone := Keys{Identities: []*key.Secret{alice}, KEK: func(id []byte) ([]byte, error) { return nil, ErrShredded }}
	if _, err := Open(s.Body, b, gone); !errors.Is(err, ErrShredded) {
		t.Fatalf("shredded: %v", err)
	}
	wrong := Keys{KEK: func(id []byte) ([]byte, error) { return make([]byte, 32), nil }}
	if _, err := Open(s.Body, b, wrong); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("wrong KEK: %v", err)
	}
}

func TestGate(t *testing.T) {
	alice, bob, eve, gk := sk(t, "alice"), sk(t, "bob"), sk(t, "eve"), sk(t, "gate")
	gid := gk.ID()
	s, err := Seal(Params{Net: "n", RID: rid, Visibility: Group, Gate: &gid, Body: body(t, 5)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := Binding{Net: "n", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash}
	if _, err := Open(s.Body, b, keysOf(alice, bob)); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("gated card opened without the gate: %v", err)
	}
	g := NewGate(gk, func(who key.ID, r []byte) bool { return who == bob.ID() && bytes.Equal(r, rid) })
	now := time.Unix(1_800_000_000, 0)
	ask := func(who *key.Secret, at time.Time) error {
		raw, req, err := NewGateRequest(who, s.Body, b, now, rand.Reader)
		if err != nil {
			return err
		}
		cek, err := OpenGateResponse(who, req, g.Handle(raw, at, rand.Reader))
		if err != nil {
			return err
		}
		o, err := OpenWithCEK(s.Body, b, cek)
		if err != nil {
			return err
		}
		if o.Via != "cek" {
			return fmt.Errorf("via %s", o.Via)
		}
		return nil
	}
	if err := ask(bob, now); err != nil {
		t.Fatalf("authorised: %v", err)
	}
	if err := ask(eve, now); !errors.Is(err, ErrGateRefused) {
		t.Fatalf("unauthorised: %v", err)
	}
	if err := ask(bob, now.Add(time.Hour)); !errors.Is(err, ErrGateRefused) {
		t.Fatalf("stale: %v", err)
	}
	g.Disable()
	if err := ask(bob, now); !errors.Is(err, ErrGateDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	g.Enable()
	g.RevokeCard(rid)
	if err := ask(bob, now); !errors.Is(err, ErrGateDisabled) {
		t.Fatalf("revoked card: %v", err)
	}
	// A request whose signature does not verify, or that was altered.
	raw, _, _ := NewGateRequest(bob, s.Body, b, now, rand.Reader)
	raw[len(raw)-1] ^= 1
	var resp GateResponse
	canon.Unmarshal(g.Handle(raw, now, rand.Reader), &resp)
	if resp.Status != "bad-request" {
		t.Fatalf("bad signature: status %q", resp.Status)
	}
	if resp := g.Handle([]byte{0xff}, now, rand.Reader); len(resp) == 0 {
		t.Fatal("no response to garbage")
	}
}

func TestCardRoundTrip(t *testing.T) {
	alice, bob := sk(t, "alice"), sk(t, "bob")
	set := caps.Builtin()
	s, err := Seal(Params{Net: card.DefaultNet, RID: rid, Visibility: Direct, Recipients: []key.ID{bob.ID()}, Body: body(t, 3)}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := card.Sign(alice, 1, card.ID{}, s.Draft(card.Draft{Kind: "note", RID: rid, TS: 1}), set)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(c) {
		t.Fatal("not sealed")
	}
	if _, err := OpenCard(c, keysOf(bob)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCard(c, keysOf(alice)); !errors.Is(err, ErrNotRecipient) {
		t.Fatal(err)
	}
	if p, ok, err := PolicyOf(c); err != nil || !ok || p.Distribution != ToRecipientsOnly || p.Visibility != Direct {
		t.Fatalf("PolicyOf = %+v %v %v", p, ok, err)
	}
	// Every req of a sealed card is built in.
	if err := set.Require(c.Reqs()); err != nil {
		t.Fatal(err)
	}
}

// fixed is a deterministic reader for reproducible bytes.
type fixed struct{ r *mrand.ChaCha8 }

func (f fixed) Read(p []byte) (int, error) { return f.r.Read(p) }

func TestDeterministicWithFixedRand(t *testing.T) {
	bob := sk(t, "bob")
	mk := func() []byte {
		var seed [32]byte
		s, err := Seal(Params{Net: "n", RID: rid, Visibility: Direct, Recipients: []key.ID{bob.ID()}, Body: body(t, 3)}, fixed{mrand.NewChaCha8(seed)})
		if err != nil {
			t.Fatal(err)
		}
		return s.Body
	}
	if !bytes.Equal(mk(), mk()) {
		t.Fatal("same randomness gave different bytes")
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	bob := sk(f, "bob")
	for _, vis := range []string{Public, Direct} {
		p := Params{Net: "n", RID: rid, Visibility: vis, Body: canon.MustMarshal("hi")}
		if vis == Direct {
			p.Recipients = []key.ID{bob.ID()}
		}
		s, _ := Seal(p, rand.Reader)
		f.Add(s.Body)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := DecodeEnvelope(b)
		if err != nil {
			return
		}
		if again := canon.MustMarshal(env); !bytes.Equal(again, b) {
			t.Fatal("accepted envelope does not re-encode to itself")
		}
		// Opening must not panic whatever the bytes.
		Open(b, Binding{Net: "n", RID: rid, PolicyRef: env.Capsule.Policy.Ref(), ContentHash: hashPayload(env.Payload)}, keysOf(bob))
	})
}

func FuzzGateRequest(f *testing.F) {
	gk, bob := sk(f, "gate"), sk(f, "bob")
	gid := gk.ID()
	s, _ := Seal(Params{Net: "n", RID: rid, Visibility: Node, Gate: &gid, Body: canon.MustMarshal(1)}, rand.Reader)
	raw, _, _ := NewGateRequest(bob, s.Body, Binding{Net: "n", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash}, time.Unix(0, 0), rand.Reader)
	f.Add(raw)
	g := NewGate(gk, func(key.ID, []byte) bool { return true })
	f.Fuzz(func(t *testing.T, b []byte) {
		resp := g.Handle(b, time.Unix(0, 0), rand.Reader)
		var r GateResponse
		if err := canon.Unmarshal(resp, &r); err != nil {
			t.Fatalf("gate answered non-canonical bytes: %v", err)
		}
	})
}

// The X25519 public key derived from an identity matches the one derived
// from its secret key (the birational map and the clamped SHA-512 scalar).
func TestX25519FromEd25519(t *testing.T) {
	for _, n := range []string{"a", "b", "c", "d"} {
		s := sk(t, n)
		pub, err := x25519Public(s.ID())
		if err != nil {
			t.Fatal(err)
		}
		priv := hpkePrivate(s)
		got, err := priv.Public().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pub) {
			t.Fatalf("%s: X25519 public from secret %x, from identity %x", n, got, pub)
		}
	}
}

func FuzzGateResponse(f *testing.F) {
	gk, bob := sk(f, "gate"), sk(f, "bob")
	gid := gk.ID()
	s, _ := Seal(Params{Net: "n", RID: rid, Visibility: Node, Gate: &gid, Body: canon.MustMarshal(1)}, rand.Reader)
	b := Binding{Net: "n", RID: rid, PolicyRef: s.PolicyRef, ContentHash: s.ContentHash}
	raw, req, _ := NewGateRequest(bob, s.Body, b, time.Unix(0, 0), rand.Reader)
	g := NewGate(gk, func(key.ID, []byte) bool { return true })
	f.Add(g.Handle(raw, time.Unix(0, 0), rand.Reader))
	g.Disable()
	f.Add(g.Handle(raw, time.Unix(0, 0), rand.Reader))
	f.Fuzz(func(t *testing.T, resp []byte) {
		cek, err := OpenGateResponse(bob, req, resp)
		if err == nil && len(cek) != CEKSize {
			t.Fatalf("accepted a %d-byte CEK", len(cek))
		}
	})
}

func TestSealToOpenSealed(t *testing.T) {
	alice, _ := key.Generate(rand.Reader)
	bob, _ := key.Generate(rand.Reader)
	msg := []byte("peer state")
	ct, err := SealTo(alice.ID(), "sublog/v1/test", msg, []byte("aad"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := OpenSealed(alice, "sublog/v1/test", ct, []byte("aad")); err != nil || string(pt) != string(msg) {
		t.Fatalf("open: %q %v", pt, err)
	}
	bad := bytes.Clone(ct)
	bad[len(bad)-20] ^= 1
	for name, try := range map[string]func() error{
		"other reader": func() error { _, err := OpenSealed(bob, "sublog/v1/test", ct, []byte("aad")); return err },
		"other aad":    func() error { _, err := OpenSealed(alice, "sublog/v1/test", ct, []byte("aaD")); return err },
		"other info":   func() error { _, err := OpenSealed(alice, "sublog/v1/other", ct, []byte("aad")); return err },
		"patched":      func() error { _, err := OpenSealed(alice, "sublog/v1/test", bad, []byte("aad")); return err },
		"short":        func() error { _, err := OpenSealed(alice, "sublog/v1/test", ct[:20], []byte("aad")); return err },
	} {
		if err := try(); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
}
