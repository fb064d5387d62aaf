package sync

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// addCard appends a card of sk with the given kind and body to st.
func addCard(t *testing.T, st Store, sk *key.Secret, kind string, body any) *card.Card {
	t.Helper()
	h, ok := st.Head(sk.ID())
	seq, prev := uint64(1), card.ID{}
	if ok {
		seq, prev = h.Seq+1, h.ID
	}
	c, err := card.Sign(sk, seq, prev, card.Draft{Kind: kind, TS: 1700000000 + int64(seq), Body: body}, testCaps)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(c.Bytes()); err != nil {
		t.Fatal(err)
	}
	return c
}

func delegate(t *testing.T, st Store, owner *key.Secret, dev key.ID) *card.Card {
	return addCard(t, st, owner, card.KindDelegate, kinds.DelegateBody{Device: dev.Bytes()})
}

const now = 1800000000

// Rows "store" and "share" of the trust table: trust follows delegation.
func TestRuleTrustFollowsDelegation(t *testing.T) {
	me, myDev := secret(t, "me"), secret(t, "my-device")
	owner, ownerDev := secret(t, "owner"), secret(t, "owner-device")
	star, starDev := secret(t, "star"), secret(t, "star-device")
	stranger := secret(t, "stranger")
	st := newStore()
	delegate(t, st, me, myDev.ID())
	delegate(t, st, owner, ownerDev.ID())
	delegate(t, st, star, starDev.ID())
	l := TrustFor(st, []key.ID{me.ID()}, []key.ID{owner.ID()}, []key.ID{star.ID()}, now)

	// Self: own identities and their devices.
	for _, x := range []key.ID{me.ID(), myDev.ID()} {
		if !l.Self[x] || !l.Accept(x, stranger.ID()) || !l.Visible(x, owner.ID()) || !l.Shares(x) {
			t.Fatalf("%s is not treated as this user", x.Short())
		}
	}
	// Trusted: the trusted owner and its delegated device alike.
	for _, x := range []key.ID{owner.ID(), ownerDev.ID()} {
		switch {
		case l.Self[x] || !l.Trusted[x]:
			t.Fatalf("%s: want trusted", x.Short())
		case !l.Accept(x, stranger.ID()):
			t.Fatalf("%s: what a trusted peer vouches for is taken", x.Short())
		case !l.Visible(x, me.ID()) || !l.Visible(x, star.ID()) || !l.Visible(x, starDev.ID()):
			t.Fatalf("%s: a trusted peer sees own and followed logs", x.Short())
		case l.Visible(x, stranger.ID()):
			t.Fatalf("%s sees a log this home neither owns nor follows", x.Short())
		case !l.Shares(x) || !l.Known(x):
			t.Fatalf("%s: trusted_nodes cards go to trusted peers", x.Short())
		}
	}
	// Followed: the followed identity and its devices, from anyone.
	for _, x := range []key.ID{star.ID(), starDev.ID()} {
		if !l.Follow[x] || !l.Accept(stranger.ID(), x) || l.Accept(x, stranger.ID()) || l.Shares(x) {
			t.Fatalf("%s: want followed (its log from anyone, nothing more)", x.Short())
		}
	}
	// Anyone else: nothing is taken, only its own log is shown.
	if l.Accept(stranger.ID(), stranger.ID()) || l.Accept(stranger.ID(), owner.ID()) || l.Known(stranger.ID()) ||
		l.Visible(stranger.ID(), me.ID()) || !l.Visible(stranger.ID(), stranger.ID()) || l.Shares(stranger.ID()) {
		t.Fatal("a stranger is given more than its own log")
	}
}

// Row "store": a fresh device whose owner (on its lists) delegated to it
// treats the owner and the owner's other devices as itself.
func TestRuleDeviceKeepsItsOwnersCards(t *testing.T) {
	owner, dev, sibling, other := secret(t, "owner"), secret(t, "device"), secret(t, "sibling"), secret(t, "other")
	st := newStore()
	delegate(t, st, owner, dev.ID())
	delegate(t, st, owner, sibling.ID())
	l := TrustFor(st, []key.ID{dev.ID()}, []key.ID{owner.ID()}, nil, now)
	for _, x := range []key.ID{owner.ID(), sibling.ID()} {
		if !l.Self[x] || !l.Visible(x, dev.ID()) || !l.Accept(x, other.ID()) {
			t.Fatalf("%s is not treated as the device's own user", x.Short())
		}
	}
	// An identity on the lists that delegates to someone else is no owner.
	l = TrustFor(st, []key.ID{other.ID()}, []key.ID{owner.ID()}, nil, now)
	if l.Self[owner.ID()] || !l.Trusted[owner.ID()] {
		t.Fatal("an owner of other devices became self")
	}
}

// Only live delegations count: revoked (for good), withdrawn by revoke or
// crl, or expired ones do not make a device trusted.
func TestRuleOnlyLiveDelegations(t *testing.T) {
	owner := secret(t, "owner")
	live, gone, revoked, crl, old := secret(t, "live"), secret(t, "gone"), secret(t, "revoked"), secret(t, "crl"), secret(t, "old")
	st := newStore()
	delegate(t, st, owner, live.ID())
	delegate(t, st, owner, gone.ID())
	addCard(t, st, owner, card.KindDelegate, kinds.DelegateBody{Device: gone.ID().Bytes(), Revoked: true})
	delegate(t, st, owner, gone.ID()) // re-delegating a revoked key does not bring it back
	r := delegate(t, st, owner, revoked.ID())
	addCard(t, st, owner, card.KindRevoke, kinds.RevokeBody{Card: idBytes(r.ID())})
	c := delegate(t, st, owner, crl.ID())
	addCard(t, st, owner, card.KindCRL, kinds.CRLBody{Revoked: [][]byte{idBytes(c.ID())}})
	addCard(t, st, owner, card.KindDelegate, kinds.DelegateBody{Device: old.ID().Bytes(), Until: now - 1})
	got := Devices(st, owner.ID(), now)
	if len(got) != 1 || got[0] != live.ID() {
		t.Fatalf("live devices %v, want only %s", got, live.ID().Short())
	}
	l := TrustFor(st, []key.ID{secret(t, "host").ID()}, []key.ID{owner.ID()}, nil, now)
	for _, x := range []*key.Secret{gone, revoked, crl, old} {
		if l.Trusted[x.ID()] || l.Known(x.ID()) {
			t.Fatalf("%s trusted through a dead delegation", x.ID().Short())
		}
	}
}

// A claimed delegation in another identity's log proves nothing: only the
// owner's own log counts.
func TestRuleDelegationOnlyFromOwnersLog(t *testing.T) {
	owner, mallory := secret(t, "owner"), secret(t, "mallory")
	st := newStore()
	// Mallory writes, in its own log, a "delegation" naming itself as the owner's device.
	addCard(t, st, mallory, card.KindDelegate, kinds.DelegateBody{Device: mallory.ID().Bytes()})
	l := TrustFor(st, []key.ID{secret(t, "host").ID()}, []key.ID{owner.ID()}, nil, now)
	if l.Trusted[mallory.ID()] {
		t.Fatal("mallory made itself trusted")
	}
}

// Row "store", import: a bundle from an identity nobody trusted stores only
// the logs the rule takes (followed ones), refuses the rest with
// ErrNotTaken, and leaves the store otherwise unchanged.
func TestRuleImportFromStrangerStoresOnlyWhatTheRuleTakes(t *testing.T) {
	me, stranger, star, other := secret(t, "me"), secret(t, "stranger"), secret(t, "star"), secret(t, "other")
	src := newStore()
	appendN(t, src, stranger, 2)
	appendN(t, src, star, 3)
	appendN(t, src, other, 1)
	var buf bytes.Buffer
	if _, err := Export(&buf, src, ExportOptions{Secret: stranger}); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()

	dst := newStore()
	before := snapshot(t, dst)
	pol := TrustFor(dst, []key.ID{me.ID()}, nil, nil, now)
	stats, rej, err := Import(bytes.NewReader(raw), dst, ImportOptions{Policy: pol})
	if err != nil || stats.Received != 0 || len(rej) != 6 {
		t.Fatalf("%+v %d %v", stats, len(rej), err)
	}
	for _, r := range rej {
		if !errors.Is(r.Err, ErrNotTaken) {
			t.Fatalf("%s", r)
		}
	}
	if !bytes.Equal(before, snapshot(t, dst)) {
		t.Fatal("a stranger's bundle changed the store")
	}
	// Following star takes star's log, and only it.
	pol = TrustFor(dst, []key.ID{me.ID()}, nil, []key.ID{star.ID()}, now)
	stats, rej, err = Import(bytes.NewReader(raw), dst, ImportOptions{Policy: pol})
	if err != nil || stats.Received != 3 || len(rej) != 3 {
		t.Fatalf("%+v %d %v", stats, len(rej), err)
	}
	if hs := dst.Heads(); len(hs) != 1 || hs[0].Author != star.ID() {
		t.Fatalf("%+v", hs)
	}
	// Trusting the exporter takes what it vouches for.
	pol = TrustFor(dst, []key.ID{me.ID()}, []key.ID{stranger.ID()}, nil, now)
	if stats, rej, err = Import(bytes.NewReader(raw), dst, ImportOptions{Policy: pol}); err != nil || stats.Received != 3 || len(rej) != 0 {
		t.Fatalf("%+v %v %v", stats, rej, err)
	}
}

// Row "store", sync: a host that trusts an owner takes the logs the owner's
// delegated device offers over a real session; a device nobody delegated is
// taken from only for followed logs.
func TestRuleSyncWithTrustedOwnersDevice(t *testing.T) {
	host, owner, dev, impostor := secret(t, "host"), secret(t, "owner"), secret(t, "device"), secret(t, "impostor")
	hostSt := newStore()
	delegate(t, hostSt, owner, dev.ID()) // the host holds the owner's log
	devSt := newStore()
	copyStore(t, hostSt, devSt)
	appendN(t, devSt, dev, 3)
	hostPol := TrustFor(hostSt, []key.ID{host.ID()}, []key.ID{owner.ID()}, nil, now)
	devPol := TrustFor(devSt, []key.ID{dev.ID()}, []key.ID{host.ID(), owner.ID()}, nil, now)
	ra, rb := syncPipe(t, node{devSt, dev, devPol}, node{hostSt, host, hostPol})
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	if h, ok := hostSt.Head(dev.ID()); !ok || h.Seq != 3 {
		t.Fatalf("the trusted owner's device was refused: %+v %+v", h, rb.st)
	}
	// The same cards from an identity the owner never delegated to: refused.
	impSt := newStore()
	appendN(t, impSt, impostor, 2)
	hostSt2 := newStore()
	delegate(t, hostSt2, owner, dev.ID())
	before := snapshot(t, hostSt2)
	ra, rb = syncPipe(t, node{impSt, impostor, Everyone{}}, node{hostSt2, host, TrustFor(hostSt2, []key.ID{host.ID()}, []key.ID{owner.ID()}, nil, now)})
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	if !bytes.Equal(before, snapshot(t, hostSt2)) {
		t.Fatal("an undelegated identity's log was stored")
	}
}

func idBytes(id card.ID) []byte { return id[:] }

// Row "a fresh device: its owner's cards", before the owner's log is
// stored: the delegation handed over at pairing makes the owner Self (its
// log is taken from it and everything is shared with it); once the owner's
// stored log revokes the device, it no longer does. A handed card that
// delegates to someone else makes nobody Self.
func TestRulePairedOwnerIsSelf(t *testing.T) {
	owner, dev, other, stranger := secret(t, "owner"), secret(t, "device"), secret(t, "other"), secret(t, "stranger")
	ownerLog := newStore() // the owner's home
	handed := delegate(t, ownerLog, owner, dev.ID())
	st := newStore() // the device's home: nothing of the owner stored yet
	l := TrustFor(st, []key.ID{dev.ID()}, nil, nil, now, handed)
	if !l.Self[owner.ID()] || !l.Accept(owner.ID(), owner.ID()) || !l.Visible(owner.ID(), dev.ID()) || !l.Known(owner.ID()) {
		t.Fatal("the paired owner is not the device's own user")
	}
	if l.Accept(stranger.ID(), owner.ID()) {
		t.Fatal("the owner's log is taken from a stranger")
	}
	// Without the pairing the owner is nobody here (the symptom).
	if l := TrustFor(st, []key.ID{dev.ID()}, nil, nil, now); l.Known(owner.ID()) || l.Accept(owner.ID(), owner.ID()) {
		t.Fatal("an unpaired owner is taken from")
	}
	// A handed delegation to another device proves nothing about this one.
	elsewhere := delegate(t, newStore(), stranger, other.ID())
	if l := TrustFor(st, []key.ID{dev.ID()}, nil, nil, now, elsewhere); l.Self[stranger.ID()] || l.Known(stranger.ID()) {
		t.Fatal("a delegation to someone else made its author self")
	}
	// The owner's log arrives and revokes the device: the pairing no longer counts.
	for seq := uint64(1); ; seq++ {
		c, err := ownerLog.Get(owner.ID(), seq)
		if err != nil {
			break
		}
		if _, err := st.Import(c.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if l := TrustFor(st, []key.ID{dev.ID()}, nil, nil, now, handed); !l.Self[owner.ID()] {
		t.Fatal("the owner's stored log with the same delegation does not count")
	}
	addCard(t, st, owner, card.KindDelegate, kinds.DelegateBody{Device: dev.ID().Bytes(), Revoked: true})
	if l := TrustFor(st, []key.ID{dev.ID()}, nil, nil, now, handed); l.Self[owner.ID()] || l.Known(owner.ID()) {
		t.Fatal("a revoked device still treats its former owner as itself")
	}
}
