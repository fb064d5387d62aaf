// Package capsule owns encrypted cards: the policy capsule (visibility,
// distribution, flags and the keying that recovers the content encryption
// key), HPKE key wrapping (circl: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// ChaCha20-Poly1305), the AEAD payload, padding to size buckets, KEK wraps
// for crypto-shred and the online gate's request/response messages. It does
// no I/O: randomness comes in as an io.Reader, and every decoder of untrusted
// bytes goes through log/canon.
//
// An encrypted card's body is the envelope {capsule, payload}; the card's
// policy_ref is the hash of the capsule's policy and its content_hash the
// hash of the payload (see ARCHITECTURE.md, "Capabilities and encryption").
package capsule

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"slices"

	"filippo.io/edwards25519"
	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Errors. Each reason has its own value so the CLI and golden vectors can
// tell them apart.
var (
	// ErrMalformed: an envelope, capsule or message that breaks the format.
	ErrMalformed = errors.New("capsule: malformed")
	// ErrNotRecipient: no keying entry of the capsule opens with the keys
	// this reader holds. (A card altered in net or rid gives this too: the
	// key wraps are bound to them.)
	ErrNotRecipient = errors.New("not a recipient")
	// ErrTampered: the payload or policy does not match the card's
	// content_hash or policy_ref, or the payload fails authentication.
	ErrTampered = errors.New("capsule: payload or policy altered")
	// ErrShredded: the card's KEK has been deleted here (crypto-shred).
	ErrShredded = errors.New("capsule: key shredded")
	// ErrUnsupportedKeying: the policy names a keying capability this code
	// does not implement.
	ErrUnsupportedKeying = errors.New("capsule: unsupported keying")
	// ErrTooLarge: a body over the largest padding bucket (send it as a blob).
	ErrTooLarge = errors.New("capsule: body too large to inline")
	// ErrNoKEK: the lookup has no KEK with that ID (not ours).
	ErrNoKEK = errors.New("capsule: no such KEK")
)

// Visibility modes.
const (
	Public   = "public"
	Direct   = "direct"
	TrustSet = "trustset"
	Group    = "group"
	Node     = "node"
)

// Distribution modes: where honest nodes may send the card.
const (
	ToRecipientsOnly = "to_recipients_only"
	ThisNodeOnly     = "this_node_only"
	TrustedNodes     = "trusted_nodes"
	DistPublic       = "public"
)

// Flags.
const (
	FlagPermanent = "permanent_public" // public and irrevocable
)

// Sizes.
const (
	Version   = 1
	CEKSize   = 32
	KEKSize   = 32
	KEKIDSize = 16
	encSize   = 32                          // X25519 encapsulation
	tagSize   = 16                          // Poly1305
	nonceSize = 12                          // ChaCha20-Poly1305
	WrapSize  = encSize + CEKSize + tagSize // one HPKE key wrap: 80 bytes
	kekBox    = nonceSize + CEKSize + tagSize
	MaxWraps  = 256
)

// WrapBuckets are the numbers of key wraps a padded capsule carries: the
// real wraps are topped up with random ones to the next bucket, so the
// capsule's length tells the audience size only to within a bucket.
var WrapBuckets = []int{4, 16, 64, MaxWraps}

// PayloadBuckets are the padded plaintext sizes: a body is padded to the
// smallest bucket that holds it and its end marker. The largest bucket is
// the largest body a card carries inline (cards are at most 64 KiB).
var PayloadBuckets = []int{256, 1 << 10, 4 << 10, 16 << 10, 32 << 10}

// Domain-separation labels.
const (
	infoWrap   = "sublog/v1/capsule"
	infoGate   = "sublog/v1/capsule-gate"
	infoGateTo = "sublog/v1/capsule-gate-release"
	labelPol   = "sublog/v1/policy\x00"
)

var suite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)

// Policy is the clear part of the capsule. Sync and honest readers act on
// it without decrypting anything; its hash is the card's policy_ref.
type Policy struct {
	Visibility   string   `cbor:"visibility" json:"visibility"`
	Distribution string   `cbor:"distribution" json:"distribution"`
	Keying       string   `cbor:"keying,omitempty" json:"keying,omitempty"` // cap ID of the group keying
	Flags        []string `cbor:"flags,omitempty" json:"flags,omitempty"`
	Exp          int64    `cbor:"exp,omitempty" json:"exp,omitempty"` // Unix seconds; honest readers hide after it
}

// Ref is the policy_ref: SHA-256 over a label and the policy's canonical CBOR.
func (p Policy) Ref() []byte {
	h := sha256.New()
	h.Write([]byte(labelPol))
	h.Write(canon.MustMarshal(p))
	return h.Sum(nil)
}

// KEKWrap is the CEK sealed under a local key-encryption key.
type KEKWrap struct {
	ID  []byte `cbor:"id"`  // 16 bytes, names the KEK in the store
	Box []byte `cbor:"box"` // nonce ‖ ChaCha20-Poly1305(KEK, CEK)
}

// GateWrap is the CEK HPKE-wrapped to a gate identity.
type GateWrap struct {
	Gate []byte `cbor:"gate"` // the gate's 32-byte identity
	Wrap []byte `cbor:"wrap"` // enc ‖ HPKE ciphertext, WrapSize bytes
}

// Capsule is the policy capsule.
type Capsule struct {
	V      uint64    `cbor:"v"`
	Policy Policy    `cbor:"policy"`
	Wraps  [][]byte  `cbor:"wraps,omitempty"` // anonymous HPKE wraps, WrapSize each
	KEK    *KEKWrap  `cbor:"kek,omitempty"`
	Gate   *GateWrap `cbor:"gate,omitempty"`
}

// Envelope is the body of an encrypted card.
type Envelope struct {
	Capsule Capsule `cbor:"capsule"`
	Payload []byte  `cbor:"payload"`
}

// Binding is what the card says about itself that the crypto binds to.
type Binding struct {
	Net         string
	RID         []byte
	PolicyRef   []byte
	ContentHash []byte
}

type payloadAAD struct {
	Net       string `cbor:"net"`
	RID       []byte `cbor:"rid"`
	PolicyRef []byte `cbor:"policy_ref"`
}

type wrapAAD struct {
	Net         string `cbor:"net"`
	RID         []byte `cbor:"rid"`
	ContentHash []byte `cbor:"content_hash"`
	PolicyRef   []byte `cbor:"policy_ref"`
	KEK         []byte `cbor:"kek,omitempty"`
}

func (b Binding) payloadAAD() []byte {
	return canon.MustMarshal(payloadAAD{Net: b.Net, RID: b.RID, PolicyRef: b.PolicyRef})
}

func (b Binding) wrapAAD(kekID []byte) []byte {
	return canon.MustMarshal(wrapAAD{Net: b.Net, RID: b.RID, ContentHash: b.ContentHash, PolicyRef: b.PolicyRef, KEK: kekID})
}

// KEK is a key-encryption key kept only in the local store.
type KEK struct {
	ID  [KEKIDSize]byte
	Key [KEKSize]byte
}

// NewKEK draws a KEK from rand.
func NewKEK(rand io.Reader) (*KEK, error) {
	var k KEK
	if _, err := io.ReadFull(rand, k.ID[:]); err != nil {
		return nil, fmt.Errorf("capsule: randomness: %w", err)
	}
	if _, err := io.ReadFull(rand, k.Key[:]); err != nil {
		return nil, fmt.Errorf("capsule: randomness: %w", err)
	}
	return &k, nil
}

// Params is what Seal needs.
type Params struct {
	Net          string // card net (card.DefaultNet when empty is the caller's business)
	RID          []byte // the card's rid, 16 bytes
	Visibility   string
	Distribution string    // default per visibility when empty
	Recipients   []key.ID  // direct: one; trustset/group: the members; node: the node's keys
	Body         []byte    // the plaintext body, canonical CBOR
	KEK          *KEK      // optional: also wrap the CEK under this local KEK
	Gate         *key.ID   // optional: wrap the CEK only to this gate (strong revocation)
	Flags        []string  // extra flags
	Exp          int64     // optional expiry
	NoPad        bool      // turn padding off (tests and benchmarks of the raw cost)
	Keying       caps.Spec // group keying; zero means GroupHPKEFanout
}

// Sealed is Seal's result: what goes into the card.
type Sealed struct {
	Body        []byte // canonical CBOR of the Envelope: the card's body
	PolicyRef   []byte
	ContentHash []byte
	Reqs        []string // cap IDs a reader needs, sorted
	Envelope    Envelope
}

// DefaultDistribution gives the distribution a visibility implies.
func DefaultDistribution(vis string) string {
	switch vis {
	case Public:
		return DistPublic
	case TrustSet:
		return TrustedNodes
	case Node:
		return ThisNodeOnly
	}
	return ToRecipientsOnly
}

func validVisibility(v string) bool {
	return v == Public || v == Direct || v == TrustSet || v == Group || v == Node
}

func validDistribution(d string) bool {
	return d == ToRecipientsOnly || d == ThisNodeOnly || d == TrustedNodes || d == DistPublic
}

// Seal encrypts p.Body for p's audience. A fresh CEK from rand encrypts the
// padded body with AAD {net, rid, policy_ref}; the CEK is HPKE-wrapped to
// each recipient (and the gate, and the KEK) with AAD {net, rid,
// content_hash, policy_ref}. Wraps are shuffled and padded with random ones
// to a bucket. Public visibility carries the plain body and no keying.
func Seal(p Params, rand io.Reader) (*Sealed, error) {
	if !validVisibility(p.Visibility) {
		return nil, fmt.Errorf("%w: visibility %q (want public, direct, trustset, group or node)", ErrMalformed, p.Visibility)
	}
	if len(p.RID) != 16 || p.Net == "" {
		return nil, fmt.Errorf("%w: net and a 16-byte rid are required", ErrMalformed)
	}
	if err := canon.Check(p.Body); err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrMalformed, err)
	}
	pol := Policy{Visibility: p.Visibility, Distribution: p.Distribution, Flags: slices.Clone(p.Flags), Exp: p.Exp}
	if pol.Distribution == "" {
		pol.Distribution = DefaultDistribution(p.Visibility)
	}
	if !validDistribution(pol.Distribution) {
		return nil, fmt.Errorf("%w: distribution %q", ErrMalformed, pol.Distribution)
	}
	reqs := []string{caps.CapsuleV1.ID(), visCap(p.Visibility).ID()}
	recips := uniqIDs(p.Recipients)
	switch p.Visibility {
	case Public:
		if len(recips) > 0 || p.KEK != nil || p.Gate != nil {
			return nil, fmt.Errorf("%w: public cards have no recipients, KEK or gate", ErrMalformed)
		}
		if pol.Distribution != DistPublic {
			return nil, fmt.Errorf("%w: a public card's distribution is public", ErrMalformed)
		}
		if !slices.Contains(pol.Flags, FlagPermanent) {
			pol.Flags = append(pol.Flags, FlagPermanent)
		}
	case Direct:
		if len(recips) != 1 {
			return nil, fmt.Errorf("%w: direct visibility takes exactly one recipient, got %d", ErrMalformed, len(recips))
		}
	case TrustSet, Group:
		if len(recips) == 0 && p.Gate == nil {
			return nil, fmt.Errorf("%w: %s visibility needs at least one member", ErrMalformed, p.Visibility)
		}
	case Node:
		if len(recips) == 0 && p.KEK == nil && p.Gate == nil {
			return nil, fmt.Errorf("%w: node visibility needs the node's key, a KEK or a gate", ErrMalformed)
		}
	}
	if p.Visibility == Group {
		k := p.Keying
		if k.Name == "" {
			k = caps.GroupHPKEFanout
		}
		if k.ID() != caps.GroupHPKEFanout.ID() {
			return nil, fmt.Errorf("%w: %s", ErrUnsupportedKeying, k.Label())
		}
		pol.Keying = k.ID()
		reqs = append(reqs, k.ID())
	}
	if len(recips) > MaxWraps {
		return nil, fmt.Errorf("%w: %d recipients, at most %d", ErrMalformed, len(recips), MaxWraps)
	}
	slices.Sort(pol.Flags)
	pol.Flags = slices.Compact(pol.Flags)
	if len(pol.Flags) == 0 {
		pol.Flags = nil
	}
	if err := pol.validate(); err != nil {
		return nil, err
	}
	env := Envelope{Capsule: Capsule{V: Version, Policy: pol}}
	b := Binding{Net: p.Net, RID: p.RID, PolicyRef: pol.Ref()}

	if p.Visibility == Public {
		env.Payload = slices.Clone(p.Body)
		b.ContentHash = hashPayload(env.Payload)
		return finish(env, b, reqs)
	}
	reqs = append(reqs, caps.SuiteAEAD.ID(), caps.SuiteHPKE.ID())
	if p.Gate != nil {
		reqs = append(reqs, caps.RevokeGate.ID())
	}

	cek := make([]byte, CEKSize)
	if _, err := io.ReadFull(rand, cek); err != nil {
		return nil, fmt.Errorf("capsule: randomness: %w", err)
	}
	defer clear(cek)
	padded, err := pad(p.Body, !p.NoPad)
	if err != nil {
		return nil, err
	}
	aead, _ := hpke.AEAD_ChaCha20Poly1305.New(cek)
	// The CEK is fresh for every card and encrypts one message: a zero nonce is safe.
	env.Payload = aead.Seal(nil, make([]byte, nonceSize), padded, b.payloadAAD())
	b.ContentHash = hashPayload(env.Payload)

	aad := b.wrapAAD(nil)
	for _, r := range recips {
		w, err := hpkeWrap(r, infoWrap, cek, aad, rand)
		if err != nil {
			return nil, err
		}
		env.Capsule.Wraps = append(env.Capsule.Wraps, w)
	}
	if !p.NoPad {
		target := bucket(len(env.Capsule.Wraps), WrapBuckets)
		for len(env.Capsule.Wraps) < target {
			w := make([]byte, WrapSize)
			if _, err := io.ReadFull(rand, w); err != nil {
				return nil, fmt.Errorf("capsule: randomness: %w", err)
			}
			env.Capsule.Wraps = append(env.Capsule.Wraps, w)
		}
		if err := shuffle(env.Capsule.Wraps, rand); err != nil {
			return nil, err
		}
	}
	if p.Gate != nil {
		w, err := hpkeWrap(*p.Gate, infoGate, cek, aad, rand)
		if err != nil {
			return nil, err
		}
		env.Capsule.Gate = &GateWrap{Gate: p.Gate.Bytes(), Wrap: w}
	}
	if p.KEK != nil {
		env.Capsule.KEK, err = kekWrap(p.KEK, cek, b, rand)
		if err != nil {
			return nil, err
		}
	}
	return finish(env, b, reqs)
}

func finish(env Envelope, b Binding, reqs []string) (*Sealed, error) {
	if len(env.Capsule.Wraps) == 0 {
		env.Capsule.Wraps = nil
	}
	body, err := canon.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	slices.Sort(reqs)
	return &Sealed{Body: body, PolicyRef: b.PolicyRef, ContentHash: b.ContentHash, Reqs: slices.Compact(reqs), Envelope: env}, nil
}

func visCap(v string) caps.Spec {
	switch v {
	case Public:
		return caps.VisPublic
	case Direct:
		return caps.VisDirect
	case TrustSet:
		return caps.VisTrustset
	case Group:
		return caps.VisGroup
	}
	return caps.VisNode
}

func hashPayload(p []byte) []byte { s := sha256.Sum256(p); return s[:] }

func uniqIDs(ids []key.ID) []key.ID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b key.ID) int { return a.Compare(b) })
	return slices.CompactFunc(out, func(a, b key.ID) bool { return a == b })
}

func bucket(n int, buckets []int) int {
	for _, b := range buckets {
		if n <= b {
			return b
		}
	}
	return n
}

// shuffle is a Fisher-Yates shuffle drawing from rand, so the real wraps'
// positions say nothing about who they are for.
func shuffle(w [][]byte, rand io.Reader) error {
	var buf [4]byte
	for i := len(w) - 1; i > 0; i-- {
		if _, err := io.ReadFull(rand, buf[:]); err != nil {
			return fmt.Errorf("capsule: randomness: %w", err)
		}
		r := uint32(buf[0])<<24 | uint32(buf[1])<<16 | uint32(buf[2])<<8 | uint32(buf[3])
		j := int(uint64(r) * uint64(i+1) >> 32)
		w[i], w[j] = w[j], w[i]
	}
	return nil
}

// pad appends the end marker 0x80 and zeros up to the bucket (ISO/IEC
// 7816-4 padding); without bucketing it only appends the marker.
func pad(body []byte, bucketed bool) ([]byte, error) {
	n := len(body) + 1
	max := PayloadBuckets[len(PayloadBuckets)-1]
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes, at most %d inline", ErrTooLarge, len(body), max-1)
	}
	size := n
	if bucketed {
		size = bucket(n, PayloadBuckets)
	}
	out := make([]byte, size)
	copy(out, body)
	out[len(body)] = 0x80
	return out, nil
}

func unpad(b []byte) ([]byte, error) {
	i := len(b) - 1
	for i >= 0 && b[i] == 0 {
		i--
	}
	if i < 0 || b[i] != 0x80 {
		return nil, fmt.Errorf("%w: bad padding", ErrTampered)
	}
	return b[:i], nil
}

// X25519 keys of identities: the birational map of the Ed25519 key
// (RFC 7748 section 4.1), as age and libsodium do, so an identity needs no
// second published key.
func x25519Public(id key.ID) ([]byte, error) {
	p, err := new(edwards25519.Point).SetBytes(id.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%w: identity %s: %v", ErrMalformed, id, err)
	}
	return p.BytesMontgomery(), nil
}

func x25519Secret(sk *key.Secret) []byte {
	h := sha512.Sum512(sk.Seed())
	s := h[:32]
	s[0] &= 248
	s[31] &= 127
	s[31] |= 64
	return slices.Clone(s)
}

func hpkeWrap(to key.ID, info string, cek, aad []byte, rand io.Reader) ([]byte, error) {
	pub, err := x25519Public(to)
	if err != nil {
		return nil, err
	}
	pk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: recipient %s: %v", ErrMalformed, to, err)
	}
	snd, err := suite.NewSender(pk, []byte(info))
	if err != nil {
		return nil, fmt.Errorf("capsule: hpke: %w", err)
	}
	enc, sealer, err := snd.Setup(rand)
	if err != nil {
		return nil, fmt.Errorf("capsule: hpke setup: %w", err)
	}
	ct, err := sealer.Seal(cek, aad)
	if err != nil {
		return nil, fmt.Errorf("capsule: hpke seal: %w", err)
	}
	return append(enc, ct...), nil
}

func hpkePrivate(sk *key.Secret) kem.PrivateKey {
	xsk := x25519Secret(sk)
	defer clear(xsk)
	k, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPrivateKey(xsk)
	if err != nil {
		panic("capsule: X25519 private key of 32 bytes refused: " + err.Error())
	}
	return k
}

func hpkeUnwrap(sk kem.PrivateKey, info string, w, aad []byte) ([]byte, bool) {
	if len(w) != WrapSize {
		return nil, false
	}
	rcv, err := suite.NewReceiver(sk, []byte(info))
	if err != nil {
		return nil, false
	}
	op, err := rcv.Setup(w[:encSize])
	if err != nil {
		return nil, false
	}
	cek, err := op.Open(w[encSize:], aad)
	if err != nil || len(cek) != CEKSize {
		return nil, false
	}
	return cek, true
}

func kekWrap(k *KEK, cek []byte, b Binding, rand io.Reader) (*KEKWrap, error) {
	nonce := make([]byte, nonceSize)
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("capsule: randomness: %w", err)
	}
	aead, _ := hpke.AEAD_ChaCha20Poly1305.New(k.Key[:])
	box := aead.Seal(nonce, nonce, cek, b.wrapAAD(k.ID[:]))
	return &KEKWrap{ID: slices.Clone(k.ID[:]), Box: box}, nil
}

func kekUnwrap(kek []byte, w *KEKWrap, b Binding) ([]byte, bool) {
	if len(kek) != KEKSize || len(w.Box) != kekBox {
		return nil, false
	}
	aead, _ := hpke.AEAD_ChaCha20Poly1305.New(kek)
	cek, err := aead.Open(nil, w.Box[:nonceSize], w.Box[nonceSize:], b.wrapAAD(w.ID))
	if err != nil {
		return nil, false
	}
	return cek, true
}

func (p *Policy) validate() error {
	switch {
	case !validVisibility(p.Visibility):
		return fmt.Errorf("%w: visibility %q", ErrMalformed, p.Visibility)
	case !validDistribution(p.Distribution):
		return fmt.Errorf("%w: distribution %q", ErrMalformed, p.Distribution)
	case p.Exp < 0:
		return fmt.Errorf("%w: negative exp", ErrMalformed)
	case len(p.Flags) > 16:
		return fmt.Errorf("%w: more than 16 flags", ErrMalformed)
	case p.Flags != nil && len(p.Flags) == 0:
		return fmt.Errorf("%w: empty flags must be omitted", ErrMalformed)
	case (p.Visibility == Group) != (p.Keying != ""):
		return fmt.Errorf("%w: keying is set exactly for group visibility", ErrMalformed)
	case p.Visibility == Public && p.Distribution != DistPublic:
		return fmt.Errorf("%w: public visibility with distribution %q", ErrMalformed, p.Distribution)
	}
	if !slices.IsSorted(p.Flags) || len(slices.Compact(slices.Clone(p.Flags))) != len(p.Flags) {
		return fmt.Errorf("%w: flags must be sorted and unique", ErrMalformed)
	}
	for _, f := range p.Flags {
		if f == "" || len(f) > 32 {
			return fmt.Errorf("%w: flag %q", ErrMalformed, f)
		}
	}
	if p.Keying != "" {
		if err := caps.ValidID(p.Keying); err != nil {
			return fmt.Errorf("%w: keying: %w", ErrMalformed, err)
		}
	}
	return nil
}

// DecodeEnvelope decodes an encrypted card's body strictly (log/canon) and
// checks the capsule's shape. It does not decrypt.
func DecodeEnvelope(body []byte) (*Envelope, error) {
	var env Envelope
	if err := canon.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c := &env.Capsule
	switch {
	case c.V != Version:
		return nil, fmt.Errorf("%w: capsule v%d, want %d", ErrMalformed, c.V, Version)
	case c.Wraps != nil && len(c.Wraps) == 0:
		return nil, fmt.Errorf("%w: empty wraps must be omitted", ErrMalformed)
	case len(c.Wraps) > MaxWraps:
		return nil, fmt.Errorf("%w: %d wraps, at most %d", ErrMalformed, len(c.Wraps), MaxWraps)
	case len(env.Payload) > PayloadBuckets[len(PayloadBuckets)-1]+tagSize:
		return nil, fmt.Errorf("%w: payload of %d bytes", ErrMalformed, len(env.Payload))
	}
	if err := c.Policy.validate(); err != nil {
		return nil, err
	}
	for i, w := range c.Wraps {
		if len(w) != WrapSize {
			return nil, fmt.Errorf("%w: wrap %d is %d bytes, want %d", ErrMalformed, i, len(w), WrapSize)
		}
	}
	if c.KEK != nil && (len(c.KEK.ID) != KEKIDSize || len(c.KEK.Box) != kekBox) {
		return nil, fmt.Errorf("%w: kek wrap sizes", ErrMalformed)
	}
	if c.Gate != nil {
		if _, err := key.IDFromBytes(c.Gate.Gate); err != nil {
			return nil, fmt.Errorf("%w: gate identity: %w", ErrMalformed, err)
		}
		if len(c.Gate.Wrap) != WrapSize {
			return nil, fmt.Errorf("%w: gate wrap is %d bytes", ErrMalformed, len(c.Gate.Wrap))
		}
	}
	if c.Policy.Visibility == Public && (c.Wraps != nil || c.KEK != nil || c.Gate != nil) {
		return nil, fmt.Errorf("%w: public capsule with keying", ErrMalformed)
	}
	if c.Policy.Visibility != Public && c.Wraps == nil && c.KEK == nil && c.Gate == nil {
		return nil, fmt.Errorf("%w: encrypted capsule without keying", ErrMalformed)
	}
	return &env, nil
}

// Check compares the envelope with the card's policy_ref and content_hash.
func (env *Envelope) Check(b Binding) error {
	if !bytes.Equal(env.Capsule.Policy.Ref(), b.PolicyRef) {
		return fmt.Errorf("%w: policy does not match policy_ref", ErrTampered)
	}
	if !bytes.Equal(hashPayload(env.Payload), b.ContentHash) {
		return fmt.Errorf("%w: payload does not match content_hash", ErrTampered)
	}
	return nil
}

// Keys are what a reader may decrypt with.
type Keys struct {
	// Identities whose HPKE wraps this reader may open (the home's keys).
	Identities []*key.Secret
	// KEK looks a KEK up by ID in the local store; it returns ErrShredded
	// for a shredded one and ErrNoKEK for an unknown one. Nil: no KEKs.
	KEK func(id []byte) ([]byte, error)
}

// Opened is a decrypted card.
type Opened struct {
	Body   []byte // the plaintext body's canonical CBOR
	Policy Policy
	Via    string // "public", "kek", "wrap", "cek"
}

// Open decrypts an encrypted card's body for a reader holding keys. It
// decodes strictly, checks policy_ref and content_hash, then tries the
// KEK, then each HPKE wrap with each identity (wraps are anonymous). It
// returns ErrNotRecipient when nothing opens, ErrShredded when the only way
// in was a shredded KEK, ErrTampered when a key opened but the payload does
// not authenticate.
func Open(body []byte, b Binding, keys Keys) (*Opened, error) {
	env, err := DecodeEnvelope(body)
	if err != nil {
		return nil, err
	}
	if err := env.Check(b); err != nil {
		return nil, err
	}
	pol := env.Capsule.Policy
	if pol.Visibility == Public {
		if err := canon.Check(env.Payload); err != nil {
			return nil, fmt.Errorf("%w: public payload: %w", ErrMalformed, err)
		}
		return &Opened{Body: slices.Clone(env.Payload), Policy: pol, Via: "public"}, nil
	}
	if pol.Visibility == Group && pol.Keying != caps.GroupHPKEFanout.ID() {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedKeying, pol.Keying)
	}
	shredded := false
	if env.Capsule.KEK != nil && keys.KEK != nil {
		kek, err := keys.KEK(env.Capsule.KEK.ID)
		switch {
		case err == nil:
			cek, ok := kekUnwrap(kek, env.Capsule.KEK, b)
			clear(kek)
			if ok {
				return openPayload(env, b, cek, "kek")
			}
		case errors.Is(err, ErrShredded):
			shredded = true
		case !errors.Is(err, ErrNoKEK):
			return nil, err
		}
	}
	aad := b.wrapAAD(nil)
	for _, sk := range keys.Identities {
		xsk := hpkePrivate(sk)
		for _, w := range env.Capsule.Wraps {
			if cek, ok := hpkeUnwrap(xsk, infoWrap, w, aad); ok {
				return openPayload(env, b, cek, "wrap")
			}
		}
	}
	if shredded {
		return nil, fmt.Errorf("%w: the KEK of this card was deleted here", ErrShredded)
	}
	return nil, fmt.Errorf("%w: no key wrap of this card opens with this home's keys (or the card's net, rid or content were altered after sealing)", ErrNotRecipient)
}

// OpenWithCEK decrypts with a CEK obtained elsewhere (from a gate).
func OpenWithCEK(body []byte, b Binding, cek []byte) (*Opened, error) {
	env, err := DecodeEnvelope(body)
	if err != nil {
		return nil, err
	}
	if err := env.Check(b); err != nil {
		return nil, err
	}
	if len(cek) != CEKSize {
		return nil, fmt.Errorf("%w: CEK of %d bytes", ErrMalformed, len(cek))
	}
	return openPayload(env, b, slices.Clone(cek), "cek")
}

func openPayload(env *Envelope, b Binding, cek []byte, via string) (*Opened, error) {
	defer clear(cek)
	aead, _ := hpke.AEAD_ChaCha20Poly1305.New(cek)
	pt, err := aead.Open(nil, make([]byte, nonceSize), env.Payload, b.payloadAAD())
	if err != nil {
		return nil, fmt.Errorf("%w: payload does not authenticate", ErrTampered)
	}
	body, err := unpad(pt)
	if err != nil {
		return nil, err
	}
	if err := canon.Check(body); err != nil {
		return nil, fmt.Errorf("%w: decrypted body: %w", ErrMalformed, err)
	}
	return &Opened{Body: body, Policy: env.Capsule.Policy, Via: via}, nil
}

// BindingOf takes the binding from a card.
func BindingOf(c *card.Card) Binding {
	return Binding{Net: c.Net(), RID: c.RID(), PolicyRef: c.PolicyRef(), ContentHash: c.ContentHash()}
}

// IsSealed reports whether a card carries a policy capsule (its body is an
// Envelope): it has a policy_ref.
func IsSealed(c *card.Card) bool { return c.PolicyRef() != nil }

// OpenCard opens a sealed card's body.
func OpenCard(c *card.Card, keys Keys) (*Opened, error) {
	if !IsSealed(c) {
		return nil, fmt.Errorf("%w: card %s has no policy_ref", ErrMalformed, c.ID())
	}
	return Open(c.Body(), BindingOf(c), keys)
}

// Draft fills a card draft's encryption fields from a sealed result: the
// body, policy_ref, content_hash and reqs (merged with the draft's own).
func (s *Sealed) Draft(d card.Draft) card.Draft {
	d.RawBody = s.Body
	d.Body = nil
	d.PolicyRef = s.PolicyRef
	d.ContentHash = s.ContentHash
	reqs := append(slices.Clone(d.Reqs), s.Reqs...)
	slices.Sort(reqs)
	d.Reqs = slices.Compact(reqs)
	return d
}

// PolicyOf returns a sealed card's clear policy (visibility, distribution)
// without decrypting anything, for sync to honour the distribution; ok is
// false for a card without a capsule.
func PolicyOf(c *card.Card) (p Policy, ok bool, err error) {
	if !IsSealed(c) {
		return Policy{}, false, nil
	}
	env, err := DecodeEnvelope(c.Body())
	if err != nil {
		return Policy{}, true, err
	}
	if err := env.Check(BindingOf(c)); err != nil {
		return Policy{}, true, err
	}
	return env.Capsule.Policy, true, nil
}
