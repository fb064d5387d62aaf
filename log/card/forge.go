package card

import (
	"io"

	"github.com/veraison/go-cose"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

// SignPayload signs arbitrary payload bytes as a COSE_Sign1 card envelope with
// kid in the protected header and algorithm alg (EdDSA is -8). It exists to
// build negative test vectors and to test other implementations: its output
// is a validly signed message around whatever payload it is given, so
// Decode must still judge it. Never use it to make real cards; use Sign.
func SignPayload(sk *key.Secret, kid []byte, alg int64, payload []byte) ([]byte, error) {
	msg := cose.NewSign1Message()
	msg.Headers.Protected[cose.HeaderLabelAlgorithm] = cose.Algorithm(alg)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = kid
	msg.Payload = payload
	// The signature is always Ed25519; the header may claim another algorithm
	// so that a vector can fail on the header alone.
	if err := msg.Sign(nil, []byte(key.LabelCard), forgeSigner{sk, cose.Algorithm(alg)}); err != nil {
		return nil, err
	}
	return msg.MarshalCBOR()
}

// Payload returns the card's signed payload bytes (do not modify).
func (c *Card) Payload() []byte { return c.payload }

type forgeSigner struct {
	sk  *key.Secret
	alg cose.Algorithm
}

func (f forgeSigner) Algorithm() cose.Algorithm { return f.alg }
func (f forgeSigner) Sign(_ io.Reader, content []byte) ([]byte, error) {
	return f.sk.Sign(content), nil
}

// SignUnchecked builds the card Sign would build from d at (seq, prev) but
// skips every check of the payload (limits, floats, fields) and signs
// whatever comes out. It reproduces cards that earlier versions signed and
// the decoder now refuses (a body nested past MaxDepth, a NaN), for tests
// of the readers that must skip them. Never use it to make real cards.
func SignUnchecked(sk *key.Secret, seq uint64, prev ID, d Draft) ([]byte, error) {
	p := payload{Ver: Version, Type: TypeCard, Net: d.Net, RID: d.RID, TS: d.TS, Reqs: d.Reqs,
		Author: sk.ID().Bytes(), Seq: seq, Kind: d.Kind, ContentURI: d.ContentURI}
	if p.Net == "" {
		p.Net = DefaultNet
	}
	if p.RID == nil {
		p.RID = DeriveRID(sk.ID(), seq, prev)
	}
	if seq > 1 {
		p.Prev = prev[:]
	}
	p.Body = d.RawBody
	if d.Body != nil {
		b, err := canon.Marshal(d.Body)
		if err != nil {
			return nil, err
		}
		p.Body = b
	}
	pb, err := canon.Marshal(p)
	if err != nil {
		return nil, err
	}
	return SignPayload(sk, sk.ID().Bytes(), -8, pb)
}
