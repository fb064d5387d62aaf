package capsule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	stdsync "sync"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

// The online gate gives strong revocation: a gated card's CEK is wrapped
// only to the gate identity, and the gate releases it, re-wrapped to the
// requester, while it is enabled and its authoriser agrees. Disabling the
// gate (or one card at it) stops every new decryption at once. The messages
// are pure values; carrying them is the caller's business (sync, later).

// Gate errors.
var (
	ErrGateRefused  = errors.New("gate: refused")
	ErrGateDisabled = errors.New("gate: disabled")
	ErrStale        = errors.New("gate: request outside the time window")
)

// LabelGateRequest is the domain-separation label of request signatures.
const LabelGateRequest = "sublog/v1/gate-request\x00"

// GateSkew is how far a request's ts may be from the gate's clock.
const GateSkew = 5 * time.Minute

// GateRequest asks the gate for a card's CEK.
type GateRequest struct {
	V           uint64 `cbor:"v"`
	Net         string `cbor:"net"`
	RID         []byte `cbor:"rid"`
	PolicyRef   []byte `cbor:"policy_ref"`
	ContentHash []byte `cbor:"content_hash"`
	Wrap        []byte `cbor:"wrap"`      // the capsule's gate wrap
	Requester   []byte `cbor:"requester"` // 32-byte identity
	Nonce       []byte `cbor:"nonce"`     // 16 random bytes, echoed
	TS          int64  `cbor:"ts"`
	Sig         []byte `cbor:"sig,omitempty"` // Ed25519 by requester over label ‖ request without sig
}

// GateResponse answers a request.
type GateResponse struct {
	V      uint64 `cbor:"v"`
	Nonce  []byte `cbor:"nonce"`
	Status string `cbor:"status"`           // "ok", "refused", "disabled", "bad-request"
	Reason string `cbor:"reason,omitempty"` // for humans
	Box    []byte `cbor:"box,omitempty"`    // CEK HPKE-wrapped to the requester (ok only)
}

func (r GateRequest) signed() []byte {
	r.Sig = nil
	return append([]byte(LabelGateRequest), canon.MustMarshal(r)...)
}

func (r GateRequest) releaseAAD() []byte {
	return canon.MustMarshal(struct {
		Net         string `cbor:"net"`
		RID         []byte `cbor:"rid"`
		PolicyRef   []byte `cbor:"policy_ref"`
		ContentHash []byte `cbor:"content_hash"`
		Requester   []byte `cbor:"requester"`
		Nonce       []byte `cbor:"nonce"`
	}{r.Net, r.RID, r.PolicyRef, r.ContentHash, r.Requester, r.Nonce})
}

// NewGateRequest builds and signs a request for a sealed card's CEK.
func NewGateRequest(requester *key.Secret, body []byte, b Binding, now time.Time, rand io.Reader) ([]byte, *GateRequest, error) {
	env, err := DecodeEnvelope(body)
	if err != nil {
		return nil, nil, err
	}
	if env.Capsule.Gate == nil {
		return nil, nil, fmt.Errorf("%w: card is not gated", ErrMalformed)
	}
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, nil, fmt.Errorf("capsule: randomness: %w", err)
	}
	r := GateRequest{V: Version, Net: b.Net, RID: b.RID, PolicyRef: b.PolicyRef, ContentHash: b.ContentHash,
		Wrap: env.Capsule.Gate.Wrap, Requester: requester.ID().Bytes(), Nonce: nonce, TS: now.Unix()}
	r.Sig = requester.Sign(r.signed())
	out, err := canon.Marshal(r)
	return out, &r, err
}

// ParseGateRequest decodes a request strictly and checks its signature.
func ParseGateRequest(b []byte) (*GateRequest, key.ID, error) {
	if len(b) > 4096 {
		return nil, key.ID{}, fmt.Errorf("%w: request of %d bytes", ErrMalformed, len(b))
	}
	var r GateRequest
	if err := canon.Unmarshal(b, &r); err != nil {
		return nil, key.ID{}, fmt.Errorf("%w: gate request: %w", ErrMalformed, err)
	}
	switch {
	case r.V != Version, r.Net == "", len(r.Net) > 128, len(r.RID) != 16, len(r.PolicyRef) != 32,
		len(r.ContentHash) != 32, len(r.Wrap) != WrapSize, len(r.Nonce) != 16, len(r.Sig) != key.SignatureSize:
		return nil, key.ID{}, fmt.Errorf("%w: gate request fields", ErrMalformed)
	}
	who, err := key.IDFromBytes(r.Requester)
	if err != nil {
		return nil, key.ID{}, fmt.Errorf("%w: requester: %w", ErrMalformed, err)
	}
	if err := who.Verify(r.signed(), r.Sig); err != nil {
		return nil, key.ID{}, fmt.Errorf("%w: request signature: %w", ErrGateRefused, err)
	}
	return &r, who, nil
}

// Authorizer decides whether requester may read the card with rid.
type Authorizer func(requester key.ID, rid []byte) bool

// Gate is an online gate: the gate identity's key, an authoriser, and the
// switches that revoke.
type Gate struct {
	sk        *key.Secret
	authorize Authorizer
	mu        stdsync.Mutex
	disabled  bool
	revoked   map[string]bool // by rid
}

// NewGate makes an enabled gate.
func NewGate(sk *key.Secret, authorize Authorizer) *Gate {
	return &Gate{sk: sk, authorize: authorize, revoked: map[string]bool{}}
}

// ID is the gate identity that cards name.
func (g *Gate) ID() key.ID { return g.sk.ID() }

// Disable stops every release; Enable resumes.
func (g *Gate) Disable() { g.mu.Lock(); g.disabled = true; g.mu.Unlock() }
func (g *Gate) Enable()  { g.mu.Lock(); g.disabled = false; g.mu.Unlock() }

// RevokeCard stops releases for one card (by rid).
func (g *Gate) RevokeCard(rid []byte) { g.mu.Lock(); g.revoked[string(rid)] = true; g.mu.Unlock() }

// Handle answers one request message at time now. It never fails: every
// refusal is a response with a status.
func (g *Gate) Handle(req []byte, now time.Time, rand io.Reader) []byte {
	resp := g.handle(req, now, rand)
	return canon.MustMarshal(resp)
}

func (g *Gate) handle(req []byte, now time.Time, rand io.Reader) GateResponse {
	r, who, err := ParseGateRequest(req)
	if err != nil {
		return GateResponse{V: Version, Nonce: []byte{}, Status: "bad-request", Reason: err.Error()}
	}
	out := GateResponse{V: Version, Nonce: r.Nonce}
	g.mu.Lock()
	disabled, revoked := g.disabled, g.revoked[string(r.RID)]
	g.mu.Unlock()
	if d := now.Sub(time.Unix(r.TS, 0)); d > GateSkew || d < -GateSkew {
		out.Status, out.Reason = "refused", "request time outside the window"
		return out
	}
	if disabled || revoked {
		out.Status, out.Reason = "disabled", "the gate no longer releases this card"
		return out
	}
	if g.authorize == nil || !g.authorize(who, r.RID) {
		out.Status, out.Reason = "refused", "requester not authorised"
		return out
	}
	b := Binding{Net: r.Net, RID: r.RID, PolicyRef: r.PolicyRef, ContentHash: r.ContentHash}
	cek, ok := hpkeUnwrap(hpkePrivate(g.sk), infoGate, r.Wrap, b.wrapAAD(nil))
	if !ok {
		out.Status, out.Reason = "refused", "gate wrap does not open for this card"
		return out
	}
	defer clear(cek)
	box, err := hpkeWrap(who, infoGateTo, cek, r.releaseAAD(), rand)
	if err != nil {
		out.Status, out.Reason = "refused", err.Error()
		return out
	}
	out.Status, out.Box = "ok", box
	return out
}

// OpenGateResponse decodes the gate's answer to req and returns the CEK.
func OpenGateResponse(requester *key.Secret, req *GateRequest, resp []byte) ([]byte, error) {
	var r GateResponse
	if len(resp) > 4096 {
		return nil, fmt.Errorf("%w: response of %d bytes", ErrMalformed, len(resp))
	}
	if err := canon.Unmarshal(resp, &r); err != nil {
		return nil, fmt.Errorf("%w: gate response: %w", ErrMalformed, err)
	}
	if r.V != Version || !bytes.Equal(r.Nonce, req.Nonce) {
		return nil, fmt.Errorf("%w: response does not answer this request", ErrMalformed)
	}
	switch r.Status {
	case "ok":
	case "disabled":
		return nil, fmt.Errorf("%w: %s", ErrGateDisabled, r.Reason)
	default:
		return nil, fmt.Errorf("%w: %s: %s", ErrGateRefused, r.Status, r.Reason)
	}
	cek, ok := hpkeUnwrap(hpkePrivate(requester), infoGateTo, r.Box, req.releaseAAD())
	if !ok {
		return nil, fmt.Errorf("%w: released key does not open", ErrGateRefused)
	}
	return slices.Clone(cek), nil
}
