// Package names owns the one way sublog turns what a user types for an
// identity or a card into the identity or card ID it means, and back into
// the short forms tables print:
//
//   - an identity: its full z-base-32 form (52 characters); a name this home
//     knows it by (one of the home's own identity names, a petname set with
//     `sublog trust ID --name NAME`, or the name of a peer bundle it runs);
//     or an unambiguous prefix of at least MinPrefix characters of a known
//     identity (the 10-character short form of tables is one);
//   - a card: `sha256:` and 64 hex digits; AUTHOR@SEQ, AUTHOR any identity
//     form above; or an unambiguous prefix of at least MinPrefix hex digits
//     of a stored card's ID, with or without `sha256:` (the 12-digit short
//     form of tables is one).
//
// Precedence: a full form, then a name, then a prefix. An ambiguous name or
// prefix is an error listing every candidate (ErrAmbiguous), never a guess.
// The package is pure: the caller supplies what is known (Resolver).
package names

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// MinPrefix is the shortest prefix taken for an identity or a card ID.
const MinPrefix = 8

// MaxCandidates bounds the candidates an ambiguity error lists.
const MaxCandidates = 10

// Errors. Each resolution error wraps one of these.
var (
	// ErrAmbiguous: a name or prefix matches more than one identity or card
	// (*AmbiguousError lists them).
	ErrAmbiguous = errors.New("ambiguous")
	// ErrUnknown: a name or prefix matches nothing known here.
	ErrUnknown = errors.New("unknown")
	// ErrMalformed: the text is no form of an identity or card ID.
	ErrMalformed = errors.New("malformed")
)

// Known is one identity this home knows, with the names it goes by here
// and where it was found ("home identity", "petname", "trusted", ...).
type Known struct {
	ID    key.ID
	Names []string
	Where string
}

// Resolver resolves arguments against what a home knows. Every field may
// be nil; an absent source simply contributes no candidates.
type Resolver struct {
	// Identities lists the known identities (it is called at most once per
	// resolution, only when the argument is not a full identity).
	Identities func() []Known
	// CardPrefix lists the IDs of stored cards whose hex form starts with
	// the given lowercase hex digits, at most max of them.
	CardPrefix func(hexPrefix string, max int) ([]card.ID, error)
	// CardAt gives the ID of author's card at seq.
	CardAt func(author key.ID, seq uint64) (card.ID, error)
}

// AmbiguousError is a name or prefix that matches several candidates.
type AmbiguousError struct {
	What       string   // "identity" or "card"
	Input      string   // what the user typed
	Candidates []string // full forms, with the names they go by
	More       bool     // there were more than MaxCandidates
}

func (e *AmbiguousError) Error() string {
	more := ""
	if e.More {
		more = ", ..."
	}
	return fmt.Sprintf("%q is ambiguous: it could be the %s %s%s", e.Input, e.What, strings.Join(e.Candidates, " or "), more)
}

func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }

// Identity resolves an identity argument.
func (r *Resolver) Identity(s string) (key.ID, error) {
	if len(s) == key.TextSize {
		if id, err := key.ParseID(s); err == nil {
			return id, nil
		}
	}
	var known []Known
	if r.Identities != nil {
		known = r.Identities()
	}
	// A name.
	var named []key.ID
	for _, k := range known {
		if slices.Contains(k.Names, s) && !slices.Contains(named, k.ID) {
			named = append(named, k.ID)
		}
	}
	switch len(named) {
	case 1:
		return named[0], nil
	case 0:
	default:
		return key.ID{}, ambiguous("identity", s, named, known)
	}
	if !isZBase32(s) {
		return key.ID{}, fmt.Errorf("%w identity: %q is neither an identity (52 z-base-32 characters) nor a name this home knows", ErrMalformed, s)
	}
	if len(s) >= key.TextSize {
		return key.ID{}, fmt.Errorf("%w identity: %q is not a valid identity", ErrMalformed, s)
	}
	if len(s) < MinPrefix {
		return key.ID{}, fmt.Errorf("%w identity: %q is too short: a prefix needs at least %d characters", ErrMalformed, s, MinPrefix)
	}
	var hits []key.ID
	for _, k := range known {
		if strings.HasPrefix(k.ID.String(), s) && !slices.Contains(hits, k.ID) {
			hits = append(hits, k.ID)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return key.ID{}, fmt.Errorf("%w identity: no identity known here starts with %q", ErrUnknown, s)
	}
	return key.ID{}, ambiguous("identity", s, hits, known)
}

func ambiguous(what, s string, ids []key.ID, known []Known) error {
	slices.SortFunc(ids, func(a, b key.ID) int { return a.Compare(b) })
	e := &AmbiguousError{What: what, Input: s}
	for i, id := range ids {
		if i == MaxCandidates {
			e.More = true
			break
		}
		e.Candidates = append(e.Candidates, Describe(id, known))
	}
	return e
}

// Describe is an identity's full form followed by the names it goes by
// here, for messages: "ybnd... (laptop2, trusted)".
func Describe(id key.ID, known []Known) string {
	var tags []string
	for _, k := range known {
		if k.ID != id {
			continue
		}
		for _, n := range k.Names {
			if !slices.Contains(tags, n) {
				tags = append(tags, n)
			}
		}
		if k.Where != "" && !slices.Contains(tags, k.Where) {
			tags = append(tags, k.Where)
		}
	}
	if len(tags) == 0 {
		return id.String()
	}
	return id.String() + " (" + strings.Join(tags, ", ") + ")"
}

// Card resolves a card argument.
func (r *Resolver) Card(s string) (card.ID, error) {
	if strings.HasPrefix(s, "sha256:") && len(s) == len("sha256:")+64 {
		return card.ParseID(s)
	}
	if author, seq, ok := strings.Cut(s, "@"); ok {
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil || n == 0 {
			return card.ID{}, fmt.Errorf("%w card: %q: the part after @ must be a seq (1, 2, ...)", ErrMalformed, s)
		}
		a, err := r.Identity(author)
		if err != nil {
			return card.ID{}, err
		}
		if r.CardAt == nil {
			return card.ID{}, fmt.Errorf("%w card: %s@%d is not stored here", ErrUnknown, a, n)
		}
		id, err := r.CardAt(a, n)
		if err != nil {
			return card.ID{}, fmt.Errorf("%w card: %s@%d is not stored here (%v)", ErrUnknown, a.Short(), n, err)
		}
		return id, nil
	}
	hexPart := strings.TrimPrefix(s, "sha256:")
	if hexPart == "" || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return card.ID{}, fmt.Errorf("%w card: %q is not a card ID (sha256:<64 hex digits>, a prefix of at least %d of them, or AUTHOR@SEQ)", ErrMalformed, s, MinPrefix)
	}
	if len(hexPart) == 64 {
		return card.ParseID("sha256:" + hexPart)
	}
	if len(hexPart) > 64 {
		return card.ID{}, fmt.Errorf("%w card: %q has more than 64 hex digits", ErrMalformed, s)
	}
	if len(hexPart) < MinPrefix {
		return card.ID{}, fmt.Errorf("%w card: %q is too short: a prefix needs at least %d hex digits", ErrMalformed, s, MinPrefix)
	}
	if r.CardPrefix == nil {
		return card.ID{}, fmt.Errorf("%w card: no card here starts with %s", ErrUnknown, hexPart)
	}
	ids, err := r.CardPrefix(hexPart, MaxCandidates+1)
	if err != nil {
		return card.ID{}, err
	}
	switch len(ids) {
	case 0:
		return card.ID{}, fmt.Errorf("%w card: no card stored here starts with %s", ErrUnknown, hexPart)
	case 1:
		return ids[0], nil
	}
	e := &AmbiguousError{What: "card", Input: s}
	for i, id := range ids {
		if i == MaxCandidates {
			e.More = true
			break
		}
		e.Candidates = append(e.Candidates, id.String())
	}
	return card.ID{}, e
}

const zbase32Alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"

func isZBase32(s string) bool {
	return s != "" && strings.Trim(s, zbase32Alphabet) == ""
}

// ShortID is the short form tables print for an identity (a prefix Identity
// takes back while it is unambiguous).
func ShortID(id key.ID) string { return id.Short() }

// ShortCard is the short form tables print for a card ID.
func ShortCard(id card.ID) string { return id.Short() }
