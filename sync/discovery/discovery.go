// Package discovery finds where an identity can be reached, by identity
// alone: out-of-band tokens, PKARR signed packets (through HTTP relays, and a
// small relay of its own), and DNS TXT hints. Every source only yields
// candidates: a signed hint tells where the identity claims to be, and an
// address becomes a result only after the peer there has proved the wanted
// identity on connect (the Prover interface). Nothing in a hint is trusted,
// and nothing about the resolving node is sent to a candidate address before
// that proof.
//
// Formats (all versioned):
//   - token: "sublog1." + base64url (no padding) of a deterministic CBOR map
//     {1: ver, 2: identity, 3: [addr], 4: issued, 5: expires, 6: profile card
//     ID, 7: signature}; the Ed25519 signature covers LabelToken followed by
//     the map without key 7. DNS TXT hints carry the same tokens.
//   - PKARR: the relay payload sig(64) ‖ timestamp µs (8, big-endian) ‖ DNS
//     packet (≤ 1000 bytes), signature over BEP 44's "3:seqi<ts>e1:v<n>:<packet>";
//     sublog's records are TXT strings at _sublog.<z-base-32 key>.
package discovery

import "errors"

// Domain-separation labels: each signature context here has its own, so a
// signature made for one can never be replayed as another. (PKARR packets
// are signed over BEP 44's encoding, which the PKARR format fixes.)
const (
	LabelToken = "sublog/v1/discovery-token"
	LabelProof = "sublog/v1/discovery-proof"
)

// Errors. Each rejection has its own sentinel; messages wrap them with the
// detail (quoting the bad input where that helps).
var (
	// ErrMalformed: the bytes or text are not a token or packet at all, or
	// not its one valid encoding.
	ErrMalformed = errors.New("discovery: malformed")
	// ErrTooLarge: input over the format's size limit.
	ErrTooLarge = errors.New("discovery: too large")
	// ErrBadSignature: the signature does not verify under the identity the
	// token or packet names (tampered with, or signed by another key).
	ErrBadSignature = errors.New("discovery: bad signature")
	// ErrExpired: a token whose expiry has passed.
	ErrExpired = errors.New("discovery: expired")
	// ErrStale: a PKARR packet older than one already seen for the key (no rollback).
	ErrStale = errors.New("discovery: stale packet")
	// ErrWrongIdentity: a hint that names another identity than the one wanted.
	ErrWrongIdentity = errors.New("discovery: wrong identity")
	// ErrNotFound: a source has nothing for the identity.
	ErrNotFound = errors.New("discovery: not found")
	// ErrUnreachable: every source was tried and no candidate proved the identity.
	ErrUnreachable = errors.New("discovery: identity not reachable")
	// ErrProof: the peer at a candidate address did not prove the wanted identity.
	ErrProof = errors.New("discovery: identity proof failed")
)
