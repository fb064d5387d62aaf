package key

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"filippo.io/edwards25519"
	circl "github.com/cloudflare/circl/sign/ed25519"
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// The tests here hold the new verifier (curve25519-voi, strict options,
// expanded keys from the cache) to the old one (circl), which defines what
// a sublog store accepted before the change. The golden suite `ed25519`
// does the same over the public corpora.

// accepts is the store's rule: a key that IDFromBytes accepts and a
// signature that Verify accepts.
func accepts(pub, msg, sig []byte) bool {
	id, err := IDFromBytes(pub)
	return err == nil && id.Verify(msg, sig) == nil
}

// circlAccepts is the same rule with circl's verification.
func circlAccepts(pub, msg, sig []byte) bool {
	if _, err := IDFromBytes(pub); err != nil {
		return false
	}
	return circl.Verify(circl.PublicKey(pub), msg, sig)
}

// voiUnexpandedAccepts checks the same rule without the expanded-key cache.
func voiUnexpandedAccepts(pub, msg, sig []byte) bool {
	if _, err := IDFromBytes(pub); err != nil {
		return false
	}
	return voi.VerifyWithOptions(voi.PublicKey(pub), msg, sig, strict)
}

// TestSignCorpus runs the Ed25519 SUPERCOP corpus that ships with Go
// (keys, messages and signatures): both signers give the expected
// signature and both verifiers accept it; a flipped bit is refused by both.
func TestSignCorpus(t *testing.T) {
	f, err := os.Open(filepath.Join(runtime.GOROOT(), "src", "crypto", "ed25519", "testdata", "sign.input.gz"))
	if err != nil {
		t.Skipf("Go's Ed25519 corpus is not installed: %v", err) // only a Go installation without sources lacks it
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ":")
		if len(parts) != 5 {
			t.Fatalf("line %d: %d fields", n+1, len(parts))
		}
		priv, _ := hex.DecodeString(parts[0])
		pub, _ := hex.DecodeString(parts[1])
		msg, _ := hex.DecodeString(parts[2])
		sig, _ := hex.DecodeString(parts[3])
		sig = sig[:SignatureSize]
		sk, err := FromSeed(priv[:SeedSize])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sk.ID().Bytes(), pub) {
			t.Fatalf("line %d: public key differs", n+1)
		}
		if got := sk.Sign(msg); !bytes.Equal(got, sig) {
			t.Fatalf("line %d: signature differs from the corpus", n+1)
		}
		if got := circl.Sign(circl.NewKeyFromSeed(priv[:SeedSize]), msg); !bytes.Equal(got, sig) {
			t.Fatalf("line %d: circl's signature differs from the corpus", n+1)
		}
		if !accepts(pub, msg, sig) || !circlAccepts(pub, msg, sig) {
			t.Fatalf("line %d: a corpus signature is refused", n+1)
		}
		bad := bytes.Clone(sig)
		bad[n%SignatureSize] ^= 1 << (n % 8)
		if accepts(pub, msg, bad) || circlAccepts(pub, msg, bad) {
			t.Fatalf("line %d: a flipped signature bit is accepted", n+1)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 100 { // Go ships the first 128 lines of SUPERCOP's 1,024
		t.Fatalf("corpus has only %d lines", n)
	}
}

func TestExpandedCacheBounded(t *testing.T) {
	c := newExpandedCache(8)
	var ids [][IDSize]byte
	for i := range 20 {
		sk, _ := FromSeed(bytes.Repeat([]byte{byte(i + 1)}, SeedSize))
		ids = append(ids, sk.ID().Array())
	}
	for _, id := range ids[:8] {
		if _, err := c.get(id); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := c.get(ids[0]) // ids[0] is now the most recently used
	for _, id := range ids[8:15] {
		c.get(id)
	}
	if c.len() != 8 {
		t.Fatalf("cache holds %d, want 8", c.len())
	}
	if b, _ := c.get(ids[0]); a != b {
		t.Fatal("the most recently used key was evicted")
	}
	c.mu.Lock()
	_, stale := c.m[ids[1]]
	c.mu.Unlock()
	if stale {
		t.Fatal("the least recently used key was kept")
	}
	// Concurrent use (run with -race): many goroutines, more keys than fit.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if _, err := c.get(ids[(g+i)%len(ids)]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if c.len() != 8 {
		t.Fatalf("cache holds %d after concurrent use, want 8", c.len())
	}
}

// TestVerifyRefusesThroughTheCache: a key the cache cannot expand (the zero
// ID, a small-order point) is refused, not panicked on.
func TestVerifyRefusesWeakAndZeroKeys(t *testing.T) {
	var zero ID
	if err := zero.Verify([]byte("m"), make([]byte, SignatureSize)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("zero ID: %v", err)
	}
	for _, enc := range smallOrderEncodings(t) {
		w := ID{}
		copy(w.b[:], enc)
		sig := append(bytes.Repeat([]byte{0}, 0), enc...)
		sig = append(sig, make([]byte, 32)...)
		if err := w.Verify([]byte("Zcash"), sig); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("small-order key %x: %v", enc, err)
		}
	}
}

// torsion returns the 8 points of small order, T[i] = [i]T1 with T1 of
// order 8, found as [L]P for points P decoded from hashes.
func torsion(t testing.TB) []*edwards25519.Point {
	lm1, _ := hex.DecodeString("ecd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	s, err := edwards25519.NewScalar().SetCanonicalBytes(lm1)
	if err != nil {
		t.Fatal(err)
	}
	id := edwards25519.NewIdentityPoint()
	for i := uint32(0); ; i++ {
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], i)
		h := sha256.Sum256(c[:])
		p, err := new(edwards25519.Point).SetBytes(h[:])
		if err != nil {
			continue
		}
		q := new(edwards25519.Point).ScalarMult(s, p)
		q.Add(q, p) // [L]P: P's torsion component times L, a small-order point
		q4 := new(edwards25519.Point).Add(q, q)
		q4.Add(q4, q4)
		if q4.Equal(id) == 1 {
			continue // order < 8
		}
		out := []*edwards25519.Point{edwards25519.NewIdentityPoint()}
		for len(out) < 8 {
			out = append(out, new(edwards25519.Point).Add(out[len(out)-1], q))
		}
		return out
	}
}

// smallOrderEncodings lists the 14 encodings of small-order points: the 8
// canonical ones, y+p where that fits in 255 bits, and the sign bit set on
// points with x = 0.
func smallOrderEncodings(t testing.TB) [][]byte {
	var out [][]byte
	p, _ := hex.DecodeString("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	for _, pt := range torsion(t) {
		e := pt.Bytes()
		out = append(out, e)
		y := bytes.Clone(e)
		y[31] &= 0x7f
		sign := e[31] & 0x80
		small := y[0] < 19 && bytes.Equal(y[1:], make([]byte, 31))
		xZero := bytes.Equal(pt.Bytes(), new(edwards25519.Point).Negate(pt).Bytes())
		if small { // y + p < 2^255
			np := bytes.Clone(p)
			np[0] += y[0]
			np[31] |= sign
			out = append(out, np)
			if xZero {
				out = append(out, append(np[:31:31], np[31]^0x80))
			}
		}
		if xZero {
			out = append(out, append(e[:31:31], e[31]^0x80))
		}
	}
	return out
}

func TestSmallOrderEncodings(t *testing.T) {
	encs := smallOrderEncodings(t)
	if len(encs) != 14 {
		t.Fatalf("%d encodings, want 14", len(encs))
	}
	for _, e := range encs {
		if _, err := IDFromBytes(e); err == nil {
			t.Fatalf("small-order encoding %x accepted as an identity", e)
		}
	}
}

// TestCofactoredDisagrees shows why voi's cofactored verification (and so
// its batch verification) must never decide acceptance: on mixed-order
// signatures it accepts what the store's rule refuses.
func TestCofactoredDisagrees(t *testing.T) {
	fuzzOnce.Do(func() { fuzzTorsion, fuzzSmallEnc = torsion(t), smallOrderEncodings(t) })
	cofactored := &voi.Options{Verify: voi.VerifyOptionsFIPS_186_5}
	differ := 0
	for i := range byte(64) {
		pub, sig := handSigned([]byte{i}, []byte("m"), i&7, i>>3)
		if !voi.VerifyWithOptions(pub, []byte("m"), sig, cofactored) {
			t.Fatalf("case %d: the cofactored equation should hold", i)
		}
		if !accepts(pub, []byte("m"), sig) {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("no mixed-order case separates the cofactored and cofactorless equations")
	}
}
