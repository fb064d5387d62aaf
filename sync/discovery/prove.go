package discovery

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sublog/sublog/log/key"
)

// Prover checks that the peer listening at addr holds the secret key of
// want. Implementations must not send anything that identifies the local
// node (its identity, its logs, its addresses) before the remote has proved
// want; a failure wraps ErrProof when the remote answered as someone else.
type Prover interface {
	Prove(ctx context.Context, addr string, want key.ID) error
}

// ProverFunc adapts a function to Prover.
type ProverFunc func(ctx context.Context, addr string, want key.ID) error

// Prove calls f.
func (f ProverFunc) Prove(ctx context.Context, addr string, want key.ID) error {
	return f(ctx, addr, want)
}

// The challenge protocol (version 1), for nodes that run no sync server
// (ChannelProver covers those that do):
//
//	client → server: "SLPROVE1" ‖ nonce (32 random bytes)
//	server → client: identity (32) ‖ Ed25519 signature (64) over
//	                 LabelProof ‖ 0x00 ‖ nonce ‖ identity
//
// The client sends only the magic and a fresh random nonce: nothing about
// itself and not even which identity it wants. It shows that the holder of
// the key answers at addr now; it does not bind a later connection (the
// channel's handshake does that).
const proofMagic = "SLPROVE1"

// ChallengeProver proves identities with the challenge protocol over TCP.
type ChallengeProver struct {
	Rand    io.Reader     // nonce source (default crypto/rand)
	Timeout time.Duration // per attempt (default 5 s)
	Dialer  net.Dialer
}

func proofMessage(nonce []byte, id key.ID) []byte {
	m := append([]byte(LabelProof), 0)
	m = append(m, nonce...)
	return append(m, id.Bytes()...)
}

// Prove implements Prover.
func (p *ChallengeProver) Prove(ctx context.Context, addr string, want key.ID) error {
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
	nonce := make([]byte, 32)
	if _, err := io.ReadFull(r, nonce); err != nil {
		return fmt.Errorf("nonce: %w", err)
	}
	conn, err := p.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(append([]byte(proofMagic), nonce...)); err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	resp := make([]byte, key.IDSize+key.SignatureSize)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return fmt.Errorf("%w: %s gave no proof: %v", ErrProof, addr, err)
	}
	got, err := key.IDFromBytes(resp[:key.IDSize])
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrProof, addr, err)
	}
	if got != want {
		return fmt.Errorf("%w: %s answered as %s, not %s%w", ErrProof, addr, got, want, quiet(ErrSpoke))
	}
	if err := got.Verify(proofMessage(nonce, got), resp[key.IDSize:]); err != nil {
		return fmt.Errorf("%w: %s claimed %s but cannot sign for it%w", ErrProof, addr, want, quiet(ErrSpoke))
	}
	return nil
}

// ServeProofs answers the challenge protocol for sk on ln until ln is
// closed; it returns nil then.
func ServeProofs(ln net.Listener, sk *key.Secret) error { return ServePublic(ln, sk, nil) }

// ServePublic answers the challenge protocol for sk and public-profile
// requests for the cards profiles publishes (nil: none) on ln until ln is
// closed; it returns nil then.
func ServePublic(ln net.Listener, sk *key.Secret, profiles Profiles) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go answerProof(conn, sk, profiles)
	}
}

func answerProof(conn net.Conn, sk *key.Secret, profiles Profiles) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	// The magic first, so another protocol's client (a channel handshake
	// trying this address) is turned away at once instead of at the deadline.
	req := make([]byte, len(proofMagic)+32)
	if _, err := io.ReadFull(conn, req[:len(proofMagic)]); err != nil {
		return
	}
	if bytes.Equal(req[:len(profileMagic)], []byte(profileMagic)) {
		answerProfile(conn, profiles)
		return
	}
	if !bytes.Equal(req[:len(proofMagic)], []byte(proofMagic)) {
		return
	}
	if _, err := io.ReadFull(conn, req[len(proofMagic):]); err != nil {
		return
	}
	id := sk.ID()
	sig := sk.Sign(proofMessage(req[len(proofMagic):], id))
	conn.Write(append(id.Bytes(), sig...))
}
