package crdt

import (
	"testing"
	"time"
)

// FuzzChanges feeds arbitrary bytes as an intent card's changes: Check
// must refuse or accept without panicking, and accepted changes must apply
// (or be refused) without damaging the document they are applied to.
func FuzzChanges(f *testing.F) {
	owner, dev := ident(f, 1), ident(f, 2)
	base := New(owner.ID(), "web")
	first := must(base.Build(owner.ID(), manifest(1, "1"), time.Unix(1, 0)))
	p0, err := Check(owner.ID(), owner.ID(), "web", first)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := base.Apply(p0, "c0"); err != nil {
		f.Fatal(err)
	}
	next := must(base.Build(dev.ID(), manifest(3, "2"), time.Unix(2, 0)))
	f.Add(first)
	f.Add(next)
	f.Add(flip(next, len(next)-1))
	f.Add([]byte{0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Check(dev.ID(), owner.ID(), "web", b)
		if err != nil {
			return
		}
		d := New(owner.ID(), "web")
		if _, err := d.Apply(p0, "c0"); err != nil {
			t.Fatal(err)
		}
		before := d.Desired()
		if _, err := d.Apply(p, "fuzz"); err != nil {
			// A refused card leaves the document as it was.
			after := d.Desired()
			if after.Replicas != before.Replicas || after.Version != before.Version || d.Len() != 2 {
				t.Fatalf("refused changes altered the document: %+v -> %+v", before, after)
			}
			return
		}
		_ = d.Desired()
		_ = d.Conflicts()
		if _, err := d.Save(); err != nil {
			t.Fatal(err)
		}
	})
}
