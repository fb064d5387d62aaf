package key

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"sync"
	"testing"

	"filippo.io/edwards25519"
	circl "github.com/cloudflare/circl/sign/ed25519"
)

var (
	fuzzOnce     sync.Once
	fuzzTorsion  []*edwards25519.Point
	fuzzSmallEnc [][]byte
	orderL       = []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 31: 0x10}
)

// addLE adds b to a (both little-endian, 32 bytes) in place; it reports
// whether the sum still fits in 256 bits.
func addLE(a, b []byte) bool {
	var carry uint16
	for i := range 32 {
		s := uint16(a[i]) + uint16(b[i]) + carry
		a[i], carry = byte(s), s>>8
	}
	return carry == 0
}

// handSigned makes a signature by hand with a mixed-order key A' = A + T[i]
// and R = [r]B + T[j], S = r + k·a (k = H(R, A', msg)): it verifies under the
// cofactored equation always and under the cofactorless one only when
// T[j] = -[k]T[i], so both verdicts are reachable.
func handSigned(seed, msg []byte, i, j byte) (pub, sig []byte) {
	h := sha512.Sum512(seed)
	a, _ := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	A := new(edwards25519.Point).ScalarBaseMult(a)
	A.Add(A, fuzzTorsion[i%8])
	rh := sha512.Sum512(append(append([]byte("r"), seed...), msg...))
	r, _ := edwards25519.NewScalar().SetUniformBytes(rh[:])
	R := new(edwards25519.Point).ScalarBaseMult(r)
	R.Add(R, fuzzTorsion[j%8])
	pub, rb := A.Bytes(), R.Bytes()
	kh := sha512.New()
	kh.Write(rb)
	kh.Write(pub)
	kh.Write(msg)
	k, _ := edwards25519.NewScalar().SetUniformBytes(kh.Sum(nil))
	s := edwards25519.NewScalar().MultiplyAdd(k, a, r)
	return pub, append(rb, s.Bytes()...)
}

// fuzzKeys holds the keys the fuzzer signs with: 4,096 of them, picked by
// the input's seed, so the verifier's expanded-key cache sees hits and
// misses as in a sync. Mutations add keys of every other shape.
var fuzzKeys sync.Map // [32]byte seed -> *Secret

func fuzzKey(seed [32]byte) *Secret {
	seed[2] &= 0x0f
	seed = sha256.Sum256(seed[:3])
	if sk, ok := fuzzKeys.Load(seed); ok {
		return sk.(*Secret)
	}
	sk, err := FromSeed(seed[:])
	if err != nil {
		panic(err)
	}
	fuzzKeys.Store(seed, sk)
	return sk
}

// FuzzVerifyAgrees signs random messages with random keys, mutates the
// signature, the key and the message, and requires the new verifier (voi,
// through the expanded-key cache and without it) and the old one (circl) to
// give the same verdict, behind the same key checks.
func FuzzVerifyAgrees(f *testing.F) {
	for op := range byte(10) {
		f.Add([]byte{op}, []byte("sublog"), []byte{op, 3, op, 200})
	}
	f.Add([]byte("seed"), []byte{}, []byte{})
	f.Add([]byte("mixed"), []byte("m"), []byte{5, 0x12})
	f.Fuzz(func(t *testing.T, seedIn, msg, ops []byte) {
		fuzzOnce.Do(func() { fuzzTorsion, fuzzSmallEnc = torsion(t), smallOrderEncodings(t) })
		seed := sha256.Sum256(seedIn)
		sk := fuzzKey(seed)
		sig := sk.Sign(msg)
		if len(ops) == 0 {
			if want := circl.Sign(circl.NewKeyFromSeed(sk.Seed()), msg); !bytes.Equal(sig, want) {
				t.Fatalf("signers differ: %x vs %x", sig, want)
			}
		}
		pub := sk.ID().Bytes()
		if len(ops) > 16 {
			ops = ops[:16]
		}
		for n := 0; n+1 < len(ops); n += 2 {
			op, arg := ops[n]%10, ops[n+1]
			switch op {
			case 0: // flip a signature bit
				sig[int(arg)%64] ^= 1 << (arg % 8)
			case 1: // flip a key bit
				pub[int(arg)%32] ^= 1 << (arg % 8)
			case 2: // S + L: same value mod L, not reduced
				s := bytes.Clone(sig[32:])
				if addLE(s, orderL) {
					copy(sig[32:], s)
				}
			case 3: // R becomes a small-order encoding (canonical or not)
				copy(sig[:32], fuzzSmallEnc[int(arg)%len(fuzzSmallEnc)])
			case 4: // A becomes a small-order encoding
				copy(pub, fuzzSmallEnc[int(arg)%len(fuzzSmallEnc)])
			case 5: // a hand-made signature under a mixed-order key
				pub, sig = handSigned(seed[:], msg, arg&7, arg>>3)
			case 6: // change the message
				if len(msg) > 0 && arg&1 == 0 {
					msg = append(bytes.Clone(msg[:len(msg)-1]), msg[len(msg)-1]^arg)
				} else {
					msg = append(bytes.Clone(msg), arg)
				}
			case 7: // set high bits of S
				sig[63] |= arg & 0xf0
			case 8: // S = 0, or R = the key
				if arg&1 == 0 {
					clear(sig[32:])
				} else {
					copy(sig[:32], pub)
				}
			case 9: // add a torsion point to R
				R, err := new(edwards25519.Point).SetBytes(sig[:32])
				if err == nil {
					copy(sig[:32], R.Add(R, fuzzTorsion[arg%8]).Bytes())
				}
			}
		}
		nv, ov := accepts(pub, msg, sig), circlAccepts(pub, msg, sig)
		if nv != ov {
			t.Fatalf("verifiers disagree on pub %x msg %x sig %x: voi %v, circl %v", pub, msg, sig, nv, ov)
		}
		// The expanded key must not change a verdict: one exec in eight
		// also checks voi without the cache.
		if seed[1]&7 == 0 {
			if uv := voiUnexpandedAccepts(pub, msg, sig); uv != nv {
				t.Fatalf("expanded and unexpanded voi disagree on pub %x msg %x sig %x: %v vs %v", pub, msg, sig, nv, uv)
			}
		}
	})
}
