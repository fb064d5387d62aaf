package sync

import (
	"testing"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// FuzzPeekAuthor: PeekAuthor's in-place read of the canonical layout gives
// what the general decoder gives, author or refusal, for any bytes.
func FuzzPeekAuthor(f *testing.F) {
	st := newStore()
	sk := secret(f, "peek")
	c := signNext(f, st, sk, "hello")
	f.Add(c.Bytes())
	f.Add(append(c.Bytes(), 0))
	f.Add(c.Bytes()[:len(c.Bytes())-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ferr := PeekAuthor(b)
		slow, serr := peekGeneral(b)
		if (ferr == nil) != (serr == nil) || fast != slow {
			t.Fatalf("PeekAuthor %v %v, general %v %v", fast, ferr, slow, serr)
		}
		if kid, ok := card.Kid(b); ok {
			if id, err := key.IDFromBytes(kid); err == nil && (ferr != nil || fast != id) {
				t.Fatalf("canonical layout with a valid kid: %v %v", fast, ferr)
			}
		}
	})
}
