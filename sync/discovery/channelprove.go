package discovery

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/transport"
)

// ChannelProver proves identities with the authenticated channel that sync
// runs in (sync/channel, Noise XX with identity proofs, as `sublog serve`
// answers it): it dials addr over TCP, runs the initiator's handshake, and
// accepts the responder only if it proves want; then it closes the channel.
//
// In that handshake the initiator proves its identity first (encrypted to
// whoever completes the Noise exchange). So by default the prover uses a
// throwaway identity made for this one attempt: nothing about the local node
// reaches the candidate address, but a peer that serves only identities it
// knows refuses the throwaway and the proof fails. Setting Identity uses a
// real identity instead, which such peers accept, at the price of showing
// that identity to whoever answers at the address, impostor or not.
type ChannelProver struct {
	Identity *key.Secret   // nil: a fresh throwaway identity per attempt
	Rand     io.Reader     // default crypto/rand
	Timeout  time.Duration // per attempt (default 5 s)
}

// Prove implements Prover.
func (p *ChannelProver) Prove(ctx context.Context, addr string, want key.ID) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := p.Rand
	if r == nil {
		r = rand.Reader
	}
	sk := p.Identity
	if sk == nil {
		var err error
		if sk, err = key.Generate(r); err != nil {
			return err
		}
	}
	raw, err := transport.TCP{}.Dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer raw.Close()
	conn := &countingConn{Conn: raw}
	var answered key.ID
	ch, err := channel.Client(ctx, conn, channel.Config{Secret: sk, Rand: r, Accept: func(peer key.ID) error {
		answered = peer
		if peer != want {
			return fmt.Errorf("answered as %s, not %s", peer, want)
		}
		return nil
	}})
	if err != nil {
		// More than a frame header back means the peer speaks the channel
		// protocol (it sent handshake message 2): other protocols need not
		// be tried at this address.
		spoke := error(nil)
		if conn.n.Load() > 2 {
			spoke = ErrSpoke
		}
		switch {
		case !answered.IsZero() && answered != want:
			return fmt.Errorf("%w: %s answered as %s, not %s%w", ErrProof, addr, answered, want, quiet(ErrSpoke))
		case errors.Is(err, channel.ErrBadProof):
			return fmt.Errorf("%w: %s: %v%w", ErrProof, addr, err, quiet(ErrSpoke))
		case p.Identity == nil:
			return fmt.Errorf("%w: %s did not complete the channel handshake (%v); a peer that serves only identities it knows refuses a throwaway one%w", ErrProof, addr, err, quiet(spoke))
		default:
			return fmt.Errorf("%w: %s did not complete the channel handshake: %v%w", ErrProof, addr, err, quiet(spoke))
		}
	}
	return ch.Close()
}

// countingConn counts the bytes read from the peer.
type countingConn struct {
	transport.Conn
	n atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// quietErr wraps an error for errors.Is without adding to the message.
type quietErr struct{ err error }

func (q quietErr) Error() string { return "" }
func (q quietErr) Unwrap() error { return q.err }

func quiet(err error) error {
	if err == nil {
		return quietErr{}
	}
	return quietErr{err}
}

// ErrSpoke marks a proof failure from a peer that did answer in the
// prover's protocol (so trying another protocol at that address is useless).
var ErrSpoke = errors.New("discovery: the peer answered in this protocol")

// AnyOf proves with each prover in turn until one succeeds (for example the
// channel handshake, then the challenge protocol, for peers that answer
// only one of them). Its error joins every prover's.
type AnyOf []Prover

// Prove implements Prover.
func (ps AnyOf) Prove(ctx context.Context, addr string, want key.ID) error {
	var errs []error
	for _, p := range ps {
		err := p.Prove(ctx, addr, want)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || errors.Is(err, ErrSpoke) {
			break // the peer answered in that protocol: the others would not help
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w: no prover", ErrProof)
	}
	return errors.Join(errs...)
}
