// Package kinds owns the Go form of the card bodies that several packages
// read the same way (ARCHITECTURE.md, "Bodies of the kinds sublog
// interprets"): observe, revoke and crl. One definition, so the executor,
// the projections and the revocation code cannot drift apart. It is a leaf:
// it imports nothing of sublog's.
package kinds

// ObserveBody is the body of an `observe` card: a host (the author) reports
// a peer's state.
type ObserveBody struct {
	Peer    []byte `cbor:"peer"`
	Bundle  []byte `cbor:"bundle,omitempty"`
	Service string `cbor:"service,omitempty"`
	Owner   []byte `cbor:"owner,omitempty"`
	State   string `cbor:"state"`
	Reason  string `cbor:"reason,omitempty"`
	Grant   []byte `cbor:"grant,omitempty"`
	To      []byte `cbor:"to,omitempty"`
	Usage   *Usage `cbor:"usage,omitempty"`
}

// Usage is what a peer used, as a host reports it.
type Usage struct {
	Memory uint64 `cbor:"memory,omitempty"`
	CPUMS  uint64 `cbor:"cpu_ms,omitempty"`
}

// Peer states written in observe cards.
const (
	StateDeployed  = "deployed"
	StateRunning   = "running"
	StateSuspended = "suspended"
	StateMoved     = "moved"
	StateRemoved   = "removed"
	StateFailed    = "failed"
	StateStopped   = "stopped"
)

// RevokeBody is the body of a `revoke` card: the author withdraws one of
// its own earlier cards, {card: bstr32, reason?: text}.
type RevokeBody struct {
	Card   []byte `cbor:"card"`
	Reason string `cbor:"reason,omitempty"`
}

// CRLBody is the body of a `crl` card: card IDs the author asks honest
// readers to stop showing, {revoked: [bstr32]}.
type CRLBody struct {
	Revoked [][]byte `cbor:"revoked"`
}
