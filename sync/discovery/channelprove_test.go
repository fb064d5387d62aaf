package discovery

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	stdsync "sync"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/channel"
)

// startChannelServer answers the sync channel handshake as sk on loopback
// (as `sublog serve` does); accept decides which initiators it serves. It
// records the identities initiators proved.
func startChannelServer(t testing.TB, sk *key.Secret, accept func(key.ID) error) (string, func() []key.ID) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu stdsync.Mutex
	var seen []key.ID
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				ch, err := channel.Server(ctx, c, channel.Config{Secret: sk, Rand: rand.Reader, Accept: func(p key.ID) error {
					mu.Lock()
					seen = append(seen, p)
					mu.Unlock()
					if accept != nil {
						return accept(p)
					}
					return nil
				}})
				if err == nil {
					ch.Close()
				}
			}()
		}
	}()
	return ln.Addr().String(), func() []key.ID { mu.Lock(); defer mu.Unlock(); return append([]key.ID(nil), seen...) }
}

func TestChannelProver(t *testing.T) {
	ctx := context.Background()
	alice, mallory, bob := secret(t, "alice"), secret(t, "mallory"), secret(t, "bob")
	open, seen := startChannelServer(t, alice, nil)
	impostor, _ := startChannelServer(t, mallory, nil)
	onlyBob, _ := startChannelServer(t, alice, func(p key.ID) error {
		if p != bob.ID() {
			return fmt.Errorf("unknown peer %s", p)
		}
		return nil
	})
	p := &ChannelProver{}
	if err := p.Prove(ctx, open, alice.ID()); err != nil {
		t.Fatal(err)
	}
	if err := p.Prove(ctx, open, alice.ID()); err != nil {
		t.Fatal(err)
	}
	// The throwaway identities reveal nothing: fresh each time, not bob's or alice's.
	ids := seen()
	if len(ids) != 2 || ids[0] == ids[1] || ids[0] == bob.ID() || ids[0] == alice.ID() {
		t.Fatalf("initiator identities %v", ids)
	}
	if err := p.Prove(ctx, impostor, alice.ID()); !errors.Is(err, ErrProof) {
		t.Fatalf("impostor: %v", err)
	}
	if err := p.Prove(ctx, onlyBob, alice.ID()); !errors.Is(err, ErrProof) {
		t.Fatalf("restrictive peer accepted a throwaway identity: %v", err)
	}
	// With a real identity the restrictive peer answers.
	if err := (&ChannelProver{Identity: bob}).Prove(ctx, onlyBob, alice.ID()); err != nil {
		t.Fatal(err)
	}
	if err := p.Prove(ctx, "127.0.0.1:1", alice.ID()); err == nil {
		t.Fatal("nobody listening, proof passed")
	}

	// AnyOf: the channel first, then the challenge protocol.
	chal := startProver(t, alice)
	both := AnyOf{p, &ChallengeProver{}}
	for _, addr := range []string{open, chal} {
		if err := both.Prove(ctx, addr, alice.ID()); err != nil {
			t.Fatalf("AnyOf at %s: %v", addr, err)
		}
	}
	// A peer that answered in the channel protocol (as someone else, or
	// refusing the throwaway) is not asked again in another protocol.
	for _, addr := range []string{impostor, onlyBob} {
		calls := 0
		counted := AnyOf{p, ProverFunc(func(context.Context, string, key.ID) error { calls++; return ErrProof })}
		if err := counted.Prove(ctx, addr, alice.ID()); !errors.Is(err, ErrProof) || !errors.Is(err, ErrSpoke) || calls != 0 {
			t.Fatalf("AnyOf at %s: %v, second prover called %d times", addr, err, calls)
		}
	}

	// In a resolution: a hint to the impostor fails, the next one proves.
	now := time.Now()
	r := &Resolver{Tokens: []string{mustToken(t, alice, now, impostor, open).String()}, Prover: p}
	res, err := r.Resolve(ctx, alice.ID())
	if err != nil || res.Addr != open || res.Attempts[0].Candidates[0].Outcome != Rejected {
		t.Fatalf("%v %+v", err, res)
	}
}
