package kinds

import (
	"errors"
	"fmt"

	"github.com/sublog/sublog/log/key"
)

// Kinds of the reconciler's decisions (ARCHITECTURE.md, Reconciliation).
const (
	// KindPlacement: replica R of an owner's service runs on host H.
	KindPlacement = "placement"
	// KindHostLost: the author (a controller) has not heard from a host
	// within a lease.
	KindHostLost = "host-lost"
)

// PlacementBody is the body of a `placement` card, written by a
// service-control instance of the owner (the owner or a device it
// delegated for the service): replica Replica of (Owner, Service) runs on
// Host with Bundle under Host's grant Grant, optionally starting from the
// state blob State; Epoch orders the placements of one replica (the
// current one is the highest (epoch, card ID)); Supersedes names the
// placement it replaces.
type PlacementBody struct {
	Service    string `cbor:"service"`
	Owner      []byte `cbor:"owner"`
	Replica    uint64 `cbor:"replica"`
	Epoch      uint64 `cbor:"epoch"`
	Host       []byte `cbor:"host"`
	Bundle     []byte `cbor:"bundle"`
	Grant      []byte `cbor:"grant"`
	State      []byte `cbor:"state,omitempty"`
	Supersedes []byte `cbor:"supersedes,omitempty"`
}

// HostLostBody is the body of a `host-lost` card: the author (the
// observer) has heard nothing from Host since Last (Unix seconds, the
// newest card of Host it held) for longer than Lease seconds.
type HostLostBody struct {
	Host  []byte `cbor:"host"`
	Last  int64  `cbor:"last"`
	Lease int64  `cbor:"lease"`
}

// Bounds of the reconciler's bodies.
const (
	MaxReplicas   = 64      // replicas of one service (as many as a grant's instances)
	MaxServiceLen = 63      // the intent's bound on a service name
	MaxEpoch      = 1 << 53 // so epochs survive any JSON reader
	MaxLease      = 86400   // one day, in seconds
)

// ErrBadPlacement: a placement or host-lost body that breaks the format.
var ErrBadPlacement = errors.New("malformed placement")

// Validate checks a placement body's identities, hashes and bounds.
func (b *PlacementBody) Validate() error {
	if b.Service == "" || len(b.Service) > MaxServiceLen {
		return fmt.Errorf("%w: service %q (1..%d bytes)", ErrBadPlacement, b.Service, MaxServiceLen)
	}
	for _, f := range []struct {
		name string
		v    []byte
	}{{"owner", b.Owner}, {"host", b.Host}} {
		if _, err := key.IDFromBytes(f.v); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadPlacement, f.name, err)
		}
	}
	for _, f := range []struct {
		name string
		v    []byte
		opt  bool
	}{{"bundle", b.Bundle, false}, {"grant", b.Grant, false}, {"state", b.State, true}, {"supersedes", b.Supersedes, true}} {
		if (f.opt && f.v == nil) || len(f.v) == HashSize {
			continue
		}
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrBadPlacement, f.name, len(f.v), HashSize)
	}
	if b.Replica >= MaxReplicas {
		return fmt.Errorf("%w: replica %d, at most %d", ErrBadPlacement, b.Replica, MaxReplicas-1)
	}
	if b.Epoch == 0 || b.Epoch > MaxEpoch {
		return fmt.Errorf("%w: epoch %d (1..2^53)", ErrBadPlacement, b.Epoch)
	}
	return nil
}

// Validate checks a host-lost body.
func (b *HostLostBody) Validate() error {
	if _, err := key.IDFromBytes(b.Host); err != nil {
		return fmt.Errorf("%w: host-lost host: %v", ErrBadPlacement, err)
	}
	if b.Last < 0 {
		return fmt.Errorf("%w: host-lost: negative last-heard time", ErrBadPlacement)
	}
	if b.Lease <= 0 || b.Lease > MaxLease {
		return fmt.Errorf("%w: host-lost: lease %d s (1..%d)", ErrBadPlacement, b.Lease, MaxLease)
	}
	return nil
}

// Subject is what a grant is asked to admit: a peer and/or bundle to run,
// and, when it runs as a replica of an owner's service (a plan or a
// placement), that service and owner. Empty fields are unknown.
type Subject struct {
	Peer    []byte
	Bundle  []byte
	Service string
	Owner   []byte
}

// Admits is the one definition of hosting consent that the plan, the
// reconciler's placements and the executor share: a grant admits a
// subject when every target it names matches the subject (its peer, its
// bundle hash, its service and, if it names one, the service's owner).
// A grant naming a service therefore admits only a subject that runs as
// that service (a placement or plan of it), never a bare deploy; a grant
// naming only a peer or a bundle admits that code whatever service it is
// placed as. It returns "" when admitted, else why not. Liveness (revoke,
// expiry) and limits are judged by each reader on top of this.
func (g *GrantBody) Admits(s Subject) string {
	if g.Peer == nil && g.Bundle == nil && g.Service == "" {
		return "the grant names no peer, bundle or service"
	}
	if g.Peer != nil && (s.Peer == nil || string(g.Peer) != string(s.Peer)) {
		return "the grant is for another peer"
	}
	if g.Bundle != nil && (s.Bundle == nil || string(g.Bundle) != string(s.Bundle)) {
		return "the grant is for another bundle"
	}
	if g.Service != "" {
		if s.Service == "" {
			return "the grant is for service " + g.Service + ", and this does not run as a service"
		}
		if g.Service != s.Service {
			return "the grant is for service " + g.Service
		}
		if g.Owner != nil && string(g.Owner) != string(s.Owner) {
			return "the grant is for another owner's service " + g.Service
		}
	}
	return ""
}
