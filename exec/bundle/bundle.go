// Package bundle owns the peer bundle file: one WebAssembly module and the
// minimal manifest that says what it is (name, version), which peer identity
// it runs as, which host functions it needs and the resource caps it asks
// for. A bundle file is one canonical CBOR item, named by the SHA-256 of its
// exact bytes (its content hash); Open checks the hash before anything else,
// and Decode accepts exactly one encoding of each bundle. It does no I/O.
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// Format version and limits of the bundle file (format version 1).
const (
	Version       = 1
	MaxFileSize   = 64 << 20 // a bundle file over 64 MiB is refused
	MaxModuleSize = MaxFileSize - 64<<10
	MaxVersionLen = 64
	HashSize      = sha256.Size
	// The bounds of limits are shared with grant cards (log/kinds).
	MaxMemory    = kinds.MaxMemory
	PageSize     = kinds.PageSize
	MaxInstances = kinds.MaxInstances
	MaxCPUMillis = kinds.MaxCPUMillis
)

// Host function groups a manifest may require and a grant may name (defined
// with the grant body, in log/kinds).
const (
	CapReq    = kinds.CapReq
	CapKV     = kinds.CapKV
	CapLog    = kinds.CapLog
	CapClock  = kinds.CapClock
	CapRandom = kinds.CapRandom
)

// Caps lists every host function group, sorted.
var Caps = kinds.HostCaps

// Errors. Each rejection reason has its own value; CBOR-level reasons come
// from log/canon wrapped inside ErrMalformed.
var (
	ErrHashMismatch = errors.New("bundle: bytes do not match the content hash")
	ErrTooLarge     = errors.New("bundle: file over 64 MiB")
	ErrMalformed    = errors.New("bundle: malformed bundle file")
	ErrManifest     = errors.New("bundle: bad manifest")
	ErrModule       = errors.New("bundle: not a WebAssembly module")
)

// Hash is the content hash of a bundle file: SHA-256 of its exact bytes.
type Hash [HashSize]byte

// HashOf hashes bundle file bytes.
func HashOf(b []byte) Hash { return sha256.Sum256(b) }

// String gives "sha256:<hex>".
func (h Hash) String() string { return "sha256:" + hex.EncodeToString(h[:]) }

// Short gives the first 12 hex digits, for logs and file names in messages.
func (h Hash) Short() string { return hex.EncodeToString(h[:6]) }

// IsZero reports whether h is the zero hash.
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses "sha256:<64 hex digits>" (the prefix may be omitted).
func ParseHash(s string) (Hash, error) {
	var h Hash
	t := strings.TrimPrefix(s, "sha256:")
	if len(t) != 2*HashSize {
		return h, fmt.Errorf("bundle: %q is not a content hash (sha256:<64 hex digits>)", s)
	}
	if _, err := hex.Decode(h[:], []byte(t)); err != nil || strings.ToLower(t) != t {
		return h, fmt.Errorf("bundle: %q is not a content hash (sha256:<64 lowercase hex digits>)", s)
	}
	return h, nil
}

// HashFromBytes takes a 32-byte digest (as carried in cards).
func HashFromBytes(b []byte) (Hash, error) {
	var h Hash
	if len(b) != HashSize {
		return h, fmt.Errorf("bundle: content hash of %d bytes, want %d", len(b), HashSize)
	}
	copy(h[:], b)
	return h, nil
}

// Limits are a manifest's resource limits, in the names and units of grant
// cards (one type, in log/kinds, with its bounds check Validate).
type Limits = kinds.Limits

// Manifest describes a bundle. Peer is the identity the module runs as; the
// bundle's owner is whoever publishes it (a bundle card), never the host.
type Manifest struct {
	Name    string   `cbor:"name"`
	Version string   `cbor:"version"`
	Peer    []byte   `cbor:"peer"`
	Caps    []string `cbor:"caps,omitempty"`
	Limits  Limits   `cbor:"limits"`
	Policy  []byte   `cbor:"policy,omitempty"` // optional policy reference: SHA-256 of a policy document
}

// file is the wire form of a bundle file.
type file struct {
	V        uint64   `cbor:"v"`
	Manifest Manifest `cbor:"manifest"`
	Module   []byte   `cbor:"module"`
}

// Bundle is a decoded, validated bundle file.
type Bundle struct {
	Manifest Manifest
	Module   []byte
	peer     key.ID
	hash     Hash
	raw      []byte
}

// Hash is the content hash of the bundle file.
func (b *Bundle) Hash() Hash { return b.hash }

// Peer is the identity the bundle runs as.
func (b *Bundle) Peer() key.ID { return b.peer }

// Bytes are the exact bundle file bytes.
func (b *Bundle) Bytes() []byte { return b.raw }

// Size is the size of the bundle file in bytes.
func (b *Bundle) Size() int { return len(b.raw) }

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
)

// Validate checks a manifest's fields.
func (m *Manifest) Validate() error {
	if !nameRE.MatchString(m.Name) {
		return fmt.Errorf("%w: name %q (want [a-z0-9][a-z0-9._-]{0,63})", ErrManifest, m.Name)
	}
	if m.Version == "" || len(m.Version) > MaxVersionLen || !utf8.ValidString(m.Version) ||
		strings.ContainsFunc(m.Version, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%w: version %q (want 1..%d printable characters, no spaces)", ErrManifest, m.Version, MaxVersionLen)
	}
	if _, err := key.IDFromBytes(m.Peer); err != nil {
		return fmt.Errorf("%w: peer: %w", ErrManifest, err)
	}
	for i, c := range m.Caps {
		if !slices.Contains(Caps, c) {
			return fmt.Errorf("%w: unknown cap %q (known: %s)", ErrManifest, c, strings.Join(Caps, ", "))
		}
		if i > 0 && m.Caps[i-1] >= c {
			return fmt.Errorf("%w: caps must be sorted and unique (%q after %q)", ErrManifest, c, m.Caps[i-1])
		}
	}
	if err := m.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrManifest, err)
	}
	if m.Policy != nil && len(m.Policy) != HashSize {
		return fmt.Errorf("%w: policy is %d bytes, want a %d-byte digest", ErrManifest, len(m.Policy), HashSize)
	}
	return nil
}

// Build packs a manifest and a module into bundle file bytes. The same inputs
// always give the same bytes, hence the same content hash.
func Build(m Manifest, module []byte) ([]byte, error) {
	m.Caps = slices.Clone(m.Caps)
	slices.Sort(m.Caps)
	m.Caps = slices.Compact(m.Caps)
	if len(m.Caps) == 0 {
		m.Caps = nil
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := checkModule(module); err != nil {
		return nil, err
	}
	b, err := canon.Marshal(file{V: Version, Manifest: m, Module: module})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// Open checks that b hashes to want and only then decodes it. This is how a
// host takes bundle bytes that travelled as a blob named by a bundle card.
func Open(b []byte, want Hash) (*Bundle, error) {
	if got := HashOf(b); got != want {
		return nil, fmt.Errorf("%w: got %s, want %s", ErrHashMismatch, got, want)
	}
	return Decode(b)
}

// Decode strictly decodes bundle file bytes: canonical CBOR through log/canon,
// no unknown fields, a valid manifest and a module with the wasm header.
func Decode(b []byte) (*Bundle, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	var f file
	if err := canon.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if f.V != Version {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrMalformed, f.V, Version)
	}
	if err := f.Manifest.Validate(); err != nil {
		return nil, err
	}
	if err := checkModule(f.Module); err != nil {
		return nil, err
	}
	// One encoding per bundle: an explicit zero or empty field (which the
	// encoder omits) would give a second encoding of the same bundle.
	if again, err := canon.Marshal(f); err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: not the one encoding (a zero or empty field is written out)", ErrMalformed)
	}
	peer, _ := key.IDFromBytes(f.Manifest.Peer) // checked by Validate
	return &Bundle{Manifest: f.Manifest, Module: f.Module, peer: peer, hash: HashOf(b), raw: b}, nil
}

func checkModule(m []byte) error {
	if len(m) > MaxModuleSize {
		return fmt.Errorf("%w: module of %d bytes", ErrTooLarge, len(m))
	}
	if !bytes.HasPrefix(m, wasmMagic) {
		return fmt.Errorf("%w: module does not start with the wasm version 1 header", ErrModule)
	}
	return nil
}
