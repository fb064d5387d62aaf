package capsule

import (
	"fmt"
	"io"

	"github.com/sublog/sublog/log/key"
)

// SealTo encrypts plaintext to one identity with HPKE base mode (the suite
// of the wraps: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305)
// under a domain-separation info string, binding aad. The result is the
// 32-byte encapsulation followed by the ciphertext. For bytes that travel
// outside a card to one reader (a moved peer's state).
func SealTo(to key.ID, info string, plaintext, aad []byte, rand io.Reader) ([]byte, error) {
	return hpkeWrap(to, info, plaintext, aad, rand)
}

// OpenSealed decrypts what SealTo made for sk's identity with the same info
// and aad; anything else (another recipient, altered bytes or aad) is
// ErrNotRecipient.
func OpenSealed(sk *key.Secret, info string, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < encSize+tagSize {
		return nil, fmt.Errorf("%w: sealed message of %d bytes", ErrMalformed, len(sealed))
	}
	rcv, err := suite.NewReceiver(hpkePrivate(sk), []byte(info))
	if err != nil {
		return nil, fmt.Errorf("capsule: hpke: %w", err)
	}
	op, err := rcv.Setup(sealed[:encSize])
	if err != nil {
		return nil, ErrNotRecipient
	}
	pt, err := op.Open(sealed[encSize:], aad)
	if err != nil {
		return nil, ErrNotRecipient
	}
	return pt, nil
}
