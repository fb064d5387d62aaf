// Package blob owns content-addressed blobs: bytes too large for a card
// (bundle modules, a moved peer's encrypted state, content named by a card's
// content_hash). A blob is named by the SHA-256 of its bytes, kept in the
// home, carried between nodes in fixed-size chunks that are each checked
// against a manifest of chunk hashes before they are kept, resumable after a
// cut (verified chunks stay), and never used before the whole hash matches.
// Blobs no stored card names are collected (GC).
//
// The package does the file I/O of the store and speaks the transfer
// protocol over any byte stream (see proto.go); who may receive a blob is
// the caller's decision (Serve takes an entitlement function).
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/sublog/sublog/log/canon"
)

// Sizes and bounds.
const (
	// ChunkSize is the fixed chunk size: every chunk but the last of a blob
	// is exactly this long.
	ChunkSize = 256 << 10
	// MaxSize is the largest blob the store takes (4,096 chunks).
	MaxSize = 1 << 30
	// MaxChunks is the most chunks a manifest lists.
	MaxChunks = MaxSize / ChunkSize
	// manifestVersion is the manifest format version.
	manifestVersion = 1
)

// Errors. Callers tell outcomes apart with errors.Is.
var (
	ErrNotFound      = errors.New("blob: not held here")
	ErrTooLarge      = errors.New("blob: too large")
	ErrBadHash       = errors.New("blob: malformed hash")
	ErrBadManifest   = errors.New("blob: malformed manifest")
	ErrBadChunk      = errors.New("blob: chunk does not match its hash")
	ErrMismatch      = errors.New("blob: bytes do not match the blob's hash")
	ErrCorrupt       = errors.New("blob: stored blob is damaged")
	ErrUnavailable   = errors.New("blob: the peer does not give this blob")
	ErrProtocol      = errors.New("blob: protocol violation")
	ErrNoSource      = errors.New("blob: no peer could give the blob")
	ErrSizeUnmatched = errors.New("blob: size differs from the one expected")
)

// Hash is a blob's name: SHA-256 of its exact bytes.
type Hash [32]byte

// Sum names data.
func Sum(data []byte) Hash { return sha256.Sum256(data) }

// String is the text form, "sha256:" and lowercase hex.
func (h Hash) String() string { return "sha256:" + hex.EncodeToString(h[:]) }

// Hex is the lowercase hex of the digest (file names).
func (h Hash) Hex() string { return hex.EncodeToString(h[:]) }

// IsZero tells whether h is the zero value.
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash reads the text form ("sha256:" and 64 lowercase hex digits).
func ParseHash(s string) (Hash, error) {
	var h Hash
	hx, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hx) != 64 || strings.ToLower(hx) != hx {
		return h, fmt.Errorf("%w: %q (want sha256: and 64 lowercase hex digits)", ErrBadHash, s)
	}
	if _, err := hex.Decode(h[:], []byte(hx)); err != nil {
		return h, fmt.Errorf("%w: %q", ErrBadHash, s)
	}
	return h, nil
}

// HashFromBytes takes a 32-byte digest.
func HashFromBytes(b []byte) (Hash, error) {
	var h Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("%w: %d bytes, want 32", ErrBadHash, len(b))
	}
	copy(h[:], b)
	return h, nil
}

// Manifest lists the chunk hashes of one blob. Its canonical CBOR form is
// `{v: 1, size: uint, chunk: uint, hashes: bstr}` where hashes is the
// concatenation of the chunks' SHA-256 digests in order. The manifest is
// not named by the blob's hash (the blob's hash is the plain SHA-256 of its
// bytes, so a bundle's content hash is its blob name), so a manifest from a
// peer is an unverified claim: each chunk is checked against it before it is
// kept, and the whole is checked against the blob's hash before it is used;
// a manifest that lied is found out there and its partial is dropped.
type Manifest struct {
	Size   uint64
	Chunks []Hash
}

type wireManifest struct {
	V      uint64 `cbor:"v"`
	Size   uint64 `cbor:"size"`
	Chunk  uint64 `cbor:"chunk"`
	Hashes []byte `cbor:"hashes"`
}

// chunkCount is how many chunks a blob of size bytes has (at least one: the
// empty blob is one empty chunk).
func chunkCount(size uint64) int {
	if size == 0 {
		return 1
	}
	return int((size + ChunkSize - 1) / ChunkSize)
}

// ManifestOf computes data's manifest.
func ManifestOf(data []byte) Manifest {
	m := Manifest{Size: uint64(len(data))}
	for i := 0; i < chunkCount(m.Size); i++ {
		lo, hi := m.span(i)
		m.Chunks = append(m.Chunks, sha256.Sum256(data[lo:hi]))
	}
	return m
}

// span is chunk i's byte range.
func (m Manifest) span(i int) (lo, hi int64) {
	lo = int64(i) * ChunkSize
	hi = min(lo+ChunkSize, int64(m.Size))
	return lo, hi
}

// ChunkLen is the length of chunk i.
func (m Manifest) ChunkLen(i int) int {
	lo, hi := m.span(i)
	return int(hi - lo)
}

// Encode is the manifest's canonical CBOR.
func (m Manifest) Encode() []byte {
	hs := make([]byte, 0, 32*len(m.Chunks))
	for _, h := range m.Chunks {
		hs = append(hs, h[:]...)
	}
	return canon.MustMarshal(wireManifest{V: manifestVersion, Size: m.Size, Chunk: ChunkSize, Hashes: hs})
}

// DecodeManifest reads a manifest strictly: canonical CBOR, version 1, the
// fixed chunk size, a size within MaxSize and exactly the number of chunk
// hashes that size needs.
func DecodeManifest(b []byte) (Manifest, error) {
	var w wireManifest
	if len(b) > 64+32*MaxChunks {
		return Manifest{}, fmt.Errorf("%w: %d bytes", ErrBadManifest, len(b))
	}
	if err := canon.UnmarshalExact(b, &w); err != nil {
		return Manifest{}, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	switch {
	case w.V != manifestVersion:
		return Manifest{}, fmt.Errorf("%w: version %d", ErrBadManifest, w.V)
	case w.Chunk != ChunkSize:
		return Manifest{}, fmt.Errorf("%w: chunk size %d, want %d", ErrBadManifest, w.Chunk, ChunkSize)
	case w.Size > MaxSize:
		return Manifest{}, fmt.Errorf("%w: %d bytes", ErrTooLarge, w.Size)
	case len(w.Hashes) != 32*chunkCount(w.Size):
		return Manifest{}, fmt.Errorf("%w: %d hash bytes for %d bytes of blob", ErrBadManifest, len(w.Hashes), w.Size)
	}
	m := Manifest{Size: w.Size, Chunks: make([]Hash, chunkCount(w.Size))}
	for i := range m.Chunks {
		copy(m.Chunks[i][:], w.Hashes[32*i:])
	}
	return m, nil
}
