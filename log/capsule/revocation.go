package capsule

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/kinds"
)

// Bodies of the revocation kinds (ARCHITECTURE.md, "Bodies of the kinds").
// Only a card's own author can revoke it or list it in a CRL; readers check
// that (see Revoked).

// ErrBadRevocation: a revoke or crl body that breaks its schema.
var ErrBadRevocation = errors.New("capsule: bad revocation body")

// MaxCRL bounds the IDs of one crl card.
const MaxCRL = 1024

// RevokeBody and CRLBody are defined once, in log/kinds.
type (
	RevokeBody = kinds.RevokeBody
	CRLBody    = kinds.CRLBody
)

// DecodeRevoke decodes a revoke card's body strictly.
func DecodeRevoke(c *card.Card) (*RevokeBody, error) {
	if c.Kind() != card.KindRevoke {
		return nil, fmt.Errorf("%w: kind %q", ErrBadRevocation, c.Kind())
	}
	var b RevokeBody
	if err := c.DecodeBody(&b); err != nil {
		return nil, err
	}
	if len(b.Card) != sha256.Size {
		return nil, fmt.Errorf("%w: card is %d bytes, want 32", ErrBadRevocation, len(b.Card))
	}
	if len(b.Reason) > 1024 {
		return nil, fmt.Errorf("%w: reason over 1024 bytes", ErrBadRevocation)
	}
	return &b, nil
}

// DecodeCRL decodes a crl card's body strictly: 1..MaxCRL distinct 32-byte
// card IDs.
func DecodeCRL(c *card.Card) (*CRLBody, error) {
	if c.Kind() != card.KindCRL {
		return nil, fmt.Errorf("%w: kind %q", ErrBadRevocation, c.Kind())
	}
	var b CRLBody
	if err := c.DecodeBody(&b); err != nil {
		return nil, err
	}
	return &b, validateCRL(&b)
}

func validateCRL(b *CRLBody) error {
	if len(b.Revoked) == 0 || len(b.Revoked) > MaxCRL {
		return fmt.Errorf("%w: %d revoked IDs, want 1..%d", ErrBadRevocation, len(b.Revoked), MaxCRL)
	}
	seen := map[string]bool{}
	for i, r := range b.Revoked {
		if len(r) != sha256.Size {
			return fmt.Errorf("%w: revoked[%d] is %d bytes, want 32", ErrBadRevocation, i, len(r))
		}
		if seen[string(r)] {
			return fmt.Errorf("%w: revoked[%d] repeats an ID", ErrBadRevocation, i)
		}
		seen[string(r)] = true
	}
	return nil
}

// MarshalCRL encodes a crl body after checking it.
func MarshalCRL(ids []card.ID) ([]byte, error) {
	b := CRLBody{}
	for _, id := range ids {
		b.Revoked = append(b.Revoked, append([]byte(nil), id[:]...))
	}
	if err := validateCRL(&b); err != nil {
		return nil, err
	}
	return canon.Marshal(b)
}

// Revoked reports whether a later card of target's own author withdraws it:
// a revoke card naming it (kind "revoke") or a crl card listing it (kind
// "crl", which wins: readers stop showing the card). later are cards of the
// same log after target, in chain order; others' cards are ignored.
func Revoked(target *card.Card, later []*card.Card) (by card.ID, kind string) {
	id := target.ID()
	for _, x := range later {
		if x.Author() != target.Author() || x.Seq() <= target.Seq() {
			continue
		}
		switch x.Kind() {
		case card.KindRevoke:
			if b, err := DecodeRevoke(x); err == nil && string(b.Card) == string(id[:]) && kind == "" {
				by, kind = x.ID(), "revoke"
			}
		case card.KindCRL:
			if b, err := DecodeCRL(x); err == nil {
				for _, r := range b.Revoked {
					if string(r) == string(id[:]) {
						return x.ID(), "crl"
					}
				}
			}
		}
	}
	return by, kind
}
