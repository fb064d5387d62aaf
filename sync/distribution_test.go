package sync

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// appendSealed appends to sk's log a card sealed for sk with distribution dist.
func appendSealed(t *testing.T, st Store, sk *key.Secret, dist string) {
	t.Helper()
	h, ok := st.Head(sk.ID())
	seq, prev := uint64(1), card.ID{}
	if ok {
		seq, prev = h.Seq+1, h.ID
	}
	rid := make([]byte, 16)
	rand.Read(rid)
	sealed, err := capsule.Seal(capsule.Params{Net: card.DefaultNet, RID: rid, Visibility: capsule.TrustSet,
		Distribution: dist, Recipients: []key.ID{sk.ID()}, Body: canon.MustMarshal(map[string]string{"secret": dist})}, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := card.Sign(sk, seq, prev, sealed.Draft(card.Draft{Kind: card.KindNote, TS: 1, RID: rid}), testCaps)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(c.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestDistributionIsHonoured(t *testing.T) {
	alice, device, friend, stranger := secret(t, "alice"), secret(t, "alice-phone"), secret(t, "friend"), secret(t, "stranger")
	st := newStore()
	appendN(t, st, alice, 2)                         // 1, 2: plain cards
	appendSealed(t, st, alice, capsule.DistPublic)   // 3
	appendSealed(t, st, alice, capsule.TrustedNodes) // 4
	appendSealed(t, st, alice, capsule.ThisNodeOnly) // 5: never leaves (a stub in its place)
	appendN(t, st, alice, 1)                         // 6: goes on past the stub
	pol := NewLists([]key.ID{alice.ID(), device.ID()}, []key.ID{friend.ID()}, nil)
	cases := []struct {
		name string
		peer *key.Secret
		pol  Policy
		want uint64   // the head of alice's log the peer ends with
		stub []uint64 // the seqs it holds as stubs
	}{
		{"own device", device, pol, 6, []uint64{5}},
		{"trusted peer", friend, pol, 6, []uint64{5}},
		// A peer shown the log but not shared with: public parts only.
		{"stranger", stranger, showButNotShare{}, 6, []uint64{4, 5}},
	}
	for _, tc := range cases {
		theirs := newStore()
		ra, rb := syncPipe(t, node{st, alice, tc.pol}, node{theirs, tc.peer, Everyone{}})
		if ra.err != nil || rb.err != nil {
			t.Fatal(ra.err, rb.err)
		}
		if h, _ := theirs.Head(alice.ID()); h.Seq != tc.want {
			t.Fatalf("%s ended at alice@%d, want %d", tc.name, h.Seq, tc.want)
		}
		checkStubs(t, tc.name, theirs, alice.ID(), tc.stub)
	}

	// Bundles: unaddressed ones carry public cards only; one for a trusted
	// peer carries the trusted ones; none carries the node-only card.
	for _, tc := range []struct {
		forID *key.ID
		want  uint64
		stub  []uint64
	}{{nil, 6, []uint64{4, 5}}, {ptr(friend.ID()), 6, []uint64{5}}} {
		var buf bytes.Buffer
		if _, err := Export(&buf, st, ExportOptions{Secret: alice, Rand: rand.Reader, For: tc.forID, Policy: pol}); err != nil {
			t.Fatal(err)
		}
		dst := newStore()
		var sk *key.Secret
		if tc.forID != nil {
			sk = friend
		}
		if _, _, err := Import(&buf, dst, ImportOptions{Secret: sk}); err != nil {
			t.Fatal(err)
		}
		if h, _ := dst.Head(alice.ID()); h.Seq != tc.want {
			t.Fatalf("bundle for %v ends at alice@%d, want %d", tc.forID, h.Seq, tc.want)
		}
		checkStubs(t, "bundle", dst, alice.ID(), tc.stub)
	}
}

// checkStubs asserts that st holds exactly the stubs at seqs of author's
// log, and no card there.
func checkStubs(t *testing.T, name string, st Store, author key.ID, seqs []uint64) {
	t.Helper()
	got, err := st.Stubs(author, 1)
	if err != nil || len(got) != len(seqs) {
		t.Fatalf("%s: stubs %+v, want seqs %v (%v)", name, got, seqs, err)
	}
	for i, s := range got {
		if s.Seq != seqs[i] {
			t.Fatalf("%s: stub at %d, want %d", name, s.Seq, seqs[i])
		}
		if _, err := st.Get(author, s.Seq); err == nil {
			t.Fatalf("%s: a card at the stub's seq %d", name, s.Seq)
		}
	}
}

type showButNotShare struct{}

func (showButNotShare) Visible(_, _ key.ID) bool { return true }
func (showButNotShare) Accept(_, _ key.ID) bool  { return true }
func (showButNotShare) Shares(key.ID) bool       { return false }

func ptr[T any](v T) *T { return &v }
