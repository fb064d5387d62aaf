package discovery

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// fuzzCards are a host's published profile, a note of it and another
// identity's profile: the seeds of the profile fuzz targets.
func fuzzCards(f *testing.F) (host *key.Secret, prof, note, foreign *card.Card) {
	host, other := secret(f, "host"), secret(f, "other")
	sign := func(sk *key.Secret, seq uint64, prev card.ID, kind string, body any) *card.Card {
		c, err := card.Sign(sk, seq, prev, card.Draft{Kind: kind, TS: 1700000000, Body: body}, caps.Builtin())
		if err != nil {
			f.Fatal(err)
		}
		return c
	}
	body := map[string]any{"cpu": 1000, "memory": 1 << 30, "disk": 0, "gpu": 0}
	prof = sign(host, 1, card.ID{}, card.KindProfile, body)
	note = sign(host, 2, prof.ID(), card.KindNote, map[string]any{"text": "not a profile"})
	foreign = sign(other, 1, card.ID{}, card.KindProfile, body)
	return host, prof, note, foreign
}

// limitCounter counts what a reader hands out.
type limitCounter struct {
	r io.Reader
	n int
}

func (l *limitCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

// FuzzReadProfileReply feeds arbitrary replies to the stranger's side of
// the public-profile request: it never panics, reads at most one status,
// one length and one card, refuses with one of the documented errors, and
// accepts only the host's unsealed profile card with the asked ID.
func FuzzReadProfileReply(f *testing.F) {
	host, prof, note, foreign := fuzzCards(f)
	flipped := bytes.Clone(prof.Bytes())
	flipped[len(flipped)-1] ^= 1
	for _, seed := range [][]byte{here(prof.Bytes()), here(note.Bytes()), here(foreign.Bytes()), here(flipped),
		{profileMissing}, {7}, {profileHere, 0xff, 0xff, 0xff, 0xff}, {profileHere, 0, 0, 0, 9, 1, 2}, nil,
		append(here(prof.Bytes()), "trailing"...)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		lc := &limitCounter{r: bytes.NewReader(reply)}
		c, err := ReadProfileReply(lc, "fuzz", host.ID(), prof.ID(), caps.Builtin())
		if lc.n > 5+card.MaxSize {
			t.Fatalf("read %d bytes", lc.n)
		}
		if err != nil {
			if c != nil {
				t.Fatal("a card with an error")
			}
			if !errors.Is(err, ErrProof) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrWrongIdentity) {
				t.Fatalf("undocumented refusal: %v", err)
			}
			return
		}
		if c.ID() != prof.ID() || c.Author() != host.ID() || c.Kind() != card.KindProfile || c.PolicyRef() != nil {
			t.Fatalf("accepted %s by %s (%s)", c.ID(), c.Author(), c.Kind())
		}
		if !bytes.Equal(c.Bytes(), prof.Bytes()) {
			t.Fatal("accepted other bytes than the published card")
		}
	})
}

// FuzzCheckProfile feeds arbitrary card bytes (and IDs) to CheckProfile:
// what it accepts hashes to the asked ID, is a valid card of the wanted
// identity, a profile, unsealed, and is exactly the bytes given.
func FuzzCheckProfile(f *testing.F) {
	host, prof, note, foreign := fuzzCards(f)
	for _, c := range []*card.Card{prof, note, foreign} {
		f.Add(c.Bytes(), []byte(nil))
		id := prof.ID()
		f.Add(c.Bytes(), id[:])
	}
	f.Add([]byte{0xd2, 0x84}, []byte(nil))
	f.Fuzz(func(t *testing.T, b, idb []byte) {
		id := card.IDOf(b) // so the fuzzer reaches the decoder
		if len(idb) == len(id) {
			copy(id[:], idb)
		}
		c, err := CheckProfile(b, host.ID(), id, caps.Builtin())
		if err != nil {
			if c != nil {
				t.Fatal("a card with an error")
			}
			if !errors.Is(err, ErrProof) && !errors.Is(err, ErrWrongIdentity) {
				t.Fatalf("undocumented refusal: %v", err)
			}
			return
		}
		if card.IDOf(b) != id || c.ID() != id || c.Author() != host.ID() || c.Kind() != card.KindProfile || c.PolicyRef() != nil {
			t.Fatalf("accepted %s by %s (%s) for %s", c.ID(), c.Author(), c.Kind(), id)
		}
		if !bytes.Equal(c.Bytes(), b) {
			t.Fatal("the card is not the bytes given")
		}
	})
}
