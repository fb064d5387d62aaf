package bundle

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

func secret(t testing.TB, name string) *key.Secret {
	sk, err := key.FromSeed(key.DeriveSeed([]byte("bundle-test"), name))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func sample(t testing.TB, sk *key.Secret, rcpt *key.ID, n int) []byte {
	var prev card.ID
	m := &proto.Msg{T: proto.TCards, Author: sk.ID().Bytes(), From: 1}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		c, err := card.Sign(sk, seq, prev, card.Draft{Kind: "note", TS: 1}, caps.Builtin())
		if err != nil {
			t.Fatal(err)
		}
		prev = c.ID()
		m.Cards = append(m.Cards, c.Bytes())
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, sk, WriterOptions{Created: 7, Recipient: rcpt, Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Msg(m); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTripPlainAndEncrypted(t *testing.T) {
	carol, alice := secret(t, "carol"), secret(t, "alice")
	aid := alice.ID()
	for _, rcpt := range []*key.ID{nil, &aid} {
		b := sample(t, carol, rcpt, 5)
		r, err := Read(bytes.NewReader(b), alice)
		if err != nil || r.Exporter != carol.ID() || r.Cards() != 5 || r.Header.Created != 7 {
			t.Fatalf("rcpt %v: %v", rcpt, err)
		}
	}
}

func TestBigEncryptedBundleSpansChunks(t *testing.T) {
	carol, alice := secret(t, "carol"), secret(t, "alice")
	aid := alice.ID()
	b := sample(t, carol, &aid, 600) // well over one 64 KiB chunk
	if r, err := Read(bytes.NewReader(b), alice); err != nil || r.Cards() != 600 {
		t.Fatal(err)
	}
	// Drop a whole middle chunk: HPKE's sequence numbers refuse the rest.
	hdr := len(MagicEncrypted) + 64
	chunk := 4 + ChunkSize + 16
	cut := append(append([]byte(nil), b[:hdr+chunk]...), b[hdr+2*chunk:]...)
	if _, err := Read(bytes.NewReader(cut), alice); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("dropped chunk: %v", err)
	}
	// Drop the last chunk: the stream ends without the final flag.
	if _, err := Read(bytes.NewReader(b[:hdr+chunk]), alice); !errors.Is(err, ErrTruncated) {
		t.Fatalf("no last chunk: %v", err)
	}
}

func TestX25519FormsAgree(t *testing.T) {
	// The X25519 public key derived from the identity matches the one
	// derived from the secret.
	alice := secret(t, "alice")
	pub, err := x25519Public(alice.ID())
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x25519Secret(alice)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.Public().Equal(pub) {
		t.Fatal("X25519 forms of one identity disagree")
	}
}

func FuzzRead(f *testing.F) {
	carol, alice := secret(f, "carol"), secret(f, "alice")
	aid := alice.ID()
	f.Add(sample(f, carol, nil, 2))
	f.Add(sample(f, carol, &aid, 2))
	f.Add([]byte(MagicPlain))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Read(bytes.NewReader(b), alice)
		if err != nil {
			return
		}
		// Whatever is accepted carries a valid exporter signature; the
		// only one fuzzing can reach is carol's.
		if r.Exporter != carol.ID() {
			t.Fatalf("accepted a bundle signed by %s", r.Exporter)
		}
	})
}
