package log

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// recorder keeps every byte drawn from crypto/rand, so the test knows the
// CEK Seal drew (the first CEKSize bytes it reads).
type recorder struct{ got []byte }

func (r *recorder) Read(p []byte) (int, error) {
	n, err := rand.Read(p)
	r.got = append(r.got, p[:n]...)
	return n, err
}

// windows reports the first 8-byte window of secret found in any file.
func windows(t *testing.T, s *Store, secret []byte) []string {
	t.Helper()
	var hits []string
	for i := 0; i+8 <= len(secret); i++ {
		files, err := s.FilesContaining(secret[i : i+8])
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			hits = append(hits, fmt.Sprintf("%s@%d", f, i))
		}
	}
	return hits
}

func TestShredRemovesKEKAndCEKBytes(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	alice, err := key.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	note := func(i int) {
		if _, err := s.Append(alice, card.Draft{Kind: "note", TS: int64(i), Body: map[string]int{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		note(i)
	}
	kek, _ := capsule.NewKEK(rand.Reader)
	if err := s.PutKEK(kek); err != nil {
		t.Fatal(err)
	}
	rid := make([]byte, 16)
	rand.Read(rid)
	rec := &recorder{}
	plain := canon.MustMarshal(map[string]string{"secret": "the launch code is 0000"})
	sealed, err := capsule.Seal(capsule.Params{Net: card.DefaultNet, RID: rid, Visibility: capsule.Node,
		KEK: kek, Body: plain}, rec)
	if err != nil {
		t.Fatal(err)
	}
	cek := bytes.Clone(rec.got[:capsule.CEKSize])
	c, err := s.Append(alice, sealed.Draft(card.Draft{Kind: "note", TS: 99, RID: rid}))
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < 150; i++ {
		note(i)
	}
	keys := capsule.Keys{Identities: []*key.Secret{alice}, KEK: s.KEK}
	o, err := capsule.OpenCard(c, keys)
	if err != nil || !bytes.Equal(o.Body, plain) {
		t.Fatalf("before shred: %v", err)
	}
	// Reopen: the KEK survives a restart (it is durable), and the scan can
	// see it on disk (so the later absence means something).
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	keys.KEK = s.KEK
	if got, err := s.KEK(kek.ID[:]); err != nil || !bytes.Equal(got, kek.Key[:]) {
		t.Fatalf("KEK after reopen: %v", err)
	}
	if hits := windows(t, s, kek.Key[:]); len(hits) == 0 {
		t.Fatal("scan does not find the live KEK: the proof below would prove nothing")
	}
	if len(windows(t, s, cek)) != 0 {
		t.Fatal("the CEK was stored in the clear")
	}

	if err := s.Shred(kek.ID[:]); err != nil {
		t.Fatalf("shred: %v", err)
	}
	if hits := windows(t, s, kek.Key[:]); len(hits) != 0 {
		t.Fatalf("KEK bytes remain after shred: %v", hits)
	}
	if hits := windows(t, s, cek); len(hits) != 0 {
		t.Fatalf("CEK bytes remain after shred: %v", hits)
	}
	if _, err := s.KEK(kek.ID[:]); !errors.Is(err, capsule.ErrShredded) {
		t.Fatalf("KEK lookup after shred: %v", err)
	}
	got, err := s.GetByID(c.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := card.Decode(got.Bytes(), s.Caps()); err != nil {
		t.Fatalf("card no longer verifies: %v", err)
	}
	if rep, err := s.Verify(nil, nil); err != nil || !rep.OK() {
		t.Fatalf("verify after shred: %v %+v", err, rep)
	}
	if _, err := capsule.OpenCard(got, keys); !errors.Is(err, capsule.ErrShredded) {
		t.Fatalf("open after shred: want ErrShredded, got %v", err)
	}
	if err := s.Shred(kek.ID[:]); err != nil {
		t.Fatalf("second shred: %v", err)
	}
	// And after another restart (WAL replay) nothing comes back.
	s.Close()
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if hits := windows(t, s, kek.Key[:]); len(hits) != 0 {
		t.Fatalf("KEK bytes after reopen: %v", hits)
	}
	if _, err := s.KEK(kek.ID[:]); !errors.Is(err, capsule.ErrShredded) {
		t.Fatalf("KEK after reopen: %v", err)
	}
}

func TestKEKLookupErrors(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.KEK(make([]byte, 16)); !errors.Is(err, capsule.ErrNoKEK) {
		t.Fatalf("unknown KEK: %v", err)
	}
	if err := s.Shred(make([]byte, 16)); !errors.Is(err, capsule.ErrNoKEK) {
		t.Fatalf("shred unknown: %v", err)
	}
	k, _ := capsule.NewKEK(rand.Reader)
	if err := s.PutKEK(k); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKEK(k); err == nil {
		t.Fatal("PutKEK twice succeeded")
	}
	ids, err := s.KEKs()
	if err != nil || len(ids) != 1 || !bytes.Equal(ids[0], k.ID[:]) {
		t.Fatalf("KEKs = %x, %v", ids, err)
	}
}

var _ io.Reader = (*recorder)(nil)

// A Verify running while a KEK is shredded holds iterators over the old
// files; Shred waits for them to be let go, and nothing of the KEK is left
// once Verify ends (a snapshot would have had compaction copy the old value
// into new files).
func TestShredWhileVerifyRuns(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kek, err := capsule.NewKEK(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutKEK(kek); err != nil {
		t.Fatal(err)
	}
	v, err := s.view(nil) // what Verify holds while it runs
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Shred(kek.ID[:]) }()
	time.Sleep(300 * time.Millisecond)
	v.close()
	if err := <-done; err != nil {
		t.Fatalf("Shred: %v", err)
	}
	if files, err := s.FilesContaining(kek.Key[:]); err != nil || len(files) > 0 {
		t.Fatalf("KEK still in %v (%v)", files, err)
	}
	if err := s.Shred(kek.ID[:]); err != nil {
		t.Fatalf("second Shred: %v", err)
	}
}
