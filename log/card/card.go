// Package card owns the card: its deterministic CBOR payload, the COSE_Sign1
// envelope that signs it, card IDs, and the strict decoder that accepts
// exactly one encoding of each card. It does no I/O; it imports log/key,
// log/canon and go-cose (which lives only here).
package card

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

// Limits and constants of the card format (format version 1).
const (
	Version    = 1
	TypeCard   = "card"
	MaxSize    = 64 << 10 // a card over 64 KiB is refused; large content is a blob
	RIDSize    = 16
	MaxNetLen  = 128
	MaxURILen  = 1024
	MaxDistTag = 64
	MaxReqs    = 64
	// MaxDepth is the nesting limit of a card: the payload map is level 1,
	// so a body may nest MaxBodyDepth levels (the body map itself is one).
	// MaxElements bounds every list and map. Both are canon's decode
	// limits applied to the whole payload; checkPayload is where they and
	// every other limit of the card are checked, for Sign and Decode alike.
	MaxDepth     = canon.MaxNesting
	MaxBodyDepth = MaxDepth - 1
	MaxElements  = canon.MaxElements
	DefaultNet   = "net:sublog"
	coseTag      = 0xd2 // CBOR head of tag 18 (COSE_Sign1)
	emptyMapHdr  = 0xa0
)

// Kinds named by DESIGN.md; unknown kinds are stored and replicated too.
const (
	KindNote     = "note"
	KindIntent   = "intent"
	KindProfile  = "profile"
	KindGrant    = "grant"
	KindRevoke   = "revoke"
	KindCRL      = "crl"
	KindCapspec  = "capspec"
	KindObserve  = "observe"
	KindDelegate = "delegate"
	KindBundle   = "bundle"
)

// Kinds lists the kinds sublog itself gives meaning to.
var Kinds = []string{KindNote, KindIntent, KindProfile, KindGrant, KindRevoke, KindCRL,
	KindCapspec, KindObserve, KindDelegate, KindBundle}

// Errors of the card decoder. Each rejection reason has its own value; the
// CBOR-level ones come from log/canon (ErrDuplicateKey, ErrIndefinite, ErrTag,
// ErrNonCanonical) and are returned wrapped.
var (
	ErrTooLarge      = errors.New("card: over 64 KiB")
	ErrNotSign1      = errors.New("card: not a tagged COSE_Sign1 message")
	ErrBadHeader     = errors.New("card: bad COSE header")
	ErrKidMismatch   = errors.New("card: kid is not the author")
	ErrBadSignature  = errors.New("card: bad signature")
	ErrBadField      = errors.New("card: bad field")
	ErrUnsupportedCp = errors.New("card: unsupported required capability")
)

var kindRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ID is a card ID: the SHA-256 of the card's exact COSE_Sign1 bytes.
type ID [sha256.Size]byte

// IDOf hashes card bytes.
func IDOf(b []byte) ID { return sha256.Sum256(b) }

// String is the text form: "sha256:" and lowercase hex.
func (id ID) String() string { return "sha256:" + hex.EncodeToString(id[:]) }

// Short is a prefix for tables; never parse it.
func (id ID) Short() string { return hex.EncodeToString(id[:6]) }

// IsZero reports whether id is all zeros (no card).
func (id ID) IsZero() bool { return id == ID{} }

// MarshalText gives the text form for JSON and YAML.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses the text form.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseID parses "sha256:" followed by 64 lowercase hex digits.
func ParseID(s string) (ID, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hexPart) != 2*sha256.Size || strings.ToLower(hexPart) != hexPart {
		return ID{}, fmt.Errorf("%w: card ID %q is not sha256:<64 lowercase hex digits>", ErrBadField, s)
	}
	var id ID
	if _, err := hex.Decode(id[:], []byte(hexPart)); err != nil {
		return ID{}, fmt.Errorf("%w: card ID %q: %v", ErrBadField, s, err)
	}
	return id, nil
}

// IDFromBytes takes a 32-byte digest.
func IDFromBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != len(id) {
		return ID{}, fmt.Errorf("%w: hash is %d bytes, want %d", ErrBadField, len(b), len(id))
	}
	copy(id[:], b)
	return id, nil
}

// payload is the signed CBOR map. Field names are the seed's plus the log
// fields author, seq, prev and kind. Optional fields are omitted when empty,
// so there is one encoding of each card.
type payload struct {
	Ver         uint64          `cbor:"ver"`
	Type        string          `cbor:"type"`
	Net         string          `cbor:"net"`
	RID         []byte          `cbor:"rid"`
	TS          int64           `cbor:"ts"`
	Reqs        []string        `cbor:"reqs,omitempty"`
	Prov        []string        `cbor:"prov,omitempty"`
	PolicyRef   []byte          `cbor:"policy_ref,omitempty"`
	ContentURI  string          `cbor:"content_uri,omitempty"`
	ContentHash []byte          `cbor:"content_hash,omitempty"`
	DistTag     []byte          `cbor:"dist_tag,omitempty"`
	Body        cbor.RawMessage `cbor:"body,omitempty"`
	Author      []byte          `cbor:"author"`
	Seq         uint64          `cbor:"seq"`
	Prev        []byte          `cbor:"prev,omitempty"`
	Kind        string          `cbor:"kind"`
}

type envelope struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

type protectedHeader struct {
	Alg int64  `cbor:"1,keyasint"`
	Kid []byte `cbor:"4,keyasint"`
}

// Card is a decoded, verified card. It is immutable.
type Card struct {
	raw     []byte
	payload []byte
	id      ID
	author  key.ID
	p       payload
	prev    ID
}

// Bytes returns the exact COSE_Sign1 bytes (do not modify).
func (c *Card) Bytes() []byte { return c.raw }

// ID returns the card ID.
func (c *Card) ID() ID { return c.id }

// Author is the identity that signed the card.
func (c *Card) Author() key.ID { return c.author }

// Seq is the card's position in its author's log, from 1.
func (c *Card) Seq() uint64 { return c.p.Seq }

// Prev is the ID of the author's previous card; ok is false at seq 1.
func (c *Card) Prev() (ID, bool) { return c.prev, c.p.Seq > 1 }

// Kind is the card kind.
func (c *Card) Kind() string { return c.p.Kind }

// Net is the network identifier.
func (c *Card) Net() string { return c.p.Net }

// RID is the card's 16-byte rid.
func (c *Card) RID() []byte { return c.p.RID }

// TS is the creation time in Unix seconds, as the author claims it.
func (c *Card) TS() int64 { return c.p.TS }

// Time is TS as a UTC time.
func (c *Card) Time() time.Time { return time.Unix(c.p.TS, 0).UTC() }

// Reqs are the capabilities a reader must support.
func (c *Card) Reqs() []string { return c.p.Reqs }

// Prov are the capabilities used to produce the card (reqs when absent).
func (c *Card) Prov() []string {
	if c.p.Prov == nil {
		return c.p.Reqs
	}
	return c.p.Prov
}

// PolicyRef, ContentURI, ContentHash and DistTag are the seed's optional fields.
func (c *Card) PolicyRef() []byte   { return c.p.PolicyRef }
func (c *Card) ContentURI() string  { return c.p.ContentURI }
func (c *Card) ContentHash() []byte { return c.p.ContentHash }
func (c *Card) DistTag() []byte     { return c.p.DistTag }

// Body returns the body's canonical CBOR (nil when the card has none).
func (c *Card) Body() []byte { return c.p.Body }

// DecodeBody decodes the body into v strictly.
func (c *Card) DecodeBody(v any) error {
	if c.p.Body == nil {
		return fmt.Errorf("%w: card has no body", ErrBadField)
	}
	return canon.Unmarshal(c.p.Body, v)
}

// Draft is what an author fills in; Sign adds the log fields and signs.
type Draft struct {
	Kind        string
	Net         string // DefaultNet when empty
	TS          int64  // Unix seconds
	RID         []byte // derived from author, seq and prev when nil
	Body        any    // any value canon can encode; or Raw
	RawBody     []byte // already-canonical body CBOR (wins over Body)
	Reqs        []string
	Prov        []string
	PolicyRef   []byte
	ContentURI  string
	ContentHash []byte
	DistTag     []byte
}

// Caps is what the decoder asks about a card's required capabilities
// (caps.Set implements it). Require returns an error naming the first
// unsupported one.
type Caps interface {
	Require(reqs []string) error
}

// DeriveRID gives the default rid: a hash of the chain position, so the same
// inputs give the same card bytes.
func DeriveRID(author key.ID, seq uint64, prev ID) []byte {
	h := sha256.New()
	h.Write([]byte("sublog/v1/rid\x00"))
	h.Write(author.Bytes())
	var s [8]byte
	for i := range 8 {
		s[i] = byte(seq >> (56 - 8*i))
	}
	h.Write(s[:])
	h.Write(prev[:])
	return h.Sum(nil)[:RIDSize]
}

// build makes and checks the payload bytes Sign signs: everything Sign
// decides before the signature, so what it accepts is what Decode accepts.
func build(author key.ID, seq uint64, prev ID, d Draft) (payload, []byte, error) {
	if seq == 0 || (seq == 1) != prev.IsZero() {
		return payload{}, nil, fmt.Errorf("%w: seq %d with prev %v", ErrBadField, seq, prev)
	}
	p := payload{
		Ver: Version, Type: TypeCard, Net: d.Net, RID: d.RID, TS: d.TS,
		Reqs: d.Reqs, Prov: d.Prov, PolicyRef: d.PolicyRef, ContentURI: d.ContentURI,
		ContentHash: d.ContentHash, DistTag: d.DistTag,
		Author: author.Bytes(), Seq: seq, Kind: d.Kind,
	}
	if p.Net == "" {
		p.Net = DefaultNet
	}
	if p.RID == nil {
		p.RID = DeriveRID(author, seq, prev)
	}
	if seq > 1 {
		p.Prev = prev[:]
	}
	if len(p.Reqs) == 0 {
		p.Reqs = nil
	}
	if len(p.Prov) == 0 || equalStrings(p.Prov, p.Reqs) {
		p.Prov = nil
	}
	switch {
	case d.RawBody != nil:
		if err := canon.Check(d.RawBody); err != nil {
			return payload{}, nil, fmt.Errorf("%w: body: %w", ErrBadField, err)
		}
		p.Body = d.RawBody
	case d.Body != nil:
		b, err := canon.Marshal(d.Body)
		if err != nil {
			return payload{}, nil, fmt.Errorf("%w: body: %v", ErrBadField, err)
		}
		p.Body = b
	}
	if err := p.validate(); err != nil {
		return payload{}, nil, err
	}
	pb, err := canon.Marshal(p)
	if err != nil {
		return payload{}, nil, fmt.Errorf("%w: %v", ErrBadField, err)
	}
	// The decoder's own payload check, on the exact bytes about to be
	// signed: nesting (payload and body together), sizes, floats, UTF-8,
	// duplicate keys. A card that would be unreadable is never signed.
	if _, err := checkPayload(pb); err != nil {
		return payload{}, nil, err
	}
	if n := envelopeSize(len(pb)); n > MaxSize {
		return payload{}, nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	return p, pb, nil
}

// Build is what Sign decides before it signs: the payload bytes Sign would
// sign, or its refusal. It signs nothing; the agreement fuzzer
// (log/card/agree) uses it to test every draft against the decoder without
// paying for an Ed25519 signature each time.
func Build(author key.ID, seq uint64, prev ID, d Draft) ([]byte, error) {
	_, pb, err := build(author, seq, prev, d)
	return pb, err
}

// envelopeSize is the length of the canonical envelope around a payload of
// n bytes: tag, array head, protected header, empty map, the payload's
// byte-string head and bytes, the signature's head and 64 bytes.
func envelopeSize(n int) int {
	h := 1
	switch {
	case n >= 1<<16:
		h = 5
	case n >= 1<<8:
		h = 3
	case n >= 24:
		h = 2
	}
	return 43 + h + n + 2 + key.SignatureSize
}

// Sign builds and signs the card at (seq, prev) of sk's log. prev must be the
// zero ID exactly when seq is 1. The result is decoded back with Decode's
// structural and capability checks, so Sign never returns a card that a
// verifier would refuse.
func Sign(sk *key.Secret, seq uint64, prev ID, d Draft, c Caps) (*Card, error) {
	p, pb, err := build(sk.ID(), seq, prev, d)
	if err != nil {
		return nil, err
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmEdDSA)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = sk.ID().Bytes()
	// The encoded headers are fixed for an author: go-cose uses these bytes
	// instead of encoding the maps again for the signature and the envelope
	// (ownEnvelope below still checks the result byte for byte).
	msg.Headers.RawProtected = protectedBytes(sk.ID())
	msg.Headers.RawUnprotected = []byte{emptyMapHdr}
	msg.Payload = pb
	if err := msg.Sign(nil, []byte(key.LabelCard), signer{sk}); err != nil {
		return nil, fmt.Errorf("card: signing: %w", err)
	}
	raw, err := msg.MarshalCBOR()
	if err != nil {
		return nil, fmt.Errorf("card: encoding: %w", err)
	}
	// The payload was validated and canonically encoded above; what go-cose
	// added around it must be exactly the one canonical envelope. Checking
	// that byte for byte is as strict as re-parsing and far cheaper (a
	// re-parse, or re-verifying our own fresh signature, would dominate the
	// cost of an append).
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(raw))
	}
	if err := ownEnvelope(raw, sk.ID(), pb); err != nil {
		return nil, err
	}
	card := &Card{raw: raw, payload: raw[len(raw)-len(pb)-2-key.SignatureSize : len(raw)-2-key.SignatureSize],
		id: IDOf(raw), author: sk.ID(), p: p}
	if seq > 1 {
		card.prev = prev
	}
	if err := requireCaps(card, c); err != nil {
		return nil, err
	}
	return card, nil
}

// protectedBytes is the canonical protected header {1: -8, 4: bstr(32) kid}
// as go-cose keeps it: wrapped in its byte string.
func protectedBytes(kid key.ID) []byte {
	return append([]byte{0x58, 0x26, 0xa2, 0x01, 0x27, 0x04, 0x58, 0x20}, kid.Bytes()...)
}

// ownEnvelope checks that raw is the canonical COSE_Sign1 envelope of
// payload pb by author: tag 18, array(4), bstr(38){alg: EdDSA, kid}, {},
// bstr(payload), bstr(64 signature).
func ownEnvelope(raw []byte, author key.ID, pb []byte) error {
	want := append([]byte{coseTag, 0x84, 0x58, 0x26, 0xa2, 0x01, 0x27, 0x04, 0x58, 0x20}, author.Bytes()...)
	want = append(want, emptyMapHdr)
	want = append(want, canon.MustMarshal(pb)...)
	want = append(want, 0x58, key.SignatureSize)
	if len(raw) != len(want)+key.SignatureSize || string(raw[:len(want)]) != string(want) {
		return fmt.Errorf("%w: signer produced a non-canonical envelope", ErrNotSign1)
	}
	return nil
}

func requireCaps(card *Card, c Caps) error {
	if len(card.p.Reqs) == 0 {
		return nil
	}
	if c == nil {
		return fmt.Errorf("%w: %s", ErrUnsupportedCp, card.p.Reqs[0])
	}
	if err := c.Require(card.p.Reqs); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsupportedCp, err)
	}
	return nil
}

// Decode parses and verifies one card. It refuses, each with its own error:
// more than MaxSize bytes; anything but a tag-18 COSE_Sign1; duplicate keys,
// indefinite lengths, inner tags and any non-deterministic encoding anywhere
// (checked before the signature); a protected header other than {alg: EdDSA,
// kid}; a kid that is not the author; malformed or missing fields; a required
// capability that c does not support (c nil supports none); a bad signature.
// Chain continuity is the store's to check.
func Decode(b []byte, c Caps) (*Card, error) {
	card, msg, err := parse(b)
	if err != nil {
		return nil, err
	}
	if err := requireCaps(card, c); err != nil {
		return nil, err
	}
	if err := msg.Verify([]byte(key.LabelCard), verifier{card.author}); err != nil {
		return nil, fmt.Errorf("%w: %s@%d", ErrBadSignature, card.author, card.p.Seq)
	}
	return card, nil
}

// parse does every check but the signature and the capabilities.
func parse(b []byte) (*Card, *cose.Sign1Message, error) {
	if len(b) > MaxSize {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	if len(b) == 0 || b[0] != coseTag {
		return nil, nil, fmt.Errorf("%w: first byte %#x", ErrNotSign1, first(b))
	}
	env, ph, fast := fixedEnvelope(b)
	var rawProtected []byte // the exact bytes that were signed: the header's bstr
	if fast {
		rawProtected = b[2:42:42]
	} else {
		if err := canon.Unmarshal(b[1:], &env); err != nil {
			return nil, nil, fmt.Errorf("card envelope: %w", err)
		}
		if len(env.Unprotected) != 1 || env.Unprotected[0] != emptyMapHdr {
			return nil, nil, fmt.Errorf("%w: unprotected header must be empty", ErrBadHeader)
		}
		if len(env.Payload) == 0 {
			return nil, nil, fmt.Errorf("%w: no payload", ErrNotSign1)
		}
		if len(env.Signature) != key.SignatureSize {
			return nil, nil, fmt.Errorf("%w: signature is %d bytes", ErrBadSignature, len(env.Signature))
		}
		if err := canon.Unmarshal(env.Protected, &ph); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrBadHeader, err)
		}
		if ph.Alg != int64(cose.AlgorithmEdDSA) {
			return nil, nil, fmt.Errorf("%w: alg %d, want EdDSA (-8)", ErrBadHeader, ph.Alg)
		}
		rawProtected = canon.MustMarshal(env.Protected)
	}
	p, err := checkPayload(env.Payload)
	if err != nil {
		return nil, nil, err
	}
	author, err := key.IDFromBytes(p.Author)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: author: %w", ErrBadField, err)
	}
	if string(ph.Kid) != string(p.Author) {
		return nil, nil, fmt.Errorf("%w: kid %x, author %s", ErrKidMismatch, ph.Kid, author)
	}
	msg := &cose.Sign1Message{
		Headers: cose.Headers{
			Protected:      cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmEdDSA, cose.HeaderLabelKeyID: ph.Kid},
			RawProtected:   rawProtected,
			Unprotected:    cose.UnprotectedHeader{},
			RawUnprotected: []byte{emptyMapHdr},
		},
		Payload:   env.Payload,
		Signature: env.Signature,
	}
	card := &Card{raw: b, payload: env.Payload, id: IDOf(b), author: author, p: p}
	if p.Seq > 1 {
		copy(card.prev[:], p.Prev)
	}
	return card, msg, nil
}

// fixedEnvelope recognises the one canonical envelope layout byte for byte:
// tag 18, array(4), bstr(38){1: -8, 4: bstr(32) kid}, {}, the payload as a
// bstr with the shortest length head, bstr(64) signature. Bytes that match
// need no generic decode and re-encode of the envelope (the payload is
// still checked in full); anything else takes the general, strict path,
// which names what is wrong.
func fixedEnvelope(b []byte) (envelope, protectedHeader, bool) {
	const off = 43 // d2 84 | 58 26 a2 01 27 04 58 20 <kid> | a0
	if len(b) < off+2+key.SignatureSize+2 || string(b[1:10]) != "\x84\x58\x26\xa2\x01\x27\x04\x58\x20" || b[42] != emptyMapHdr {
		return envelope{}, protectedHeader{}, false
	}
	var n, h int
	switch b[off] {
	case 0x58:
		n, h = int(b[off+1]), 2
		if n < 24 {
			return envelope{}, protectedHeader{}, false
		}
	case 0x59:
		n, h = int(b[off+1])<<8|int(b[off+2]), 3
		if n < 256 {
			return envelope{}, protectedHeader{}, false
		}
	default:
		return envelope{}, protectedHeader{}, false
	}
	end := off + h + n
	if end+2+key.SignatureSize != len(b) || b[end] != 0x58 || b[end+1] != key.SignatureSize {
		return envelope{}, protectedHeader{}, false
	}
	return envelope{Protected: b[4:42], Unprotected: b[42:43], Payload: b[off+h : end], Signature: b[end+2:]},
		protectedHeader{Alg: int64(cose.AlgorithmEdDSA), Kid: b[10:42]}, true
}

// Kid gives the kid (the author's key bytes) of card bytes in the one
// canonical envelope layout, whose structure it checks byte for byte (not
// the payload, not the signature); ok is false for any other bytes, which
// the general decoder must judge.
func Kid(b []byte) (kid []byte, ok bool) {
	if len(b) == 0 || b[0] != coseTag {
		return nil, false
	}
	_, ph, ok := fixedEnvelope(b)
	return ph.Kid, ok
}

// checkPayload is the one check of a card's payload bytes, run by Sign on
// what it is about to sign and by the decoder on every card it reads: one
// canonical CBOR map within the card limits (MaxDepth levels counting the
// payload map and its body, MaxElements items per array or map, no NaN or
// infinity, valid UTF-8, no duplicate keys), a canonical body, and valid
// fields.
//
// A payload in its canonical layout is read by the fast path (fastPayload:
// no reflection, no re-encoding); anything else by the general strict
// decoder, which names the defect.
func checkPayload(pb []byte) (payload, error) {
	p, fast := fastPayload(pb)
	if fast {
		if p.Body != nil {
			if err := canon.Check(p.Body); err != nil {
				return p, fmt.Errorf("card payload: body: %w", err)
			}
		}
		return p, p.validate()
	}
	if err := canon.UnmarshalExact(pb, &p); err != nil {
		if errors.Is(err, canon.ErrTooDeep) {
			return p, fmt.Errorf("card payload: over the card limits (%d levels of nesting counting the payload and its body, so %d for the body; %d items per list or map): %w",
				MaxDepth, MaxBodyDepth, MaxElements, err)
		}
		return p, fmt.Errorf("card payload: %w", err)
	}
	if p.Body != nil {
		if err := canon.Check(p.Body); err != nil {
			return p, fmt.Errorf("card payload: body: %w", err)
		}
	}
	return p, p.validate()
}

func (p *payload) validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrBadField}, a...)...) }
	switch {
	case p.Ver != Version:
		return bad("ver %d, want %d", p.Ver, Version)
	case p.Type != TypeCard:
		return bad("type %q, want %q", p.Type, TypeCard)
	case p.Net == "" || len(p.Net) > MaxNetLen:
		return bad("net must be 1..%d bytes", MaxNetLen)
	case len(p.RID) != RIDSize:
		return bad("rid is %d bytes, want %d", len(p.RID), RIDSize)
	case p.TS < 0:
		return bad("ts %d is negative", p.TS)
	case p.Seq == 0:
		return bad("seq 0 (logs start at 1)")
	case p.Seq == 1 && p.Prev != nil:
		return bad("prev present at seq 1")
	case p.Seq > 1 && len(p.Prev) != sha256.Size:
		return bad("prev is %d bytes at seq %d, want %d", len(p.Prev), p.Seq, sha256.Size)
	case !kindRE.MatchString(p.Kind):
		return bad("kind %q is not [a-z][a-z0-9-]{0,31}", p.Kind)
	case p.PolicyRef != nil && len(p.PolicyRef) != sha256.Size:
		return bad("policy_ref is %d bytes, want %d", len(p.PolicyRef), sha256.Size)
	case p.ContentHash != nil && len(p.ContentHash) != sha256.Size:
		return bad("content_hash is %d bytes, want %d", len(p.ContentHash), sha256.Size)
	case len(p.ContentURI) > MaxURILen:
		return bad("content_uri over %d bytes", MaxURILen)
	case len(p.DistTag) > MaxDistTag:
		return bad("dist_tag over %d bytes", MaxDistTag)
	case len(p.Reqs) > MaxReqs || len(p.Prov) > MaxReqs:
		return bad("more than %d capabilities", MaxReqs)
	case p.Prov != nil && equalStrings(p.Prov, p.Reqs):
		return bad("prov equal to reqs must be omitted")
	}
	// Empty optional values encoded as empty (or null) instead of omitted
	// never get here: they do not re-encode to the same bytes.
	return nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func first(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// signer and verifier adapt identities to go-cose, with circl doing Ed25519.
type signer struct{ sk *key.Secret }

func (signer) Algorithm() cose.Algorithm                          { return cose.AlgorithmEdDSA }
func (s signer) Sign(_ io.Reader, content []byte) ([]byte, error) { return s.sk.Sign(content), nil }

type verifier struct{ id key.ID }

func (verifier) Algorithm() cose.Algorithm { return cose.AlgorithmEdDSA }
func (v verifier) Verify(content, sig []byte) error {
	if err := v.id.Verify(content, sig); err != nil {
		return cose.ErrVerification
	}
	return nil
}

// DecodeStored parses bytes that passed Decode before and were read back from
// a store: every structural and canonical-form check, but not the signature
// or the capabilities (the store's Verify re-checks signatures).
func DecodeStored(b []byte) (*Card, error) {
	c, _, err := parse(b)
	return c, err
}

// DecodeAnyCaps is Decode for evidence (fork proofs): the signature and form
// are checked, but required capabilities are not, since proving that an
// author signed something does not need understanding it.
func DecodeAnyCaps(b []byte) (*Card, error) { return Decode(b, anyCaps{}) }

type anyCaps struct{}

func (anyCaps) Require([]string) error { return nil }

// links is the part of the payload a chain check reads.
type links struct {
	Author []byte `cbor:"author"`
	Seq    uint64 `cbor:"seq"`
	Prev   []byte `cbor:"prev"`
}

var linkMode, _ = cbor.DecOptions{IndefLength: cbor.IndefLengthForbidden, TagsMd: cbor.TagsForbidden, MaxNestedLevels: canon.MaxNesting}.DecMode()

// Links reads only the chain fields (author, seq, prev) of stored card bytes,
// without the canonical-form or signature checks: the fast path of a chain
// scan over cards that were fully verified when stored. Canonical cards have
// a fixed envelope prefix (tag, array head, the 38-byte protected header, an
// empty unprotected map), so the payload is sliced in place; anything else
// takes the general decoder.
func Links(b []byte) (author []byte, seq uint64, prev ID, err error) {
	payload, ok := slicePayload(b)
	if !ok {
		if len(b) == 0 || b[0] != coseTag {
			return nil, 0, ID{}, ErrNotSign1
		}
		var env envelope
		if err := linkMode.Unmarshal(b[1:], &env); err != nil {
			return nil, 0, ID{}, fmt.Errorf("%w: %v", ErrNotSign1, err)
		}
		payload = env.Payload
	}
	if a, sq, pv, ok := scanLinks(payload); ok {
		return a, sq, pv, nil
	}
	var l links
	if err := linkMode.Unmarshal(payload, &l); err != nil {
		return nil, 0, ID{}, fmt.Errorf("%w: %v", ErrBadField, err)
	}
	if l.Seq > 1 {
		if len(l.Prev) != len(prev) {
			return nil, 0, ID{}, fmt.Errorf("%w: prev", ErrBadField)
		}
		copy(prev[:], l.Prev)
	}
	return l.Author, l.Seq, prev, nil
}

// slicePayload finds the payload of a canonical card without decoding.
func slicePayload(b []byte) ([]byte, bool) {
	const off = 43 // d2 84 | 58 26 <38 bytes> | a0
	if len(b) < off+3 || b[0] != coseTag || b[1] != 0x84 || b[2] != 0x58 || b[3] != 0x26 || b[42] != emptyMapHdr {
		return nil, false
	}
	var n, h int
	switch b[off] {
	case 0x58:
		n, h = int(b[off+1]), 2
	case 0x59:
		n, h = int(b[off+1])<<8|int(b[off+2]), 3
	default:
		return nil, false
	}
	if off+h+n > len(b) {
		return nil, false
	}
	return b[off+h : off+h+n], true
}

// scanLinks walks a canonical payload map reading only author, seq and prev,
// skipping every other value by its CBOR head. It is the chain scan's fast
// path over bytes that were fully verified when stored; on anything it does
// not expect it reports !ok and Links falls back to the decoder.
func scanLinks(b []byte) (author []byte, seq uint64, prev ID, ok bool) {
	n, h, ok := head(b)
	if !ok || b[0]>>5 != 5 {
		return nil, 0, ID{}, false
	}
	off := h
	var gotSeq, gotPrev bool
	for range n {
		kn, kh, ok := head(b[off:])
		if !ok || b[off]>>5 != 3 || off+kh+int(kn) > len(b) {
			return nil, 0, ID{}, false
		}
		k := string(b[off+kh : off+kh+int(kn)])
		off += kh + int(kn)
		l, ok := itemLen(b[off:], 0)
		if !ok {
			return nil, 0, ID{}, false
		}
		v := b[off : off+l]
		switch k {
		case "seq":
			arg, vh, ok := head(v)
			if !ok || v[0]>>5 != 0 || vh != l {
				return nil, 0, ID{}, false
			}
			seq, gotSeq = arg, true
		case "prev", "author":
			if l != 2+32 || v[0] != 0x58 || v[1] != 32 {
				return nil, 0, ID{}, false
			}
			if k == "prev" {
				copy(prev[:], v[2:])
				gotPrev = true
			} else {
				author = v[2:]
			}
		}
		off += l
	}
	if off != len(b) || !gotSeq || author == nil || gotPrev != (seq > 1) {
		return nil, 0, ID{}, false
	}
	return author, seq, prev, true
}

// head reads a CBOR head: its argument and its own length.
func head(b []byte) (arg uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	ai := b[0] & 0x1f
	switch {
	case ai < 24:
		return uint64(ai), 1, true
	case ai <= 27:
		n = 1 << (ai - 24)
		if len(b) < 1+n {
			return 0, 0, false
		}
		for _, c := range b[1 : 1+n] {
			arg = arg<<8 | uint64(c)
		}
		return arg, 1 + n, true
	}
	return 0, 0, false // indefinite lengths and reserved values
}

// itemLen is the length of the data item at the start of b.
func itemLen(b []byte, depth int) (int, bool) {
	arg, h, ok := head(b)
	if !ok || depth > canon.MaxNesting {
		return 0, false
	}
	switch b[0] >> 5 {
	case 0, 1, 7: // integers, floats and simple values: the head is all
		return h, true
	case 2, 3:
		if arg > uint64(len(b)-h) {
			return 0, false
		}
		return h + int(arg), true
	case 4, 5:
		items := arg
		if b[0]>>5 == 5 {
			items *= 2
		}
		off := h
		for range items {
			l, ok := itemLen(b[off:], depth+1)
			if !ok {
				return 0, false
			}
			off += l
		}
		return off, true
	}
	return 0, false // tags
}
