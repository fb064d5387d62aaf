package sync

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/bundle"
	"github.com/sublog/sublog/sync/proto"
	"github.com/sublog/sublog/sync/transport"
)

// stubsOf lists a store's stubs of author.
func stubsOf(t *testing.T, st Store, author key.ID) []sublog.Stub {
	t.Helper()
	s, err := st.Stubs(author, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The reproduction: the owner appends a public card, a node-only
// one and a public one. A trusted peer gets 1 and 3 in full and 2 as a
// stub, its chain verifies, it is told; the next session is in step; an
// unaddressed export of the peer carries the public cards and the stub and
// says so; a third home takes that export.
func TestWithheldCardTravelsAsStub(t *testing.T) {
	for _, kind := range []string{"log", "mem"} {
		t.Run(kind, func(t *testing.T) {
			mk := func() Store {
				if kind == "mem" {
					return newStore()
				}
				return openStore(t)
			}
			owner, peer, third := secret(t, "owner"), secret(t, "peer"), secret(t, "third")
			ost, pst, tst := mk(), mk(), mk()
			appendN(t, ost, owner, 1)
			appendSealed(t, ost, owner, capsule.ThisNodeOnly)
			appendN(t, ost, owner, 1)
			c2, err := ost.Get(owner.ID(), 2)
			if err != nil {
				t.Fatal(err)
			}
			opol := NewLists([]key.ID{owner.ID()}, []key.ID{peer.ID()}, nil)
			ppol := NewLists([]key.ID{peer.ID()}, []key.ID{owner.ID()}, nil)
			var trace bytes.Buffer
			oo, po := opts(node{ost, owner, opol}, 1), opts(node{pst, peer, ppol}, 2)
			po.Trace = &trace
			ca, cb := transport.Pipe()
			ra, rb := runPair(t, ca, cb, node{ost, owner, opol}, node{pst, peer, ppol}, oo, po)
			if ra.err != nil || rb.err != nil {
				t.Fatal(ra.err, rb.err)
			}
			if ra.st.Sent != 2 || ra.st.StubsOut != 1 || len(ra.st.Withheld) != 1 || ra.st.Withheld[0].Seq != 2 ||
				!strings.Contains(ra.st.Withheld[0].Reason, capsule.ThisNodeOnly) {
				t.Fatalf("owner sent %d, stubs %d, withheld %+v", ra.st.Sent, ra.st.StubsOut, ra.st.Withheld)
			}
			if rb.st.Received != 2 || rb.st.StubsIn != 1 || rb.st.Rejected != 0 {
				t.Fatalf("peer received %d, stubs %d, rejected %d %v", rb.st.Received, rb.st.StubsIn, rb.st.Rejected, rb.st.Refused)
			}
			if h, _ := pst.Head(owner.ID()); h.Seq != 3 {
				t.Fatalf("peer at owner@%d", h.Seq)
			}
			for _, seq := range []uint64{1, 3} {
				if _, err := pst.Get(owner.ID(), seq); err != nil {
					t.Fatalf("card %d: %v", seq, err)
				}
			}
			if _, err := pst.Get(owner.ID(), 2); !errors.Is(err, sublog.ErrWithheld) {
				t.Fatalf("seq 2: %v", err)
			}
			if s := stubsOf(t, pst, owner.ID()); len(s) != 1 || s[0].ID != c2.ID() || !s[0].Proven {
				t.Fatalf("stubs %+v", s)
			}
			// Nothing of the withheld card but its ID crossed the wire.
			if bytes.Contains(trace.Bytes(), c2.Bytes()[len(c2.Bytes())-64:]) || bytes.Contains(trace.Bytes(), c2.ContentHash()) {
				t.Fatal("the withheld card's signature or content hash reached the peer")
			}
			if ls, ok := pst.(*sublog.Store); ok {
				if rep, err := ls.Verify(nil, nil); err != nil || !rep.OK() || rep.Withheld != 1 {
					t.Fatalf("peer verify %+v %v", rep, err)
				}
			}
			// In step: nothing moves.
			ra, rb = syncPipe(t, node{ost, owner, opol}, node{pst, peer, ppol})
			if ra.err != nil || rb.err != nil || ra.st.Sent+rb.st.Sent+ra.st.StubsOut+rb.st.StubsOut != 0 {
				t.Fatalf("second session moved cards: %+v %+v %v %v", ra.st, rb.st, ra.err, rb.err)
			}

			// The owner's own unaddressed export: public cards plus the stub.
			var obuf bytes.Buffer
			ost0, err := Export(&obuf, ost, ExportOptions{Secret: owner, Rand: rand.Reader, Policy: opol})
			if err != nil || ost0.Sent != 2 || ost0.StubsOut != 1 || len(ost0.Withheld) != 1 {
				t.Fatalf("owner export: %+v %v", ost0, err)
			}
			// The peer's unaddressed export passes the stub on.
			var buf bytes.Buffer
			es, err := Export(&buf, pst, ExportOptions{Secret: peer, Rand: rand.Reader, Policy: ppol})
			if err != nil || es.Sent != 2 || es.StubsOut != 1 {
				t.Fatalf("peer export: %+v %v", es, err)
			}
			tpol := NewLists([]key.ID{third.ID()}, []key.ID{peer.ID()}, nil)
			is, rej, err := Import(&buf, tst, ImportOptions{Policy: tpol, SpoolDir: t.TempDir()})
			if err != nil || len(rej) != 0 || is.Received != 2 || is.StubsIn != 1 {
				t.Fatalf("third import: %+v %v %v", is, rej, err)
			}
			if s := stubsOf(t, tst, owner.ID()); len(s) != 1 || s[0].ID != c2.ID() {
				t.Fatalf("third's stubs %+v", s)
			}
			mustHeadsEqual(t, pst, tst)
			if ls, ok := tst.(*sublog.Store); ok {
				if rep, err := ls.Verify(nil, nil); err != nil || !rep.OK() || rep.Withheld != 1 {
					t.Fatalf("third verify %+v %v", rep, err)
				}
			}
		})
	}
}

// A card withheld from a peer that later may receive it (the peer is
// trusted now) replaces the stub when its ID is the one the chain names.
func TestStubReplacedWhenCardMayGo(t *testing.T) {
	owner, peer := secret(t, "owner"), secret(t, "peer")
	ost, pst := openStore(t), openStore(t)
	appendN(t, ost, owner, 1)
	appendSealed(t, ost, owner, capsule.TrustedNodes)
	appendN(t, ost, owner, 1)
	ra, rb := syncPipe(t, node{ost, owner, showButNotShare{}}, node{pst, peer, Everyone{}})
	if ra.err != nil || rb.err != nil || len(stubsOf(t, pst, owner.ID())) != 1 {
		t.Fatal(ra.err, rb.err)
	}
	// Now trusted: an export for the peer carries the card in full.
	pol := NewLists([]key.ID{owner.ID()}, []key.ID{peer.ID()}, nil)
	var buf bytes.Buffer
	if _, err := Export(&buf, ost, ExportOptions{Secret: owner, Rand: rand.Reader, For: ptr(peer.ID()), Policy: pol}); err != nil {
		t.Fatal(err)
	}
	is, rej, err := Import(&buf, pst, ImportOptions{Secret: peer, SpoolDir: t.TempDir()})
	if err != nil || len(rej) != 0 || is.Received != 1 {
		t.Fatalf("import %+v %v %v", is, rej, err)
	}
	if s := stubsOf(t, pst, owner.ID()); len(s) != 0 {
		t.Fatalf("stub left: %+v", s)
	}
	mustHeadsEqual(t, ost, pst)
	if rep, err := pst.Verify(nil, nil); err != nil || !rep.OK() || rep.Cards != 3 {
		t.Fatalf("verify %+v %v", rep, err)
	}
}

// stubBundle is a bundle signed by exporter carrying one Cards message.
func stubBundle(t *testing.T, exporter *key.Secret, author key.ID, from uint64, cards ...[]byte) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	bw, err := bundle.NewWriter(&buf, exporter, bundle.WriterOptions{Created: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.Msg(&proto.Msg{T: proto.TCards, Author: author.Bytes(), From: from, Cards: cards}); err != nil {
		t.Fatal(err)
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// The attacks a relaying home could try with stubs, fed as real bundle
// bytes signed by a trusted exporter: each refused with a clear error and
// the store unchanged.
func TestStubAttacksOverImport(t *testing.T) {
	owner, relay, victim := secret(t, "owner"), secret(t, "relay"), secret(t, "victim")
	src := openStore(t)
	appendN(t, src, owner, 5)
	c := make([]*card.Card, 6)
	for seq := uint64(1); seq <= 5; seq++ {
		c[seq], _ = src.Get(owner.ID(), seq)
	}
	id := func(x *card.Card) []byte { i := x.ID(); return bytes.Clone(i[:]) }
	forged := bytes.Repeat([]byte{0xa5}, 32)
	pol := NewLists([]key.ID{victim.ID()}, []key.ID{relay.ID()}, nil)
	cases := []struct {
		name string
		from uint64
		feed [][]byte
		want error
		say  string
	}{
		{"stub with a forged ID", 2, [][]byte{forged, c[3].Bytes()}, sublog.ErrStubConflict, "this store holds"},
		{"stub contradicted by the next card's prev", 4, [][]byte{forged, c[5].Bytes()}, sublog.ErrStubContradicted, "(signed) names"},
		{"stub replayed at another seq", 4, [][]byte{id(c[2]), c[5].Bytes()}, sublog.ErrStubContradicted, "replayed at another seq"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			// The victim holds 1, a stub for 2, and 3.
			if _, rej, err := Import(stubBundle(t, relay, owner.ID(), 1, c[1].Bytes(), id(c[2]), c[3].Bytes()), st,
				ImportOptions{Policy: pol, SpoolDir: t.TempDir()}); err != nil || len(rej) != 0 {
				t.Fatal(rej, err)
			}
			before := snapshot(t, st)
			beforeStubs := stubsOf(t, st, owner.ID())
			stats, rej, err := Import(stubBundle(t, relay, owner.ID(), tc.from, tc.feed...), st, ImportOptions{Policy: pol, SpoolDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if stats.Received != 0 || len(rej) == 0 {
				t.Fatalf("received %d, refused %v", stats.Received, rej)
			}
			found := false
			for _, r := range rej {
				if errors.Is(r.Err, tc.want) && strings.Contains(r.Reason, tc.say) {
					found = true
				}
			}
			if !found {
				t.Fatalf("refusals %v, want %v (%q)", rej, tc.want, tc.say)
			}
			if !bytes.Equal(snapshot(t, st), before) || len(stubsOf(t, st, owner.ID())) != len(beforeStubs) {
				t.Fatal("the store changed")
			}
			if rep, err := st.Verify(nil, nil); err != nil || !rep.OK() {
				t.Fatalf("verify %+v %v", rep, err)
			}
		})
	}
}

// A peer that holds a stub asks for its card at the start of every round
// (Want); once the card may go to it (it is trusted now), a sync between
// two sides in step replaces the stub. Before that, asking moves nothing.
func TestStubReplacedBySync(t *testing.T) {
	owner, peer := secret(t, "owner"), secret(t, "peer")
	ost, pst := openStore(t), openStore(t)
	appendN(t, ost, owner, 1)
	appendSealed(t, ost, owner, capsule.TrustedNodes)
	appendN(t, ost, owner, 1)
	ra, rb := syncPipe(t, node{ost, owner, showButNotShare{}}, node{pst, peer, Everyone{}})
	if ra.err != nil || rb.err != nil || len(stubsOf(t, pst, owner.ID())) != 1 {
		t.Fatal(ra.err, rb.err)
	}
	// Still not shared with: the Want is answered with nothing.
	ra, rb = syncPipe(t, node{ost, owner, showButNotShare{}}, node{pst, peer, Everyone{}})
	if ra.err != nil || rb.err != nil || ra.st.Sent+ra.st.StubsOut != 0 || len(stubsOf(t, pst, owner.ID())) != 1 {
		t.Fatalf("asking moved cards: %+v %v %v", ra.st, ra.err, rb.err)
	}
	// Trusted now: the card comes in place of its stub.
	pol := NewLists([]key.ID{owner.ID()}, []key.ID{peer.ID()}, nil)
	ra, rb = syncPipe(t, node{ost, owner, pol}, node{pst, peer, Everyone{}})
	if ra.err != nil || rb.err != nil || ra.st.Sent != 1 || rb.st.Received != 1 {
		t.Fatalf("sent %d, received %d: %v %v", ra.st.Sent, rb.st.Received, ra.err, rb.err)
	}
	if s := stubsOf(t, pst, owner.ID()); len(s) != 0 {
		t.Fatalf("stub left: %+v", s)
	}
	if rep, err := pst.Verify(nil, nil); err != nil || !rep.OK() || rep.Cards != 3 || rep.Withheld != 0 {
		t.Fatalf("verify %+v %v", rep, err)
	}
	// Both ways round: the peer as initiator gets it too.
	pst2 := openStore(t)
	syncPipe(t, node{pst2, peer, Everyone{}}, node{ost, owner, showButNotShare{}})
	if len(stubsOf(t, pst2, owner.ID())) != 1 {
		t.Fatal("no stub")
	}
	ra, rb = syncPipe(t, node{pst2, peer, Everyone{}}, node{ost, owner, pol})
	if ra.err != nil || rb.err != nil || ra.st.Received != 1 || len(stubsOf(t, pst2, owner.ID())) != 0 {
		t.Fatalf("initiator side: received %d: %v %v", ra.st.Received, ra.err, rb.err)
	}
}
