package discovery

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// Pairing tokens: an owner hands one of its devices the delegation it
// signed for it, once, out of band (`sublog delegate DEVICE` prints it,
// `sublog pair TOKEN` takes it). Text form: PairPrefix + base64url (no
// padding) of the canonical CBOR map {1: version (1), 2: owner bstr32,
// 3: device bstr32, 4: issued, 5: expires, 6: the owner's delegate card
// (its exact bytes), 7: signature}; the owner's Ed25519 signature covers
// LabelPair, a zero byte and the CBOR of the map without 7.
const (
	PairPrefix  = "sublog-pair1."
	PairVersion = 1
	LabelPair   = "sublog/v1/pair-token"
	// MaxPairText bounds the text a decoder looks at (a delegate card with
	// a long services list fits).
	MaxPairText = 4096
)

// Pairing errors (each also wraps ErrMalformed, ErrBadSignature or
// ErrExpired where those apply).
var (
	// ErrPairDevice: the token delegates to another identity than this home's.
	ErrPairDevice = errors.New("discovery: pairing token is for another device")
	// ErrPairDelegation: the card inside is not the owner's live delegation to the device.
	ErrPairDelegation = errors.New("discovery: pairing token does not carry the owner's delegation to the device")
)

// PairToken is a verified pairing token. A value only comes from
// NewPairToken or OpenPairToken, so its signature, expiry and delegation
// card have been checked.
type PairToken struct {
	Owner, Device   key.ID
	Issued, Expires time.Time
	Delegation      *card.Card // the owner's delegate card naming Device
	text            string
}

// String is the copy-pasteable text form.
func (t *PairToken) String() string { return t.text }

type pairBody struct {
	V       uint64 `cbor:"1,keyasint"`
	Owner   []byte `cbor:"2,keyasint"`
	Device  []byte `cbor:"3,keyasint"`
	Issued  int64  `cbor:"4,keyasint"`
	Expires int64  `cbor:"5,keyasint"`
	Card    []byte `cbor:"6,keyasint"`
}

type pairWire struct {
	V       uint64 `cbor:"1,keyasint"`
	Owner   []byte `cbor:"2,keyasint"`
	Device  []byte `cbor:"3,keyasint"`
	Issued  int64  `cbor:"4,keyasint"`
	Expires int64  `cbor:"5,keyasint"`
	Card    []byte `cbor:"6,keyasint"`
	Sig     []byte `cbor:"7,keyasint"`
}

func pairSignable(b pairBody) []byte {
	msg := append([]byte(LabelPair), 0)
	return append(msg, canon.MustMarshal(b)...)
}

// NewPairToken signs a pairing token for delegation, a delegate card of sk's
// identity (the owner), valid from issued until expires.
func NewPairToken(sk *key.Secret, delegation *card.Card, issued, expires time.Time) (*PairToken, error) {
	dev, err := delegationDevice(sk.ID(), delegation)
	if err != nil {
		return nil, err
	}
	iss, exp := issued.Unix(), expires.Unix()
	if iss < 0 || exp <= iss {
		return nil, fmt.Errorf("%w: pairing token expiry is not after its issue time", ErrMalformed)
	}
	body := pairBody{V: PairVersion, Owner: sk.ID().Bytes(), Device: dev.Bytes(), Issued: iss, Expires: exp, Card: delegation.Bytes()}
	w := pairWire{V: body.V, Owner: body.Owner, Device: body.Device, Issued: iss, Expires: exp, Card: body.Card, Sig: sk.Sign(pairSignable(body))}
	text := PairPrefix + b64.EncodeToString(canon.MustMarshal(w))
	if len(text) > MaxPairText {
		return nil, fmt.Errorf("%w: pairing token would be %d characters, limit %d", ErrTooLarge, len(text), MaxPairText)
	}
	return &PairToken{Owner: sk.ID(), Device: dev, Issued: time.Unix(iss, 0).UTC(), Expires: time.Unix(exp, 0).UTC(),
		Delegation: delegation, text: text}, nil
}

// delegationDevice checks that c is a live (not revoking) delegate card by
// owner and returns the device it names.
func delegationDevice(owner key.ID, c *card.Card) (key.ID, error) {
	if c.Author() != owner || c.Kind() != card.KindDelegate {
		return key.ID{}, fmt.Errorf("%w: the card is a %s card of %s", ErrPairDelegation, c.Kind(), c.Author())
	}
	var b kinds.DelegateBody
	if err := c.DecodeBody(&b); err != nil {
		return key.ID{}, fmt.Errorf("%w: %v", ErrPairDelegation, err)
	}
	if b.Revoked {
		return key.ID{}, fmt.Errorf("%w: the card revokes the device", ErrPairDelegation)
	}
	dev, err := key.IDFromBytes(b.Device)
	if err != nil {
		return key.ID{}, fmt.Errorf("%w: device: %v", ErrPairDelegation, err)
	}
	return dev, nil
}

// OpenPairToken parses and verifies a pairing token: its one valid
// encoding, the owner's signature, that it has not expired at now (and was
// not issued more than 5 minutes after it), that the card inside is a
// validly signed delegate card of the owner naming the token's device, and
// that the device is one of this home's identities (mine). Surrounding white
// space is ignored.
func OpenPairToken(s string, now time.Time, mine func(key.ID) bool) (*PairToken, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxPairText {
		return nil, fmt.Errorf("%w: pairing token is %d characters, limit %d", ErrTooLarge, len(s), MaxPairText)
	}
	rest, ok := strings.CutPrefix(s, PairPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: %q does not start with %q", ErrMalformed, clip(s), PairPrefix)
	}
	raw, err := b64.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: pairing token is not base64url: %v", ErrMalformed, err)
	}
	var w pairWire
	if err := canon.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("%w: pairing token: %w", ErrMalformed, err)
	}
	if again := canon.MustMarshal(w); !bytes.Equal(again, raw) {
		return nil, fmt.Errorf("%w: pairing token is not in its one valid encoding", ErrMalformed)
	}
	if w.V != PairVersion {
		return nil, fmt.Errorf("%w: pairing token version %d, want %d", ErrMalformed, w.V, PairVersion)
	}
	owner, err := key.IDFromBytes(w.Owner)
	if err != nil {
		return nil, fmt.Errorf("%w: pairing token owner: %w", ErrMalformed, err)
	}
	dev, err := key.IDFromBytes(w.Device)
	if err != nil {
		return nil, fmt.Errorf("%w: pairing token device: %w", ErrMalformed, err)
	}
	if w.Issued < 0 || w.Expires <= w.Issued {
		return nil, fmt.Errorf("%w: pairing token expiry %d is not after its issue time %d", ErrMalformed, w.Expires, w.Issued)
	}
	body := pairBody{V: w.V, Owner: w.Owner, Device: w.Device, Issued: w.Issued, Expires: w.Expires, Card: w.Card}
	if err := owner.Verify(pairSignable(body), w.Sig); err != nil {
		return nil, fmt.Errorf("%w: pairing token is not signed by %s, the owner it names", ErrBadSignature, owner)
	}
	exp := time.Unix(w.Expires, 0).UTC()
	if !now.Before(exp) {
		return nil, fmt.Errorf("%w: pairing token of %s expired at %s: ask for a new one ('sublog delegate %s' on the owner's home)",
			ErrExpired, owner, exp.Format(time.RFC3339), dev)
	}
	if iss := time.Unix(w.Issued, 0); iss.After(now.Add(5 * time.Minute)) {
		return nil, fmt.Errorf("%w: pairing token issued at %s, in the future (check the clocks)", ErrMalformed, iss.UTC().Format(time.RFC3339))
	}
	if !mine(dev) {
		return nil, fmt.Errorf("%w: it delegates to %s, which is not an identity of this home", ErrPairDevice, dev)
	}
	c, err := card.DecodeAnyCaps(w.Card)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPairDelegation, err)
	}
	named, err := delegationDevice(owner, c)
	if err != nil {
		return nil, err
	}
	if named != dev {
		return nil, fmt.Errorf("%w: the card names %s, the token %s", ErrPairDelegation, named, dev)
	}
	return &PairToken{Owner: owner, Device: dev, Issued: time.Unix(w.Issued, 0).UTC(), Expires: exp, Delegation: c, text: s}, nil
}
