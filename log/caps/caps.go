// Package caps owns capability identity and negotiation: cap-spec/v1 documents,
// cap IDs (multibase of the SHA-256 of the canonical CBOR of a spec without its
// signatures), the built-in specs every sublog node supports, and the Set a
// node checks a card's `reqs` against. It imports only log/canon.
package caps

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/sublog/sublog/log/canon"
)

// ErrUnsupported: a card requires a capability this node does not support.
var ErrUnsupported = errors.New("unsupported required capability")

// ErrBadID: text that is not a cap ID.
var ErrBadID = errors.New("caps: malformed cap ID")

// b32 is the multibase "b" alphabet: RFC 4648 base32, lower case, no padding.
var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// IDTextSize is the length of a cap ID's text: "b" and 52 base32 characters.
const IDTextSize = 53

// Interop is a spec's relation to other capabilities, by cap ID.
type Interop struct {
	Requires   []string `cbor:"requires,omitempty" json:"requires,omitempty" yaml:"requires,omitempty"`
	Supersedes []string `cbor:"supersedes,omitempty" json:"supersedes,omitempty" yaml:"supersedes,omitempty"`
	Conflicts  []string `cbor:"conflicts,omitempty" json:"conflicts,omitempty" yaml:"conflicts,omitempty"`
}

// Spec is a cap-spec/v1 document without its signatures (the part that is
// hashed into the cap ID).
type Spec struct {
	Schema      string   `cbor:"schema" json:"schema" yaml:"schema"`
	Name        string   `cbor:"name" json:"name" yaml:"name"`
	Semver      string   `cbor:"semver" json:"semver" yaml:"semver"`
	Purpose     string   `cbor:"purpose" json:"purpose" yaml:"purpose"`
	Behavior    string   `cbor:"behavior,omitempty" json:"behavior,omitempty" yaml:"behavior,omitempty"`
	Interop     *Interop `cbor:"interop,omitempty" json:"interop,omitempty" yaml:"interop,omitempty"`
	Members     []string `cbor:"members,omitempty" json:"members,omitempty" yaml:"members,omitempty"`
	TestVectors []string `cbor:"test_vectors,omitempty" json:"test_vectors,omitempty" yaml:"test_vectors,omitempty"`
	DocsURI     string   `cbor:"docs_uri,omitempty" json:"docs_uri,omitempty" yaml:"docs_uri,omitempty"`
}

// SchemaV1 is the only spec schema.
const SchemaV1 = "cap-spec/v1"

// ID computes the spec's cap ID.
func (s Spec) ID() string {
	sum := sha256.Sum256(canon.MustMarshal(s))
	return "b" + b32.EncodeToString(sum[:])
}

// ValidID reports whether s has the form of a cap ID.
func ValidID(s string) error {
	if len(s) != IDTextSize || s[0] != 'b' {
		return fmt.Errorf("%w: %q", ErrBadID, s)
	}
	b, err := b32.DecodeString(s[1:])
	if err != nil || len(b) != sha256.Size || "b"+b32.EncodeToString(b) != s {
		return fmt.Errorf("%w: %q", ErrBadID, s)
	}
	return nil
}

// CardV1 is the built-in spec of the card format defined in ARCHITECTURE.md.
var CardV1 = Spec{
	Schema:   SchemaV1,
	Name:     "card",
	Semver:   "1.0.0",
	Purpose:  "sublog card format: deterministic CBOR payload in COSE_Sign1 (EdDSA), hash-chained per author",
	Behavior: "payload fields ver,type,net,rid,ts,reqs,prov,policy_ref,content_uri,content_hash,dist_tag,body,author,seq,prev,kind; card ID = SHA-256 of the COSE_Sign1 bytes",
	DocsURI:  "ARCHITECTURE.md#cards",
}

// Set is the set of cap IDs a node supports, with a name for each for
// display. The zero Set supports nothing; Builtin returns the default.
type Set struct {
	names map[string]string
}

// Builtin returns the capabilities every sublog node supports.
func Builtin() *Set {
	s := &Set{names: map[string]string{}}
	s.Add(CardV1)
	return s
}

// Add makes the set support spec.
func (s *Set) Add(spec Spec) string {
	if s.names == nil {
		s.names = map[string]string{}
	}
	id := spec.ID()
	s.names[id] = spec.Name + "/" + spec.Semver
	return id
}

// Supports reports whether capID is in the set.
func (s *Set) Supports(capID string) bool {
	if s == nil {
		return false
	}
	_, ok := s.names[capID]
	return ok
}

// Require returns an error naming the first capability in reqs (in order)
// that the set does not support.
func (s *Set) Require(reqs []string) error {
	for _, r := range reqs {
		if !s.Supports(r) {
			return fmt.Errorf("%w: %s", ErrUnsupported, r)
		}
	}
	return nil
}

// Entry is one supported capability for listings.
type Entry struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// List returns the supported capabilities sorted by name, then ID.
func (s *Set) List() []Entry {
	out := make([]Entry, 0, len(s.names))
	for id, n := range s.names {
		out = append(out, Entry{ID: id, Name: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if c := strings.Compare(out[i].Name, out[j].Name); c != 0 {
			return c < 0
		}
		return out[i].ID < out[j].ID
	})
	return out
}
