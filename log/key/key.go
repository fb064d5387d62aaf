// Package key owns identities: Ed25519 public keys (ID), secret keys (Secret),
// their z-base-32 text form and strict parsing. It is a leaf package: it imports
// nothing else of sublog's, so every other package may use it.
package key

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/edwards25519"
	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Sizes of the encodings this package accepts.
const (
	IDSize        = 32 // an Ed25519 public key
	SeedSize      = 32 // an Ed25519 private seed
	SignatureSize = 64
	TextSize      = 52 // z-base-32 of 32 bytes, unpadded
)

// Errors returned by parsing and verification.
var (
	// ErrBadLength: the bytes or text do not have the size of a key.
	ErrBadLength = errors.New("key: wrong length")
	// ErrBadText: the text is not z-base-32.
	ErrBadText = errors.New("key: not z-base-32")
	// ErrNonCanonical: the bytes are not the one canonical encoding of a
	// curve point (including a non-reduced y coordinate or trailing text bits).
	ErrNonCanonical = errors.New("key: non-canonical point encoding")
	// ErrWeakKey: the point is of small order, so anyone could forge for it.
	ErrWeakKey = errors.New("key: small-order public key")
	// ErrBadSignature: the signature does not verify under the key.
	ErrBadSignature = errors.New("key: bad signature")
)

// zbase32 is the z-base-32 alphabet used by PKARR, with no padding.
var zbase32 = base32.NewEncoding("ybndrfg8ejkmcpqxot1uwisza345h769").WithPadding(base32.NoPadding)

// ID is an identity: the 32-byte Ed25519 public key of a host, a peer, a
// service owner or a device. The zero ID is not a valid identity.
type ID struct{ b [IDSize]byte }

// IDFromBytes parses a public key, rejecting any other length, non-canonical
// point encodings and small-order points.
func IDFromBytes(b []byte) (ID, error) {
	if len(b) != IDSize {
		return ID{}, fmt.Errorf("%w: %d bytes, want %d", ErrBadLength, len(b), IDSize)
	}
	var id ID
	copy(id.b[:], b)
	if valid.has(id.b) {
		return id, nil
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %x is not a curve point", ErrNonCanonical, b)
	}
	// SetBytes accepts non-canonical y (y >= p); the re-encoding does not.
	if !bytes.Equal(p.Bytes(), b) {
		return ID{}, fmt.Errorf("%w: %x", ErrNonCanonical, b)
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return ID{}, fmt.Errorf("%w: %x", ErrWeakKey, b)
	}
	valid.add(id.b)
	return id, nil
}

// validCache remembers keys that passed the point checks (a pure function of
// the bytes), since one log's author is parsed again on every card. It is
// bounded: when full it starts over.
type validCache struct {
	mu sync.Mutex
	m  map[[IDSize]byte]struct{}
}

const validCacheSize = 4096

var valid = &validCache{m: map[[IDSize]byte]struct{}{}}

func (c *validCache) has(b [IDSize]byte) bool {
	c.mu.Lock()
	_, ok := c.m[b]
	c.mu.Unlock()
	return ok
}

func (c *validCache) add(b [IDSize]byte) {
	c.mu.Lock()
	if len(c.m) >= validCacheSize {
		clear(c.m)
	}
	c.m[b] = struct{}{}
	c.mu.Unlock()
}

// ParseID parses the z-base-32 text form. It accepts exactly 52 lowercase
// characters of the alphabet whose trailing bits are zero, so each identity
// has exactly one text form.
func ParseID(s string) (ID, error) {
	if len(s) != TextSize {
		return ID{}, fmt.Errorf("%w: %q has %d characters, want %d", ErrBadLength, s, len(s), TextSize)
	}
	b, err := zbase32.DecodeString(s)
	if err != nil || len(b) != IDSize {
		return ID{}, fmt.Errorf("%w: %q", ErrBadText, s)
	}
	if zbase32.EncodeToString(b) != s {
		return ID{}, fmt.Errorf("%w: %q has non-zero trailing bits", ErrBadText, s)
	}
	return IDFromBytes(b)
}

// Bytes returns a copy of the 32 key bytes.
func (id ID) Bytes() []byte { b := id.b; return b[:] }

// Array returns the key bytes as an array (for map keys and store keys).
func (id ID) Array() [IDSize]byte { return id.b }

// IsZero reports whether id is the zero value (no identity).
func (id ID) IsZero() bool { return id.b == [IDSize]byte{} }

// String is the z-base-32 text form.
func (id ID) String() string { return zbase32.EncodeToString(id.b[:]) }

// Short is a 10-character prefix of the text form for tables; never parse it.
func (id ID) Short() string { return id.String()[:10] }

// Compare orders identities by their bytes.
func (id ID) Compare(o ID) int { return bytes.Compare(id.b[:], o.b[:]) }

// MarshalText implements encoding.TextMarshaler (JSON and YAML use the text form).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseID's strictness.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// strict is the one acceptance rule of every signature sublog checks (see
// ARCHITECTURE.md, "Signatures"): A and R must be the canonical encodings of
// curve points, S < L, A not of small order (IDFromBytes refuses such keys
// too), and the cofactorless equation [S]B = R + [k]A checked by comparing
// the canonical encoding of [S]B - [k]A with the R bytes. A small-order R is
// not refused (RFC 8032 does not, and neither did the earlier verifier).
// curve25519-voi's batch verification is cofactored and is never used.
var strict = &ed25519.Options{Verify: &ed25519.VerifyOptions{
	AllowSmallOrderA:   false,
	AllowSmallOrderR:   true,
	AllowNonCanonicalA: false,
	AllowNonCanonicalR: false,
	CofactorlessVerify: true,
}}

// Verify checks a pure Ed25519 signature (RFC 8032) over msg under the
// strict rule above, with the key's precomputed expansion from a bounded
// per-process cache (one log's cards are verified under the same key).
func (id ID) Verify(msg, sig []byte) error {
	if len(sig) != SignatureSize {
		return fmt.Errorf("%w: signature is %d bytes", ErrBadSignature, len(sig))
	}
	epk, err := expanded.get(id.b)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !ed25519.VerifyExpandedWithOptions(epk, msg, sig, strict) {
		return ErrBadSignature
	}
	return nil
}

// Secret is an identity's signing key. Its bytes never leave the package
// except through Seed, which the key store uses to persist it.
type Secret struct {
	priv ed25519.PrivateKey
	id   ID
}

// Generate creates a new secret key from rand (crypto/rand in production,
// a fixed stream in golden vectors and tests).
func Generate(rand io.Reader) (*Secret, error) {
	seed := make([]byte, SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("key: reading randomness: %w", err)
	}
	return FromSeed(seed)
}

// FromSeed rebuilds a secret key from its 32-byte seed.
func FromSeed(seed []byte) (*Secret, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrBadLength, len(seed), SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	id, err := IDFromBytes(pub)
	if err != nil { // cannot happen for a clamped scalar; keep the check honest
		return nil, err
	}
	return &Secret{priv: priv, id: id}, nil
}

// DeriveSeed returns a deterministic seed for name from a master seed; the
// golden vectors and tests use it for reproducible keys. Never use it for
// real keys.
func DeriveSeed(master []byte, name string) []byte {
	h := sha256.New()
	h.Write([]byte("sublog/v1/test-seed\x00"))
	h.Write(master)
	h.Write([]byte{0})
	h.Write([]byte(name))
	return h.Sum(nil)
}

// ID returns the public identity.
func (s *Secret) ID() ID { return s.id }

// Seed returns a copy of the 32-byte private seed.
func (s *Secret) Seed() []byte { return append([]byte(nil), s.priv.Seed()...) }

// Sign signs msg with pure Ed25519 (deterministic: same key and message give
// the same signature).
func (s *Secret) Sign(msg []byte) []byte { return ed25519.Sign(s.priv, msg) }

// Equal compares two secret keys in constant time.
func (s *Secret) Equal(o *Secret) bool {
	return subtle.ConstantTimeCompare(s.priv, o.priv) == 1
}

// Signer adapts the secret key to crypto.Signer for libraries that want one.
func (s *Secret) Signer() crypto.Signer { return s.priv }

// Labels for domain separation: every signature context in sublog names one.
const (
	LabelCard = "sublog/v1/card" // COSE external_aad of every card
)

// String never prints key material.
func (s *Secret) String() string { return "secret(" + s.id.String() + ")" }
