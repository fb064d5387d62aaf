package golden

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
	circl "github.com/cloudflare/circl/sign/ed25519"

	"github.com/sublog/sublog/log/key"
)

// The Ed25519 acceptance suites pin what a sublog store accepts as a
// signature (ARCHITECTURE.md, "Signatures"): each vector is a public key, a
// message and a signature with the verdict of the store's rule (the key
// checks of key.IDFromBytes, then key.ID.Verify). The checker judges every
// vector with both the current verifier (log/key, curve25519-voi) and the
// previous one (circl behind the same key checks): a change of library that
// changed a single verdict fails here.
//
// `ed25519` is generated here from first principles (RFC 8032's tests, the
// ZIP-215 combinations of small-order and non-canonical encodings, mixed-order
// keys and nonces, S out of range); `ed25519-corpus` holds the public corpora
// (Wycheproof, the "Taming the many EdDSAs" speccheck cases, the
// ed25519vectors corpus), imported by -update from the Go module cache (see
// ed25519_corpus.go) and frozen.

func init() {
	Register(&Suite{Name: "ed25519", Generate: genEd25519, Check: checkEd25519})
	Register(&Suite{Name: "ed25519-corpus", Generate: genEd25519Corpus, Check: checkEd25519, Frozen: true})
}

// sigVerdict is the store's rule with the current verifier.
func sigVerdict(pub, msg, sig []byte) error {
	id, err := key.IDFromBytes(pub)
	if err != nil {
		return err
	}
	return id.Verify(msg, sig)
}

// circlVerdict is the same rule with the previous verifier, circl.
func circlVerdict(pub, msg, sig []byte) error {
	if _, err := key.IDFromBytes(pub); err != nil {
		return err
	}
	if !circl.Verify(circl.PublicKey(pub), msg, sig) {
		return key.ErrBadSignature
	}
	return nil
}

func expectOf(err error) string {
	if err == nil {
		return "accept"
	}
	return "reject " + Reason(err)
}

// sigVector builds a vector and fails if the two verifiers disagree.
func sigVector(suite, name, source string, seed, pub, msg, sig []byte) (*Vector, error) {
	nv, ov := sigVerdict(pub, msg, sig), circlVerdict(pub, msg, sig)
	if expectOf(nv) != expectOf(ov) {
		return nil, fmt.Errorf("golden: %s/%s: verifiers disagree: %v vs circl %v", suite, name, nv, ov)
	}
	v := newVector(suite, name, expectOf(nv), "Ed25519: public key, message, signature -> the store's verdict (current and previous verifier)")
	v.Set("source", source)
	if seed != nil {
		v.SetHex("seed", seed)
	}
	v.SetHex("public", pub)
	v.SetHex("msg", msg)
	v.SetHex("sig", sig)
	return v, nil
}

func checkEd25519(v *Vector) error {
	accept, reason, _ := v.Expect()
	pub, err := v.Hex("public")
	if err != nil {
		return err
	}
	msg, err := v.Hex("msg")
	if err != nil {
		return err
	}
	sig, err := v.Hex("sig")
	if err != nil {
		return err
	}
	if _, ok := v.Get("seed"); ok {
		seed, err := v.Hex("seed")
		if err != nil {
			return err
		}
		sk, err := key.FromSeed(seed)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
		}
		if !bytes.Equal(sk.ID().Bytes(), pub) {
			return fmt.Errorf("%w: %s: seed gives key %x", ErrMismatch, v.ID(), sk.ID().Bytes())
		}
		if accept {
			if got := sk.Sign(msg); !bytes.Equal(got, sig) {
				return fmt.Errorf("%w: %s: signing gives %x", ErrMismatch, v.ID(), got)
			}
			if got := circl.Sign(circl.NewKeyFromSeed(seed), msg); !bytes.Equal(got, sig) {
				return fmt.Errorf("%w: %s: circl signing gives %x", ErrMismatch, v.ID(), got)
			}
		}
	}
	for _, c := range []struct {
		who string
		err error
	}{{"verifier", sigVerdict(pub, msg, sig)}, {"previous verifier (circl)", circlVerdict(pub, msg, sig)}} {
		if accept && c.err != nil {
			return fmt.Errorf("%w: %s: the %s refuses it: %v", ErrMismatch, v.ID(), c.who, c.err)
		}
		if !accept {
			if err := expectReject(v, c.err, reason); err != nil {
				return fmt.Errorf("%w (%s)", err, c.who)
			}
		}
	}
	return nil
}

// --- small-order points -----------------------------------------------------

// torsionPoints returns the 8 points of small order as [i]T for a point T
// of order 8, found as [L]P for points P decoded from hashes (L the prime
// order of the base point, so [L]P is P's small-order component).
func torsionPoints() []*edwards25519.Point {
	lm1, _ := hex.DecodeString("ecd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010") // L-1
	s, err := edwards25519.NewScalar().SetCanonicalBytes(lm1)
	if err != nil {
		panic(err)
	}
	for i := uint32(0); ; i++ {
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], i)
		h := sha256.Sum256(append([]byte("sublog/v1/golden-torsion\x00"), c[:]...))
		p, err := new(edwards25519.Point).SetBytes(h[:])
		if err != nil {
			continue
		}
		t := new(edwards25519.Point).ScalarMult(s, p)
		t.Add(t, p)
		t4 := new(edwards25519.Point).Add(t, t)
		t4.Add(t4, t4)
		if t4.Equal(edwards25519.NewIdentityPoint()) == 1 {
			continue // order below 8
		}
		out := []*edwards25519.Point{edwards25519.NewIdentityPoint()}
		for len(out) < 8 {
			out = append(out, new(edwards25519.Point).Add(out[len(out)-1], t))
		}
		return out
	}
}

// fieldP is 2^255-19, little-endian.
var fieldP = func() []byte {
	b, _ := hex.DecodeString("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	return b
}()

// smallOrderEncoding is one of the 14 32-byte strings that decode (under a
// lenient decoder) to a small-order point.
type smallOrderEncoding struct {
	b         []byte
	order     int
	canonical bool
}

// smallOrderEncodings lists them as ZIP-215's test set does: the 8
// canonical encodings, y+p wherever that still fits in 255 bits (y < 19),
// and the sign bit set on the points with x = 0 (y = 1 and y = -1).
func smallOrderEncodings() []smallOrderEncoding {
	var out []smallOrderEncoding
	for i, pt := range torsionPoints() {
		order := 8
		switch i {
		case 0:
			order = 1
		case 4:
			order = 2
		case 2, 6:
			order = 4
		}
		e := pt.Bytes()
		out = append(out, smallOrderEncoding{e, order, true})
		y := bytes.Clone(e)
		y[31] &= 0x7f
		sign := e[31] & 0x80
		xZero := bytes.Equal(e, new(edwards25519.Point).Negate(pt).Bytes())
		if y[0] < 19 && bytes.Equal(y[1:], make([]byte, 31)) {
			np := bytes.Clone(fieldP)
			np[0] += y[0]
			np[31] |= sign
			out = append(out, smallOrderEncoding{np, order, false})
			if xZero {
				out = append(out, smallOrderEncoding{append(np[:31:31], np[31]^0x80), order, false})
			}
		}
		if xZero {
			out = append(out, smallOrderEncoding{append(e[:31:31], e[31]^0x80), order, false})
		}
	}
	return out
}

// --- the generated suite ----------------------------------------------------

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// rfc8032 holds RFC 8032 section 7.1's Ed25519 tests that fit on a line
// (TEST 1024's 1,023-byte message is in ed25519-corpus, from Wycheproof,
// which carries it). TEST SHA(abc) signs SHA-512("abc").
var rfc8032 = []struct{ name, seed, pub, msg, sig string }{
	{"rfc8032-test1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
		"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
	{"rfc8032-test2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
		"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
	{"rfc8032-test3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7", "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
		"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
	{"rfc8032-test-sha-abc", "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42", "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf", "sha512:abc",
		"dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"},
}

// scalarOf derives a test scalar and its point from a label.
func scalarOf(label string) (*edwards25519.Scalar, *edwards25519.Point) {
	h := sha512.Sum512([]byte("sublog/v1/golden-ed25519\x00" + label))
	s, _ := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	return s, new(edwards25519.Point).ScalarBaseMult(s)
}

// challenge is k = H(R || A || M) mod L.
func challenge(r, a, msg []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write(r)
	h.Write(a)
	h.Write(msg)
	k, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	return k
}

func genEd25519() ([]*Vector, error) {
	const suite = "ed25519"
	var out []*Vector
	add := func(v *Vector, err error) error {
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}
	for _, t := range rfc8032 {
		var msg []byte
		if t.msg == "sha512:abc" {
			h := sha512.Sum512([]byte("abc"))
			msg = h[:]
		} else {
			msg = mustHex(t.msg)
		}
		seed, pub, sig := mustHex(t.seed), mustHex(t.pub), mustHex(t.sig)
		sk, err := key.FromSeed(seed)
		if err != nil || !bytes.Equal(sk.ID().Bytes(), pub) || !bytes.Equal(sk.Sign(msg), sig) {
			return nil, fmt.Errorf("golden: %s: this implementation does not reproduce the RFC's key or signature", t.name)
		}
		if err := add(sigVector(suite, t.name, "RFC 8032 section 7.1", seed, pub, msg, sig)); err != nil {
			return nil, err
		}
	}

	// ZIP-215's combinations: every small-order encoding as A and as R,
	// S = 0, message "Zcash". Every one is refused by the store (its key is
	// of small order or not canonical), whatever a ZIP-215 verifier says.
	encs := smallOrderEncodings()
	if len(encs) != 14 {
		return nil, fmt.Errorf("golden: %d small-order encodings, want 14", len(encs))
	}
	desc := func(e smallOrderEncoding) string {
		c := "canonical"
		if !e.canonical {
			c = "non-canonical"
		}
		return fmt.Sprintf("order %d, %s", e.order, c)
	}
	for i, a := range encs {
		for j, r := range encs {
			sig := append(bytes.Clone(r.b), make([]byte, 32)...)
			src := fmt.Sprintf("ZIP-215 combination: A = small-order encoding %d (%s), R = encoding %d (%s), S = 0", i, desc(a), j, desc(r))
			if err := add(sigVector(suite, fmt.Sprintf("zip215-a%02d-r%02d", i, j), src, nil, a.b, []byte("Zcash"), sig)); err != nil {
				return nil, err
			}
		}
	}

	// Mixed-order keys and nonces: A = [a]B + T_i, R = [r]B + T_j,
	// S = r + k·a. The cofactored equation holds for all 64; the
	// cofactorless one only when T_j = -[k]T_i, so a cofactored verifier
	// (batch verification) would accept what the store refuses.
	tor := torsionPoints()
	msg := []byte("sublog mixed-order")
	for i := range 8 {
		a, aB := scalarOf(fmt.Sprintf("a%d", i))
		A := new(edwards25519.Point).Add(aB, tor[i])
		for j := range 8 {
			r, rB := scalarOf(fmt.Sprintf("r%d-%d", i, j))
			R := new(edwards25519.Point).Add(rB, tor[j])
			k := challenge(R.Bytes(), A.Bytes(), msg)
			s := edwards25519.NewScalar().MultiplyAdd(k, a, r)
			sig := append(R.Bytes(), s.Bytes()...)
			src := fmt.Sprintf("A = [a]B + %d·T8, R = [r]B + %d·T8, S = r + k·a (cofactored equation holds)", i, j)
			if err := add(sigVector(suite, fmt.Sprintf("mixed-a%d-r%d", i, j), src, nil, A.Bytes(), msg, sig)); err != nil {
				return nil, err
			}
		}
		// A small-order R under the same mixed-order key: S = k·a, so
		// [S]B - [k]A = -[k]T_i, a small-order point.
		for j, re := range encs {
			k := challenge(re.b, A.Bytes(), msg)
			s := edwards25519.NewScalar().Multiply(k, a)
			sig := append(bytes.Clone(re.b), s.Bytes()...)
			src := fmt.Sprintf("A = [a]B + %d·T8, R = small-order encoding %d (%s), S = k·a", i, j, desc(re))
			if err := add(sigVector(suite, fmt.Sprintf("mixed-a%d-small-r%02d", i, j), src, nil, A.Bytes(), msg, sig)); err != nil {
				return nil, err
			}
		}
	}

	// S out of range: a good signature with S + n·L (the same value mod L)
	// and with high bits set; S = L.
	sk := Fixture("alice")
	good := sk.Sign(msg)
	lBytes := mustHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	for _, n := range []int{1, 2, 15} {
		sig := bytes.Clone(good)
		for range n {
			if !addLE(sig[32:], lBytes) {
				return nil, errors.New("golden: S + n·L overflows")
			}
		}
		if err := add(sigVector(suite, fmt.Sprintf("s-plus-%dl", n), fmt.Sprintf("a good signature with S + %d·L", n), nil, sk.ID().Bytes(), msg, sig)); err != nil {
			return nil, err
		}
	}
	for _, c := range []struct {
		name, src string
		s         []byte
	}{
		{"s-equals-l", "S = L", lBytes},
		{"s-high-bit", "a good signature with S's top bit set", nil},
		{"s-all-ones", "S = 2^256 - 1", bytes.Repeat([]byte{0xff}, 32)},
		{"s-zero", "S = 0 under a prime-order key", make([]byte, 32)},
	} {
		sig := bytes.Clone(good)
		if c.s != nil {
			copy(sig[32:], c.s)
		} else {
			sig[63] |= 0x80
		}
		if err := add(sigVector(suite, c.name, c.src, nil, sk.ID().Bytes(), msg, sig)); err != nil {
			return nil, err
		}
	}
	if err := add(sigVector(suite, "good", "a good signature by the golden identity alice", key.DeriveSeed(Master, "alice"), sk.ID().Bytes(), msg, good)); err != nil {
		return nil, err
	}

	// Non-canonical encodings of prime-order-component points (y + p for the
	// y < 19 that lie on the curve), as A and as R.
	for y := byte(2); y < 19; y++ {
		enc := make([]byte, 32)
		enc[0] = y
		if _, err := new(edwards25519.Point).SetBytes(enc); err != nil {
			continue // y is not on the curve
		}
		np := bytes.Clone(fieldP)
		np[0] += y
		sigR := append(bytes.Clone(np), good[32:]...)
		if err := add(sigVector(suite, fmt.Sprintf("noncanonical-r-y%d", y), fmt.Sprintf("R encoded as y = %d + p", y), nil, sk.ID().Bytes(), msg, sigR)); err != nil {
			return nil, err
		}
		if err := add(sigVector(suite, fmt.Sprintf("noncanonical-a-y%d", y), fmt.Sprintf("A encoded as y = %d + p", y), nil, np, msg, good)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addLE adds b to a (little-endian, 32 bytes) in place and reports whether
// the sum fits in 256 bits.
func addLE(a, b []byte) bool {
	var carry uint16
	for i := range 32 {
		s := uint16(a[i]) + uint16(b[i]) + carry
		a[i], carry = byte(s), s>>8
	}
	return carry == 0
}
