// Package kinds owns the Go form of the card bodies that several packages
// read the same way (ARCHITECTURE.md, "Bodies of the kinds sublog
// interprets"): grant (with the limits bundle manifests share), observe,
// delegate, revoke and crl. One definition and one validation, so the executor, the
// projections and the revocation code cannot drift apart. It imports only
// log/key.
package kinds

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sublog/sublog/log/key"
)

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

// DelegateBody is the body of a delegate card: the author (an owner) lets
// Device speak for it. Upto is only meaningful with Revoked: the last
// sequence number of the device's log whose intent still counts (absent:
// none of it).
type DelegateBody struct {
	Device   []byte   `cbor:"device"`
	Services []string `cbor:"services,omitempty"`
	Until    int64    `cbor:"until,omitempty"`
	Revoked  bool     `cbor:"revoked,omitempty"`
	Upto     *uint64  `cbor:"upto,omitempty"`
}

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

// GrantBody is the body of a `grant` card: hosting consent from the card's
// author (a host) for a peer identity, a bundle hash and/or an owner's
// service, under limits, with the named host function groups.
type GrantBody struct {
	Peer    []byte   `cbor:"peer,omitempty"`
	Bundle  []byte   `cbor:"bundle,omitempty"`
	Service string   `cbor:"service,omitempty"`
	Owner   []byte   `cbor:"owner,omitempty"`
	Limits  Limits   `cbor:"limits"`
	Caps    []string `cbor:"caps,omitempty"`
	Expires int64    `cbor:"expires,omitempty"`
}

// Limits are resource limits in the names and units that grant cards and
// bundle manifests share. Zero means unstated.
type Limits struct {
	Memory     uint64 `cbor:"memory,omitempty" json:"memory,omitempty"`             // bytes of linear memory per instance
	CPUReqMS   uint64 `cbor:"cpu_req_ms,omitempty" json:"cpu_req_ms,omitempty"`     // CPU (wall) time per request, ms
	CPUTotalMS uint64 `cbor:"cpu_total_ms,omitempty" json:"cpu_total_ms,omitempty"` // CPU time over the peer's life on a host, ms
	Instances  uint64 `cbor:"instances,omitempty" json:"instances,omitempty"`       // concurrent instances
	Disk       uint64 `cbor:"disk,omitempty" json:"disk,omitempty"`                 // bytes of key-value state
}

// Bounds of the limits.
const (
	MaxMemory    = 4 << 30 // wasm32 address space
	PageSize     = 64 << 10
	MaxInstances = 64
	// MaxCPUMillis bounds the per-request and total CPU a limit may name
	// (about 49 days), so sums of them cannot overflow.
	MaxCPUMillis = 1 << 32
	// HashSize is the size of a bundle's content hash (SHA-256).
	HashSize = 32
)

// Host function groups a manifest may require and a grant may name.
const (
	CapReq    = "req"    // request/response: req_read, resp_write
	CapKV     = "kv"     // the peer's key-value state: kv_get, kv_set, kv_del
	CapLog    = "log"    // log lines, and the module's stdout/stderr
	CapClock  = "clock"  // the real wall clock and monotonic clock
	CapRandom = "random" // the host's cryptographic randomness
)

// HostCaps lists every host function group, sorted.
var HostCaps = []string{CapClock, CapKV, CapLog, CapRandom, CapReq}

// Validate checks the limits' bounds.
func (l Limits) Validate() error {
	switch {
	case l.Memory > MaxMemory:
		return fmt.Errorf("limits: memory %d over the 4 GiB of wasm32", l.Memory)
	case l.Memory != 0 && l.Memory < PageSize:
		return fmt.Errorf("limits: memory %d under one 64 KiB page", l.Memory)
	case l.CPUReqMS > MaxCPUMillis || l.CPUTotalMS > MaxCPUMillis:
		return fmt.Errorf("limits: cpu over %d ms", uint64(MaxCPUMillis))
	case l.Instances > MaxInstances:
		return fmt.Errorf("limits: %d instances, at most %d", l.Instances, MaxInstances)
	}
	return nil
}

// Validate checks what every reader of a grant agrees on: it names a peer,
// a bundle or a service; identities and the bundle hash are well formed;
// caps are known host function groups; the expiry is not negative; the
// limits are within bounds. Readers may ask more (the executor runs only
// under grants that name a peer or a bundle).
func (g *GrantBody) Validate() error {
	if g.Peer == nil && g.Bundle == nil && g.Service == "" {
		return errors.New("a grant names a peer, a bundle or a service")
	}
	if g.Peer != nil {
		if _, err := key.IDFromBytes(g.Peer); err != nil {
			return fmt.Errorf("peer: %w", err)
		}
	}
	if g.Owner != nil {
		if _, err := key.IDFromBytes(g.Owner); err != nil {
			return fmt.Errorf("owner: %w", err)
		}
	}
	if g.Bundle != nil && len(g.Bundle) != HashSize {
		return fmt.Errorf("bundle hash of %d bytes, want %d", len(g.Bundle), HashSize)
	}
	for _, c := range g.Caps {
		if !slices.Contains(HostCaps, c) {
			return fmt.Errorf("unknown cap %q (known: %s)", c, strings.Join(HostCaps, ", "))
		}
	}
	if g.Expires < 0 {
		return errors.New("negative expiry")
	}
	return g.Limits.Validate()
}

// Delegations folds one owner's delegate cards and the revoke and crl
// cards of the same owner (in any order) into the devices it delegates to:
// the one reading of "who speaks for this identity" that the trust rule
// (sync) and the executor's peer proof share. A device counts while one of
// its delegate cards is live: not withdrawn by a revoke or crl entry naming
// it, until (if set) after now; and never again once any delegate card of
// the owner revokes it (a revoked device stays revoked).
type Delegations struct {
	cards     map[[32]byte]delegation
	revoked   map[key.ID]bool
	withdrawn map[[32]byte]bool
}

type delegation struct {
	dev   key.ID
	until int64
}

// Delegate folds a delegate card (its ID and body); a malformed device is ignored.
func (d *Delegations) Delegate(id [32]byte, b DelegateBody) {
	dev, err := key.IDFromBytes(b.Device)
	if err != nil {
		return
	}
	if d.cards == nil {
		d.cards, d.revoked, d.withdrawn = map[[32]byte]delegation{}, map[key.ID]bool{}, map[[32]byte]bool{}
	}
	if b.Revoked {
		d.revoked[dev] = true
		return
	}
	d.cards[id] = delegation{dev, b.Until}
}

// Withdraw folds a revoke card or crl entry of the owner naming card id.
func (d *Delegations) Withdraw(id [32]byte) {
	if d.withdrawn == nil {
		d.cards, d.revoked, d.withdrawn = map[[32]byte]delegation{}, map[key.ID]bool{}, map[[32]byte]bool{}
	}
	d.withdrawn[id] = true
}

// Live lists the devices delegated to at now, sorted, without repeats;
// owner itself is never listed.
func (d *Delegations) Live(owner key.ID, now int64) []key.ID {
	seen := map[key.ID]bool{}
	var out []key.ID
	for id, g := range d.cards {
		if d.withdrawn[id] || d.revoked[g.dev] || (g.until != 0 && g.until <= now) || seen[g.dev] || g.dev == owner {
			continue
		}
		seen[g.dev] = true
		out = append(out, g.dev)
	}
	slices.SortFunc(out, key.ID.Compare)
	return out
}
