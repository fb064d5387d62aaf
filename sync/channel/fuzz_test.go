package channel

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"
)

type fuzzRW struct {
	r io.Reader
}

func (f fuzzRW) Read(p []byte) (int, error)  { return f.r.Read(p) }
func (f fuzzRW) Write(p []byte) (int, error) { return len(p), nil }

// FuzzHandshake feeds arbitrary bytes to both sides of the handshake: it
// must fail cleanly (it cannot succeed without the keys) and never panic.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte{0, 32, 1, 2, 3})
	f.Add(append([]byte{0, 32}, make([]byte, 32)...))
	f.Add([]byte{0xff, 0xff})
	sk := secret(f, "fuzz")
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx := context.Background()
		if _, err := Server(ctx, fuzzRW{bytes.NewReader(b)}, Config{Secret: sk, Rand: rand.Reader}); err == nil {
			t.Fatal("handshake succeeded on arbitrary bytes")
		}
		if _, err := Client(ctx, fuzzRW{bytes.NewReader(b)}, Config{Secret: sk, Rand: rand.Reader}); err == nil {
			t.Fatal("handshake succeeded on arbitrary bytes")
		}
	})
}

// FuzzProof decodes identity proofs.
func FuzzProof(f *testing.F) {
	sk := secret(f, "fuzz")
	h := make([]byte, 32)
	f.Add(makeProof(sk, roleI, h))
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := checkProof(b, roleI, h)
		if err == nil && id != sk.ID() {
			t.Fatalf("a proof verified for %s", id)
		}
	})
}

// FuzzFrames feeds arbitrary frames to an established channel's reader.
func FuzzFrames(f *testing.F) {
	f.Add([]byte{0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte{0xff, 0xff, 0})
	alice, bob := secret(f, "alice"), secret(f, "bob")
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &Conn{rw: fuzzRW{bytes.NewReader(b)}, rfrm: make([]byte, MaxFrame), pbuf: make([]byte, 0, MaxFrame)}
		// Any keys will do: the point is that nothing but correctly sealed
		// frames gets through.
		cs, _ := suite.GenerateKeypair(rand.Reader)
		_ = cs
		_, _ = alice, bob
		c.recv = freshCipher()
		buf := make([]byte, 1024)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			t.Fatal("an unsealed frame was accepted")
		}
	})
}
