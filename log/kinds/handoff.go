package kinds

import (
	"errors"
	"fmt"

	"github.com/sublog/sublog/log/key"
)

// KindHandoff is the kind of a move's handoff card.
const KindHandoff = "handoff"

// HandoffBody is the body of a `handoff` card: the source host (the author)
// hands peer `peer` running bundle `bundle` to host `to`, with the peer's
// state in the blob `state` (`size` bytes), encrypted to `to`. The card is
// the move: it is signed by the source, names one receiver and one state
// blob, and a receiver takes each handoff card once.
type HandoffBody struct {
	Peer   []byte `cbor:"peer"`
	Bundle []byte `cbor:"bundle"`
	To     []byte `cbor:"to"`
	State  []byte `cbor:"state"`
	Size   uint64 `cbor:"size"`
	Grant  []byte `cbor:"grant,omitempty"`
}

// ErrBadHandoff: a handoff body that breaks the format.
var ErrBadHandoff = errors.New("malformed handoff")

// Validate checks identities and hashes.
func (b *HandoffBody) Validate() error {
	for _, f := range []struct {
		name string
		v    []byte
	}{{"peer", b.Peer}, {"to", b.To}} {
		if _, err := key.IDFromBytes(f.v); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadHandoff, f.name, err)
		}
	}
	for _, f := range []struct {
		name string
		v    []byte
		opt  bool
	}{{"bundle", b.Bundle, false}, {"state", b.State, false}, {"grant", b.Grant, true}} {
		if (f.opt && f.v == nil) || len(f.v) == 32 {
			continue
		}
		return fmt.Errorf("%w: %s is %d bytes, want 32", ErrBadHandoff, f.name, len(f.v))
	}
	return nil
}
