// Package caps owns capability identity and negotiation: cap-spec/v1
// documents and their COSE signatures, cap IDs (multibase of the SHA-256 of
// the canonical CBOR of a spec without its signatures), bundles and their
// deterministic expansion, signed deprecation notices, the built-in specs
// every sublog node supports, and the Set a node checks a card's `reqs`
// against. It does no I/O; it imports log/canon, log/key and go-cose (for the
// detached COSE_Sign1 signatures of specs and notices).
package caps

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	stdsync "sync"

	"github.com/sublog/sublog/log/canon"
)

// Errors. Each rejection reason has its own value; messages name the cap.
var (
	// ErrUnsupported: a card requires a capability this node does not support.
	ErrUnsupported = errors.New("unsupported required capability")
	// ErrBadID: text that is not a cap ID.
	ErrBadID = errors.New("caps: malformed cap ID")
	// ErrBadSpec: a cap-spec/v1 document that breaks the schema's rules.
	ErrBadSpec = errors.New("caps: bad cap-spec/v1 document")
	// ErrBadSignature: a spec or notice signature that does not verify.
	ErrBadSignature = errors.New("caps: bad signature")
	// ErrBundleCycle: a bundle that contains itself, directly or not.
	ErrBundleCycle = errors.New("caps: bundle cycle")
	// ErrBundleTooLarge: a bundle nested deeper than MaxBundleDepth or
	// expanding to more than MaxExpanded members.
	ErrBundleTooLarge = errors.New("caps: bundle expansion over its bound")
	// ErrConflict: two required capabilities declare a conflict.
	ErrConflict = errors.New("caps: conflicting capabilities")
)

// Bounds of bundle expansion: work is bounded whatever the specs say.
const (
	MaxBundleDepth = 8
	MaxExpanded    = 256
	MaxMembers     = 64
	MaxSpecSize    = 16 << 10
	MaxSignatures  = 16
)

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
// hashed into the cap ID). A spec with Members is a bundle.
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

// Label is name/semver, for humans.
func (s Spec) Label() string { return s.Name + "/" + s.Semver }

// IsBundle reports whether the spec is a bundle (it lists members).
func (s Spec) IsBundle() bool { return len(s.Members) > 0 }

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

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	semverRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})(-[0-9A-Za-z.-]{1,32})?$`)
)

// Validate checks the schema's rules: schema, name and semver forms, text
// sizes, well-formed and unique cap IDs in members and interop, no spec
// naming itself is impossible (its ID depends on its members), at most
// MaxMembers members.
func (s Spec) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrBadSpec}, a...)...) }
	switch {
	case s.Schema != SchemaV1:
		return bad("schema %q, want %q", s.Schema, SchemaV1)
	case !nameRE.MatchString(s.Name):
		return bad("name %q is not [a-z0-9][a-z0-9._-]{0,63}", s.Name)
	case !semverRE.MatchString(s.Semver):
		return bad("semver %q is not MAJOR.MINOR.PATCH[-PRE]", s.Semver)
	case s.Purpose == "" || len(s.Purpose) > 1024:
		return bad("purpose must be 1..1024 bytes")
	case len(s.Behavior) > 8192:
		return bad("behavior over 8192 bytes")
	case len(s.DocsURI) > 1024:
		return bad("docs_uri over 1024 bytes")
	case len(s.Members) > MaxMembers:
		return bad("%d members, at most %d", len(s.Members), MaxMembers)
	case len(s.TestVectors) > 64:
		return bad("more than 64 test vectors")
	case s.Members != nil && len(s.Members) == 0:
		return bad("empty members must be omitted")
	case s.TestVectors != nil && len(s.TestVectors) == 0:
		return bad("empty test_vectors must be omitted")
	}
	if err := idList("members", s.Members); err != nil {
		return err
	}
	if s.Interop != nil {
		i := s.Interop
		if len(i.Requires)+len(i.Supersedes)+len(i.Conflicts) == 0 {
			return bad("empty interop must be omitted")
		}
		for _, l := range []struct {
			n  string
			id []string
		}{{"requires", i.Requires}, {"supersedes", i.Supersedes}, {"conflicts", i.Conflicts}} {
			if l.id != nil && len(l.id) == 0 {
				return bad("empty interop.%s must be omitted", l.n)
			}
			if len(l.id) > MaxMembers {
				return bad("interop.%s has more than %d entries", l.n, MaxMembers)
			}
			if err := idList("interop."+l.n, l.id); err != nil {
				return err
			}
		}
	}
	return nil
}

func idList(field string, ids []string) error {
	seen := map[string]bool{}
	for _, id := range ids {
		if err := ValidID(id); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadSpec, field, err)
		}
		if seen[id] {
			return fmt.Errorf("%w: %s lists %s twice", ErrBadSpec, field, id)
		}
		seen[id] = true
	}
	return nil
}

// Set is what a node knows about capabilities: the specs it has learned
// (built-in, added from files, read from capspec cards), which atomic ones
// it implements, and the deprecation notices it has seen. A bundle is
// supported when every atomic member it expands to is supported. The zero
// Set supports nothing; Builtin returns the default. A Set is safe for
// concurrent use.
type Set struct {
	mu         stdsync.RWMutex
	specs      map[string]Spec   // every known spec by ID
	supported  map[string]bool   // atomic caps this node implements
	deprecated map[string]Notice // by deprecated cap ID
}

func (s *Set) init() {
	if s.specs == nil {
		s.specs = map[string]Spec{}
		s.supported = map[string]bool{}
		s.deprecated = map[string]Notice{}
	}
}

// Add makes the set support spec (an atomic capability this node
// implements) and returns its ID. Adding a bundle only learns it: a bundle's
// support follows from its members.
func (s *Set) Add(spec Spec) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	id := spec.ID()
	s.specs[id] = spec
	if !spec.IsBundle() {
		s.supported[id] = true
	}
	return id
}

// Learn records a spec without claiming support for it (a bundle becomes
// supported this way when its members are). It validates the spec first.
func (s *Set) Learn(spec Spec) (string, error) {
	if err := spec.Validate(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	id := spec.ID()
	s.specs[id] = spec
	return id, nil
}

// Spec returns a known spec.
func (s *Set) Spec(id string) (Spec, bool) {
	if s == nil {
		return Spec{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	sp, ok := s.specs[id]
	return sp, ok
}

// Name is the label of a known cap, or the ID itself.
func (s *Set) Name(id string) string {
	if sp, ok := s.Spec(id); ok {
		return sp.Label()
	}
	return id
}

// Supports reports whether capID is supported: an implemented atomic cap,
// or a known bundle whose expansion is all supported.
func (s *Set) Supports(capID string) bool {
	return s.Require([]string{capID}) == nil
}

// Expand returns the atomic capabilities reqs stand for: each known bundle
// is replaced by its members, recursively, at most MaxBundleDepth deep and
// MaxExpanded members in all; a bundle reached again while it is being
// expanded is ErrBundleCycle. IDs the set does not know are kept as they are
// (they are atomic as far as this node can tell). The result is sorted and
// free of duplicates, so it depends only on reqs and the specs.
func (s *Set) Expand(reqs []string) ([]string, error) {
	if s == nil {
		return uniqSorted(reqs), nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.expandLocked(reqs)
}

func (s *Set) expandLocked(reqs []string) ([]string, error) {
	out := map[string]bool{}
	onPath := map[string]bool{}
	done := map[string]bool{}
	var walk func(id string, depth int, path []string) error
	walk = func(id string, depth int, path []string) error {
		sp, known := s.specs[id]
		if !known || !sp.IsBundle() {
			out[id] = true
			if len(out) > MaxExpanded {
				return fmt.Errorf("%w: more than %d members", ErrBundleTooLarge, MaxExpanded)
			}
			return nil
		}
		if onPath[id] {
			return fmt.Errorf("%w: %s", ErrBundleCycle, strings.Join(append(path, s.labelLocked(id)), " -> "))
		}
		if done[id] {
			return nil
		}
		if depth >= MaxBundleDepth {
			return fmt.Errorf("%w: nested deeper than %d at %s", ErrBundleTooLarge, MaxBundleDepth, s.labelLocked(id))
		}
		onPath[id] = true
		path = append(path, s.labelLocked(id))
		for _, m := range sp.Members {
			if err := walk(m, depth+1, path); err != nil {
				return err
			}
		}
		onPath[id] = false
		done[id] = true
		return nil
	}
	for _, r := range reqs {
		if err := walk(r, 0, nil); err != nil {
			return nil, err
		}
	}
	list := make([]string, 0, len(out))
	for id := range out {
		list = append(list, id)
	}
	sort.Strings(list)
	return list, nil
}

func (s *Set) labelLocked(id string) string {
	if sp, ok := s.specs[id]; ok {
		return sp.Label() + " (" + id + ")"
	}
	return id
}

// Require expands reqs (bundles first, see Expand) and returns an error
// naming the first unsupported atomic capability (in reqs order, then
// member order), the bundle it came from, and the name the set knows it by.
// It also refuses requirements that declare a conflict with one another.
func (s *Set) Require(reqs []string) error {
	if s == nil {
		if len(reqs) > 0 {
			return fmt.Errorf("%w: %s", ErrUnsupported, reqs[0])
		}
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range reqs {
		atoms, err := s.expandLocked([]string{r})
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUnsupported, r, err)
		}
		for _, a := range atoms {
			if s.supported[a] {
				continue
			}
			if a == r {
				return fmt.Errorf("%w: %s", ErrUnsupported, s.labelLocked(r))
			}
			return fmt.Errorf("%w: %s (member of bundle %s)", ErrUnsupported, s.labelLocked(a), s.labelLocked(r))
		}
	}
	atoms, err := s.expandLocked(reqs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	in := map[string]bool{}
	for _, a := range atoms {
		in[a] = true
	}
	for _, a := range atoms {
		if sp := s.specs[a]; sp.Interop != nil {
			for _, c := range sp.Interop.Conflicts {
				if in[c] {
					return fmt.Errorf("%w: %s conflicts with %s", ErrConflict, s.labelLocked(a), s.labelLocked(c))
				}
			}
		}
	}
	return nil
}

// Entry is one capability for listings.
type Entry struct {
	ID         string   `json:"id" cbor:"id"`
	Name       string   `json:"name" cbor:"name"`
	Bundle     bool     `json:"bundle,omitempty" cbor:"bundle,omitempty"`
	Members    []string `json:"members,omitempty" cbor:"members,omitempty"`
	Supported  bool     `json:"supported" cbor:"supported"`
	Deprecated bool     `json:"deprecated,omitempty" cbor:"deprecated,omitempty"`
}

// List returns the supported capabilities (atomic and bundles) sorted by
// name, then ID.
func (s *Set) List() []Entry {
	var out []Entry
	for _, e := range s.Known() {
		if e.Supported {
			out = append(out, e)
		}
	}
	return out
}

// Known returns every known capability, supported or not, sorted by name,
// then ID.
func (s *Set) Known() []Entry {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	ids := make([]string, 0, len(s.specs))
	for id := range s.specs {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	out := make([]Entry, 0, len(ids))
	for _, id := range ids {
		sp, _ := s.Spec(id)
		s.mu.RLock()
		_, dep := s.deprecated[id]
		s.mu.RUnlock()
		out = append(out, Entry{ID: id, Name: sp.Label(), Bundle: sp.IsBundle(), Members: sp.Members,
			Supported: s.Supports(id), Deprecated: dep})
	}
	sort.Slice(out, func(i, j int) bool {
		if c := strings.Compare(out[i].Name, out[j].Name); c != 0 {
			return c < 0
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Supported returns the sorted IDs of every supported capability.
func (s *Set) Supported() []string {
	var ids []string
	for _, e := range s.List() {
		ids = append(ids, e.ID)
	}
	sort.Strings(ids)
	return ids
}

// Negotiate returns the capabilities both sides support: the IDs in theirs
// that this set supports, sorted and without duplicates. Peers use it to pick
// what they may require of each other.
func (s *Set) Negotiate(theirs []string) []string {
	var out []string
	for _, id := range uniqSorted(theirs) {
		if ValidID(id) == nil && s.Supports(id) {
			out = append(out, id)
		}
	}
	return out
}

// Deprecated returns the notices that apply to any of ids (after bundle
// expansion), for warnings; deprecation never makes a cap unsupported.
func (s *Set) Deprecated(ids []string) []Notice {
	atoms, err := s.Expand(ids)
	if err != nil {
		atoms = ids
	}
	atoms = uniqSorted(append(atoms, ids...))
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Notice
	for _, a := range atoms {
		if n, ok := s.deprecated[a]; ok {
			out = append(out, n)
		}
	}
	return out
}

func uniqSorted(ids []string) []string {
	c := append([]string(nil), ids...)
	sort.Strings(c)
	out := c[:0]
	for i, id := range c {
		if i == 0 || id != c[i-1] {
			out = append(out, id)
		}
	}
	return out
}

// SchemaNodeCaps names the node-caps document: what `sublog caps --json`
// prints and what a node serves to authenticated peers (the seed's
// /.well-known/node-caps, carried by the sync protocol).
const SchemaNodeCaps = "node-caps/v1"

// NodeCaps is the canonical advertisement of a node's supported caps.
type NodeCaps struct {
	Schema    string   `cbor:"schema" json:"schema"`
	Supported []string `cbor:"supported" json:"supported"`
}

// Advertise returns the node-caps document for this set.
func (s *Set) Advertise() NodeCaps {
	ids := s.Supported()
	if ids == nil {
		ids = []string{}
	}
	return NodeCaps{Schema: SchemaNodeCaps, Supported: ids}
}
