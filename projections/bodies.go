package projections

import "github.com/sublog/sublog/log/kinds"

// Card bodies the projections interpret (ARCHITECTURE.md, "Bodies of the
// kinds sublog interprets"). Decoded with canon.Unmarshal: unknown fields,
// non-canonical bytes and wrong types are refused.

// IntentBody is the body of an intent card.
type IntentBody struct {
	Service string `cbor:"service"`
	Owner   []byte `cbor:"owner"`
	Changes []byte `cbor:"changes"`
}

// DelegateBody is the body of a delegate card (defined once in log/kinds).
type DelegateBody = kinds.DelegateBody

// ProfileBody is a host's capability profile.
type ProfileBody struct {
	CPU     uint64            `cbor:"cpu"`
	Memory  uint64            `cbor:"memory"`
	Disk    uint64            `cbor:"disk"`
	GPU     uint64            `cbor:"gpu"`
	Network *NetworkBody      `cbor:"network,omitempty"`
	Labels  map[string]string `cbor:"labels,omitempty"`
	// Roles are the cap IDs of the roles the node's instance runs (see
	// log/caps roles), sorted; written by `sublog up`.
	Roles []string `cbor:"roles,omitempty"`
}

// NetworkBody is the network part of a profile.
type NetworkBody struct {
	Bandwidth uint64 `cbor:"bandwidth,omitempty"`
	Egress    *bool  `cbor:"egress,omitempty"`
}

// The bodies this package shares with the executor and the revocation code
// are defined once, in log/kinds.
type (
	GrantBody   = kinds.GrantBody
	GrantLimits = kinds.Limits
	RevokeBody  = kinds.RevokeBody
	CRLBody     = kinds.CRLBody
	ObserveBody = kinds.ObserveBody
	Usage       = kinds.Usage
)

var validStates = map[string]bool{kinds.StateDeployed: true, kinds.StateRunning: true, kinds.StateSuspended: true,
	kinds.StateMoved: true, kinds.StateRemoved: true, kinds.StateFailed: true, kinds.StateStopped: true}
