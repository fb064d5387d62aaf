package caps

import (
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

// Domain-separation labels: the COSE external_aad of each signature context.
const (
	LabelSpec   = "sublog/v1/capspec"       // a curator's signature over a spec
	LabelNotice = "sublog/v1/cap-deprecate" // a deprecation notice
)

// Doc is a signed cap-spec/v1 document: the spec and the signatures of its
// authors or curators. Each signature is a tagged COSE_Sign1 message (EdDSA,
// kid = the signer's 32-byte key) with a detached payload: the payload it
// signs is the canonical CBOR of the spec without signatures, the bytes that
// are hashed into the cap ID. So signatures never change the cap ID.
type Doc struct {
	Spec
	Signatures [][]byte `cbor:"signatures,omitempty" json:"signatures,omitempty" yaml:"signatures,omitempty"`
}

// Marshal encodes the document canonically (the body of a capspec card and
// the content of a .capspec file).
func (d *Doc) Marshal() ([]byte, error) {
	if len(d.Signatures) == 0 {
		d.Signatures = nil
	}
	return canon.Marshal(d)
}

// ParseDoc decodes a document strictly (through log/canon: one encoding,
// no unknown fields), validates the spec and verifies every signature. It
// refuses more than MaxSpecSize bytes or MaxSignatures signatures.
func ParseDoc(b []byte) (*Doc, error) {
	if len(b) > MaxSpecSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadSpec, len(b), MaxSpecSize)
	}
	var d Doc
	if err := canon.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSpec, err)
	}
	if err := d.Spec.Validate(); err != nil {
		return nil, err
	}
	if d.Signatures != nil && len(d.Signatures) == 0 {
		return nil, fmt.Errorf("%w: empty signatures must be omitted", ErrBadSpec)
	}
	if len(d.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("%w: %d signatures, at most %d", ErrBadSpec, len(d.Signatures), MaxSignatures)
	}
	if _, err := d.Signers(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Sign adds sk's signature over the spec.
func (d *Doc) Sign(sk *key.Secret) error {
	sig, err := signDetached(sk, LabelSpec, canon.MustMarshal(d.Spec))
	if err != nil {
		return err
	}
	d.Signatures = append(d.Signatures, sig)
	return nil
}

// Signers verifies every signature and returns the signers in order. Two
// signatures by one key are refused.
func (d *Doc) Signers() ([]key.ID, error) {
	content := canon.MustMarshal(d.Spec)
	var out []key.ID
	seen := map[key.ID]bool{}
	for i, sig := range d.Signatures {
		id, err := verifyDetached(sig, LabelSpec, content)
		if err != nil {
			return nil, fmt.Errorf("signature %d: %w", i, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: signature %d repeats signer %s", ErrBadSignature, i, id)
		}
		seen[id] = true
		out = append(out, id)
	}
	return out, nil
}

// Notice is a signed deprecation notice for a capability: the signer (the
// spec's author or a curator) says the cap should no longer be required and
// names its replacements. Deprecation is advice: a node keeps supporting the
// cap and warns.
type Notice struct {
	Schema     string   `cbor:"schema" json:"schema"`
	Cap        string   `cbor:"cap" json:"cap"`
	ReplacedBy []string `cbor:"replaced_by,omitempty" json:"replaced_by,omitempty"`
	Reason     string   `cbor:"reason,omitempty" json:"reason,omitempty"`
	TS         int64    `cbor:"ts" json:"ts"`
	Signer     key.ID   `cbor:"-" json:"signer"`
}

// SchemaDeprecation is the notice schema.
const SchemaDeprecation = "cap-deprecation/v1"

func (n *Notice) validate() error {
	switch {
	case n.Schema != SchemaDeprecation:
		return fmt.Errorf("%w: notice schema %q, want %q", ErrBadSpec, n.Schema, SchemaDeprecation)
	case len(n.Reason) > 1024:
		return fmt.Errorf("%w: notice reason over 1024 bytes", ErrBadSpec)
	case n.TS < 0:
		return fmt.Errorf("%w: notice ts negative", ErrBadSpec)
	case n.ReplacedBy != nil && len(n.ReplacedBy) == 0:
		return fmt.Errorf("%w: empty replaced_by must be omitted", ErrBadSpec)
	case len(n.ReplacedBy) > MaxMembers:
		return fmt.Errorf("%w: replaced_by over %d", ErrBadSpec, MaxMembers)
	}
	if err := ValidID(n.Cap); err != nil {
		return fmt.Errorf("%w: notice cap: %w", ErrBadSpec, err)
	}
	return idList("replaced_by", n.ReplacedBy)
}

// SignNotice signs a deprecation notice: a tagged COSE_Sign1 with the
// notice's canonical CBOR attached as payload.
func SignNotice(sk *key.Secret, n Notice) ([]byte, error) {
	n.Schema = SchemaDeprecation
	if err := n.validate(); err != nil {
		return nil, err
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmEdDSA)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = sk.ID().Bytes()
	msg.Payload = canon.MustMarshal(n)
	if err := msg.Sign(nil, []byte(LabelNotice), signer{sk}); err != nil {
		return nil, fmt.Errorf("caps: signing notice: %w", err)
	}
	return msg.MarshalCBOR()
}

// ParseNotice decodes and verifies a signed deprecation notice.
func ParseNotice(b []byte) (Notice, error) {
	env, kid, err := parseSign1(b)
	if err != nil {
		return Notice{}, err
	}
	if len(env.Payload) == 0 {
		return Notice{}, fmt.Errorf("%w: notice has no payload", ErrBadSignature)
	}
	var n Notice
	if err := canon.Unmarshal(env.Payload, &n); err != nil {
		return Notice{}, fmt.Errorf("%w: notice: %w", ErrBadSpec, err)
	}
	if err := n.validate(); err != nil {
		return Notice{}, err
	}
	if err := verifyEnv(env, kid, LabelNotice, env.Payload); err != nil {
		return Notice{}, err
	}
	n.Signer = kid
	return n, nil
}

// Deprecate records a verified notice (from ParseNotice). trusted says
// whose notices count (typically the signers of the deprecated spec); a
// notice by anyone else is refused.
func (s *Set) Deprecate(n Notice, trusted func(key.ID) bool) error {
	if trusted != nil && !trusted(n.Signer) {
		return fmt.Errorf("%w: notice for %s signed by untrusted %s", ErrBadSignature, n.Cap, n.Signer)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.deprecated[n.Cap] = n
	return nil
}

// --- COSE plumbing (go-cose does the Sig_structure and EdDSA) ---

type sign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

type protected struct {
	Alg int64  `cbor:"1,keyasint"`
	Kid []byte `cbor:"4,keyasint"`
}

const coseSign1Head = 0xd2 // tag 18

// parseSign1 decodes a tagged COSE_Sign1 strictly: canonical, empty
// unprotected header, protected {alg: EdDSA, kid: 32-byte key}.
func parseSign1(b []byte) (*sign1, key.ID, error) {
	if len(b) < 2 || b[0] != coseSign1Head {
		return nil, key.ID{}, fmt.Errorf("%w: not a tagged COSE_Sign1", ErrBadSignature)
	}
	var env sign1
	if err := canon.Unmarshal(b[1:], &env); err != nil {
		return nil, key.ID{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if len(env.Unprotected) != 1 || env.Unprotected[0] != 0xa0 {
		return nil, key.ID{}, fmt.Errorf("%w: unprotected header must be empty", ErrBadSignature)
	}
	if len(env.Signature) != key.SignatureSize {
		return nil, key.ID{}, fmt.Errorf("%w: signature is %d bytes", ErrBadSignature, len(env.Signature))
	}
	var ph protected
	if err := canon.Unmarshal(env.Protected, &ph); err != nil {
		return nil, key.ID{}, fmt.Errorf("%w: protected header: %w", ErrBadSignature, err)
	}
	if ph.Alg != int64(cose.AlgorithmEdDSA) {
		return nil, key.ID{}, fmt.Errorf("%w: alg %d, want EdDSA (-8)", ErrBadSignature, ph.Alg)
	}
	kid, err := key.IDFromBytes(ph.Kid)
	if err != nil {
		return nil, key.ID{}, fmt.Errorf("%w: kid: %w", ErrBadSignature, err)
	}
	return &env, kid, nil
}

func verifyEnv(env *sign1, kid key.ID, label string, content []byte) error {
	msg := &cose.Sign1Message{
		Headers:   cose.Headers{RawProtected: canon.MustMarshal(env.Protected), RawUnprotected: env.Unprotected},
		Payload:   content,
		Signature: env.Signature,
	}
	if err := msg.Headers.UnmarshalFromRaw(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := msg.Verify([]byte(label), verifier{kid}); err != nil {
		return fmt.Errorf("%w: by %s", ErrBadSignature, kid)
	}
	return nil
}

func signDetached(sk *key.Secret, label string, content []byte) ([]byte, error) {
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmEdDSA)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = sk.ID().Bytes()
	msg.Payload = content
	if err := msg.Sign(nil, []byte(label), signer{sk}); err != nil {
		return nil, fmt.Errorf("caps: signing: %w", err)
	}
	msg.Payload = nil // detached: the verifier supplies the spec
	return msg.MarshalCBOR()
}

func verifyDetached(sig []byte, label string, content []byte) (key.ID, error) {
	env, kid, err := parseSign1(sig)
	if err != nil {
		return key.ID{}, err
	}
	if env.Payload != nil {
		return key.ID{}, fmt.Errorf("%w: spec signature must have a detached (nil) payload", ErrBadSignature)
	}
	if err := verifyEnv(env, kid, label, content); err != nil {
		return key.ID{}, err
	}
	return kid, nil
}

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
