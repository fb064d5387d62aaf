package discovery

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func signed(t *testing.T, sk *key.Secret, seq uint64, prev card.ID, kind string, body any) *card.Card {
	t.Helper()
	c, err := card.Sign(sk, seq, prev, card.Draft{Kind: kind, TS: 1700000000, Body: body}, caps.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serveOne answers one connection with raw (after reading the request).
func serveRaw(t *testing.T, raw []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.ReadFull(c, make([]byte, len(profileMagic)+32))
			c.Write(raw)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func here(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32([]byte{profileHere}, uint32(len(b))), b...)
}

// A stranger fetches a host's public profile by card ID and checks it
// against the host's identity; the host serves only what it publishes.
func TestFetchProfile(t *testing.T) {
	host, other := secret(t, "host"), secret(t, "other")
	prof := signed(t, host, 1, card.ID{}, card.KindProfile, map[string]any{"cpu": 1000, "memory": 1 << 30, "disk": 0, "gpu": 0})
	note := signed(t, host, 2, prof.ID(), card.KindNote, map[string]any{"text": "private thoughts"})
	published := map[card.ID][]byte{prof.ID(): prof.Bytes()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go ServePublic(ln, host, func(id card.ID) ([]byte, bool) { b, ok := published[id]; return b, ok })
	addr := ln.Addr().String()
	ctx := context.Background()
	c, err := FetchProfile(ctx, addr, host.ID(), prof.ID(), caps.Builtin())
	if err != nil || !bytes.Equal(c.Bytes(), prof.Bytes()) {
		t.Fatalf("%v", err)
	}
	// What the host did not publish is not served, and asking says nothing more.
	if _, err := FetchProfile(ctx, addr, host.ID(), note.ID(), caps.Builtin()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unpublished card: %v", err)
	}
	// The same listener still answers identity challenges.
	if err := (&ChallengeProver{}).Prove(ctx, addr, host.ID()); err != nil {
		t.Fatal(err)
	}
	// Asking for the profile as another identity's fails the identity check.
	if _, err := FetchProfile(ctx, addr, other.ID(), prof.ID(), caps.Builtin()); !errors.Is(err, ErrWrongIdentity) {
		t.Fatalf("wrong identity: %v", err)
	}
}

// A lying server: every bad answer is refused with its reason.
func TestFetchProfileRefusesLies(t *testing.T) {
	host, mallory := secret(t, "host"), secret(t, "mallory")
	prof := signed(t, host, 1, card.ID{}, card.KindProfile, map[string]any{"cpu": 1000})
	fake := signed(t, mallory, 1, card.ID{}, card.KindProfile, map[string]any{"cpu": 64000})
	note := signed(t, host, 1, card.ID{}, card.KindNote, map[string]any{"text": "x"})
	altered := bytes.Clone(prof.Bytes())
	altered[len(altered)-1] ^= 1
	huge := binary.BigEndian.AppendUint32([]byte{profileHere}, card.MaxSize+1)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ask  card.ID
		raw  []byte
		want error
	}{
		{"another card than asked", prof.ID(), here(fake.Bytes()), ErrProof},
		{"altered signature", card.IDOf(altered), here(altered), ErrProof},
		{"a profile by someone else", fake.ID(), here(fake.Bytes()), ErrWrongIdentity},
		{"not a profile", note.ID(), here(note.Bytes()), ErrProof},
		{"over a card's size", prof.ID(), huge, ErrTooLarge},
		{"truncated", prof.ID(), here(prof.Bytes())[:40], ErrProof},
		{"bad status", prof.ID(), []byte{7}, ErrProof},
		{"silence", prof.ID(), nil, ErrProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveRaw(t, tc.raw)
			if _, err := FetchProfile(ctx, addr, host.ID(), tc.ask, caps.Builtin()); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
