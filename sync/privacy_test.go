package sync

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/transport"
)

// secrets lists every byte string that would identify the server or its logs.
func secretsOf(t *testing.T, st Store, server key.ID) [][]byte {
	out := [][]byte{server.Bytes()}
	for _, h := range st.Heads() {
		out = append(out, h.Author.Bytes(), h.ID[:])
		st.Scan(h.Author, 1, func(c *card.Card) error { id := c.ID(); out = append(out, id[:]); return nil })
	}
	return out
}

func leaks(got []byte, secrets [][]byte) bool {
	for _, s := range secrets {
		// A 16-byte window of any secret is enough to count as a leak.
		for i := 0; i+16 <= len(s); i += 8 {
			if bytes.Contains(got, s[i:i+16]) {
				return true
			}
		}
	}
	return false
}

// recordConn keeps a copy of everything read through it.
type recordConn struct {
	transport.Conn
	got bytes.Buffer
}

func (r *recordConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.got.Write(p[:n])
	return n, err
}

func privateServer(t *testing.T) (*MemStore, *key.Secret, Policy) {
	server, alice, bob := secret(t, "server"), secret(t, "alice"), secret(t, "bob")
	st := newStore()
	appendN(t, st, server, 10)
	appendN(t, st, alice, 10)
	appendN(t, st, bob, 10)
	// The server shares with alice (trusted) and follows bob.
	pol := NewLists([]key.ID{server.ID()}, []key.ID{alice.ID()}, []key.ID{bob.ID()})
	return st, server, pol
}

func TestPrivacyUnauthenticatedPartyLearnsNothing(t *testing.T) {
	st, server, pol := privateServer(t)
	secrets := secretsOf(t, st, server.ID())
	for _, probe := range []string{"silent", "noise", "hello then garbage"} {
		ca, cb := transport.Pipe()
		rec := &recordConn{Conn: ca}
		done := make(chan error, 1)
		go func() {
			_, err := Run(context.Background(), cb, false, st, Options{Secret: server, Rand: rand.Reader, Policy: pol, Timeout: time.Second})
			done <- err
		}()
		copied := make(chan struct{})
		go func() { io.Copy(io.Discard, rec); close(copied) }()
		switch probe {
		case "noise":
			junk := make([]byte, 4096)
			rand.Read(junk)
			ca.Write(junk)
		case "hello then garbage":
			// Message 1 of channel v2: a random "ephemeral key" and the hello.
			hello := channel.Prologue + " " + channel.CipherAESGCM
			e := make([]byte, 34, 34+len(hello))
			e[1] = byte(32 + len(hello))
			rand.Read(e[2:])
			ca.Write(append(e, hello...))
			time.Sleep(50 * time.Millisecond)
			junk := make([]byte, 200)
			rand.Read(junk)
			junk[0], junk[1] = 0, 198
			ca.Write(junk)
		}
		if err := <-done; err == nil {
			t.Fatalf("%s: server accepted an unauthenticated party", probe)
		}
		ca.Close()
		<-copied
		if leaks(rec.got.Bytes(), secrets) {
			t.Fatalf("%s: server leaked an identity or log", probe)
		}
		if probe == "hello then garbage" && rec.got.Len() != 98 {
			t.Fatalf("unauthenticated party got %d bytes, want message 2 only (98)", rec.got.Len())
		}
	}
}

func TestPrivacyUnentitledPeerLearnsNoLogs(t *testing.T) {
	st, server, pol := privateServer(t)
	secrets := secretsOf(t, st, server.ID())
	stranger := secret(t, "stranger")
	theirs := newStore()
	appendN(t, theirs, stranger, 3)

	// A server that refuses peers it does not know (as `sublog serve` does):
	// the stranger authenticates and is turned away before the server
	// proves, so it learns not even the server's identity.
	known := func(p key.ID) error {
		if !pol.(*Lists).Known(p) {
			return errors.New("unknown peer")
		}
		return nil
	}
	ca, cb := transport.Pipe()
	rec := &recordConn{Conn: ca}
	done := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), cb, false, st, Options{Secret: server, Rand: rand.Reader, Policy: pol, Accept: known, Timeout: time.Second})
		cb.Close()
		done <- err
	}()
	_, err := Run(context.Background(), rec, true, theirs, Options{Secret: stranger, Rand: rand.Reader, Policy: Everyone{}, Timeout: time.Second})
	if serr := <-done; !errors.Is(serr, channel.ErrRefused) || err == nil {
		t.Fatalf("server %v, stranger %v", serr, err)
	}
	if leaks(rec.got.Bytes(), secrets) {
		t.Fatal("refused stranger learned something")
	}

	// A server that talks to anyone shows a stranger its identity but no
	// log: assert on every decrypted byte the stranger received.
	var plain bytes.Buffer
	ca, cb = transport.Pipe()
	go func() {
		_, err := Run(context.Background(), cb, false, st, Options{Secret: server, Rand: rand.Reader, Policy: pol})
		done <- err
	}()
	stats, err := Run(context.Background(), ca, true, theirs, Options{Secret: stranger, Rand: rand.Reader, Policy: Everyone{}, Trace: &plain})
	if err != nil || <-done != nil {
		t.Fatal(err)
	}
	if stats.Received != 0 || len(theirs.Heads()) != 1 {
		t.Fatalf("stranger received logs: %+v", stats)
	}
	if leaks(plain.Bytes(), secrets[1:]) { // secrets[0] is the server's identity
		t.Fatal("unentitled peer learned a log")
	}
	if plain.Len() == 0 {
		t.Fatal("no plaintext traced")
	}
	// The server took nothing from the stranger either (not followed, not trusted).
	if _, ok := st.Head(stranger.ID()); ok {
		t.Fatal("server stored a stranger's log")
	}

	// Control: alice (trusted) does learn the server's and bob's logs.
	alice := secret(t, "alice")
	mine := newStore()
	ca, cb = transport.Pipe()
	go func() {
		_, err := Run(context.Background(), cb, false, st, Options{Secret: server, Rand: rand.Reader, Policy: pol})
		done <- err
	}()
	stats, err = Run(context.Background(), ca, true, mine, Options{Secret: alice, Rand: rand.Reader, Policy: Everyone{}})
	if err != nil || <-done != nil || stats.Received != 30 {
		t.Fatalf("trusted peer: %+v %v", stats, err)
	}
}
