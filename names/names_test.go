package names

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func ids(t *testing.T, n int) []key.ID {
	var out []key.ID
	for i := range n {
		sk, err := key.FromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sk.ID())
	}
	return out
}

// twinOf is a valid identity sharing id's first 5 bytes (8 text characters).
func twinOf(t *testing.T, id key.ID) key.ID {
	b := id.Bytes()
	for i := range 1000 {
		c := append([]byte(nil), b...)
		h := sha256.Sum256([]byte(fmt.Sprint(i)))
		copy(c[5:], h[:27])
		c[31] &= 0x7f
		if x, err := key.IDFromBytes(c); err == nil && x != id {
			return x
		}
	}
	t.Fatal("no twin")
	return key.ID{}
}

func TestIdentityForms(t *testing.T) {
	is := ids(t, 3)
	a, b, c := is[0], is[1], is[2]
	twin := twinOf(t, a)
	unknown := ids(t, 4)[3]
	calls := 0
	r := &Resolver{Identities: func() []Known {
		calls++
		return []Known{
			{ID: a, Names: []string{"laptop2"}, Where: "petname"},
			{ID: b, Names: []string{"default"}, Where: "identity of this home"},
			{ID: c, Names: []string{"counter"}, Where: "peer on this host"},
			{ID: c, Names: []string{"dup"}},
			{ID: b, Names: []string{"dup"}},
			{ID: twin, Where: "trusted"},
		}
	}}
	good := []struct {
		in   string
		want key.ID
	}{
		{a.String(), a}, {unknown.String(), unknown}, // a full form needs no candidate
		{"laptop2", a}, {"default", b}, {"counter", c},
		{b.String()[:8], b}, {b.Short(), b}, {c.String()[:30], c},
	}
	for _, g := range good {
		got, err := r.Identity(g.in)
		if err != nil || got != g.want {
			t.Errorf("Identity(%q) = %v, %v; want %v", g.in, got, err, g.want)
		}
	}
	bad := []struct {
		in   string
		want error
		msg  string
	}{
		{a.String()[:8], ErrAmbiguous, twin.String()},
		{"dup", ErrAmbiguous, "dup"},
		{a.String()[:7], ErrMalformed, "too short"},
		{"Laptop2", ErrMalformed, "neither"},
		{"", ErrMalformed, "neither"},
		{strings.Repeat("y", 53), ErrMalformed, "not a valid identity"},
		{unknown.String()[:20], ErrUnknown, "no identity known"},
		{a.String()[:51] + "9", ErrMalformed, ""}, // 52 characters that are no identity
	}
	for _, x := range bad {
		_, err := r.Identity(x.in)
		if !errors.Is(err, x.want) || !strings.Contains(err.Error(), x.msg) {
			t.Errorf("Identity(%q) = %v; want %v containing %q", x.in, err, x.want, x.msg)
		}
	}
	var amb *AmbiguousError
	if _, err := r.Identity(a.String()[:8]); !errors.As(err, &amb) || len(amb.Candidates) != 2 ||
		!strings.Contains(amb.Candidates[0]+amb.Candidates[1], "laptop2") {
		t.Errorf("ambiguity lists %v", amb)
	}
	// A name wins over a prefix it also is; sources are read once per call.
	calls = 0
	r.Identity("laptop2")
	if calls != 1 {
		t.Errorf("Identities called %d times", calls)
	}
	r.Identity(a.String())
	if calls != 1 {
		t.Error("a full form consulted the candidates")
	}
}

func TestCardForms(t *testing.T) {
	x := card.IDOf([]byte("one"))
	y := card.IDOf([]byte("two"))
	is := ids(t, 1)
	at := map[string]card.ID{is[0].String() + "@3": x}
	var asked []string
	r := &Resolver{
		Identities: func() []Known { return []Known{{ID: is[0], Names: []string{"me"}}} },
		CardPrefix: func(p string, max int) ([]card.ID, error) {
			asked = append(asked, p)
			var out []card.ID
			for _, id := range []card.ID{x, y} {
				if strings.HasPrefix(strings.TrimPrefix(id.String(), "sha256:"), p) {
					out = append(out, id)
				}
			}
			if p == "00000000" { // ambiguous on purpose
				out = []card.ID{x, y}
			}
			return out, nil
		},
		CardAt: func(a key.ID, seq uint64) (card.ID, error) {
			if id, ok := at[fmt.Sprintf("%s@%d", a, seq)]; ok {
				return id, nil
			}
			return card.ID{}, errors.New("not found")
		},
	}
	xh := strings.TrimPrefix(x.String(), "sha256:")
	for _, in := range []string{x.String(), xh, xh[:8], "sha256:" + xh[:11], x.Short(), "me@3", is[0].String() + "@3", is[0].Short() + "@3"} {
		if got, err := r.Card(in); err != nil || got != x {
			t.Errorf("Card(%q) = %v, %v", in, got, err)
		}
	}
	for _, b := range []struct {
		in   string
		want error
	}{
		{"00000000", ErrAmbiguous}, {xh[:7], ErrMalformed}, {"sha256:", ErrMalformed}, {"xyz12345", ErrMalformed},
		{xh + "0", ErrMalformed}, {"me@0", ErrMalformed}, {"me@", ErrMalformed}, {"me@4", ErrUnknown},
		{"nobody@1", ErrMalformed}, {"ffffffffff", ErrUnknown}, {"ABCDEF12", ErrMalformed},
	} {
		if _, err := r.Card(b.in); !errors.Is(err, b.want) {
			t.Errorf("Card(%q) = %v; want %v", b.in, err, b.want)
		}
	}
	// No source: a prefix is unknown, never a panic.
	if _, err := (&Resolver{}).Card(xh[:8]); !errors.Is(err, ErrUnknown) {
		t.Errorf("no source: %v", err)
	}
	if _, err := (&Resolver{}).Identity("laptop2"); !errors.Is(err, ErrMalformed) {
		t.Errorf("no source: %v", err)
	}
}

// FuzzResolve: no input makes the resolver panic, and whatever it resolves
// is a candidate or the input's own full form.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"laptop2", "ybndrfg8", "sha256:00", "me@1", "@", "a@b@c", strings.Repeat("y", 52)} {
		f.Add(s)
	}
	is := make([]key.ID, 0, 2)
	for i := range 2 {
		sk, _ := key.FromSeed(bytes.Repeat([]byte{byte(i + 9)}, 32))
		is = append(is, sk.ID())
	}
	x := card.IDOf([]byte("x"))
	r := &Resolver{
		Identities: func() []Known { return []Known{{ID: is[0], Names: []string{"me"}}, {ID: is[1]}} },
		CardPrefix: func(p string, max int) ([]card.ID, error) {
			if strings.HasPrefix(strings.TrimPrefix(x.String(), "sha256:"), p) {
				return []card.ID{x}, nil
			}
			return nil, nil
		},
		CardAt: func(key.ID, uint64) (card.ID, error) { return x, nil },
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := r.Identity(s); err == nil && id != is[0] && id != is[1] && id.String() != s {
			t.Fatalf("Identity(%q) = %v, not a candidate", s, id)
		}
		if id, err := r.Card(s); err == nil && id != x && id.String() != s && "sha256:"+s != id.String() {
			t.Fatalf("Card(%q) = %v", s, id)
		}
	})
}
