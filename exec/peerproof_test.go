package exec

import (
	"context"
	"errors"
	"testing"

	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// publishAs appends raw's bundle card signed by sk (whoever that is).
func (e *env) publishAs(sk *key.Secret, raw []byte) {
	e.t.Helper()
	b, err := bundle.Decode(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	h := b.Hash()
	if _, err := e.log.Append(sk, card.Draft{Kind: card.KindBundle, TS: e.clock.Now().Unix(), ContentHash: h[:],
		Body: BundleBody{Hash: h[:], Name: b.Manifest.Name, Version: b.Manifest.Version, Peer: b.Manifest.Peer, Size: uint64(b.Size())}}); err != nil {
		e.t.Fatal(err)
	}
}

// The attack from issue 12: the greeter's module with a manifest naming the
// counter's peer identity, deployed under a grant for that peer, is refused
// and nothing runs: the counter's real bundle is proven, the spoof is not.
func TestSpoofedPeerIdentityRefused(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	counter := example(t, "counter")
	cb, _ := bundle.Decode(counter)
	spoof := rebuild(t, example(t, "greeter"), func(m *bundle.Manifest) {
		m.Peer = cb.Manifest.Peer
		m.Caps = []string{"kv", "req"}
		m.Limits = cb.Manifest.Limits
	})
	e.grantPeer(counter, reqKV, bundle.Limits{Instances: 4}) // proves the real counter bundle only
	// The attacker even publishes the spoof, under its own key and the host's.
	e.publishAs(secret(t, "mallory"), spoof)
	e.publishAs(e.key, spoof)
	before := len(e.log.Cards(e.key.ID()))
	ctx := context.Background()
	for _, try := range []func() error{
		func() error { _, err := e.host.Deploy(ctx, spoof, bundle.HashOf(spoof)); return err },
		func() error { _, err := e.host.Run(ctx, spoof, []byte("x")); return err },
	} {
		if err := try(); !errors.Is(err, ErrNoGrant) || !errors.Is(err, ErrUnprovenPeer) {
			t.Fatalf("spoofed peer identity: %v", err)
		}
	}
	if ps, _ := e.host.Peers(); len(ps) != 0 {
		t.Fatalf("something is deployed: %+v", ps)
	}
	if len(e.observed()) != 0 || len(e.log.Cards(e.key.ID())) != before {
		t.Fatal("the refusal wrote cards")
	}
	// The proven bundle still runs.
	p := e.deploy(counter)
	if got := e.mustCall(p, "inc"); got != "1" {
		t.Fatalf("counter: %q", got)
	}
	// A grant by bundle hash is consent to those exact bytes: no proof needed.
	e2 := newEnv(t, "host-2", nil, nil)
	h := bundle.HashOf(spoof)
	e2.grant(GrantBody{Bundle: h[:], Caps: reqKV, Limits: bundle.Limits{Instances: 4}})
	if _, err := e2.host.Deploy(ctx, spoof, h); err != nil {
		t.Fatalf("grant by hash: %v", err)
	}
}

// The peer's owner may publish for it: the peer's own log delegates to the
// owner, and the owner's bundle card proves the bundle. A revoked delegation
// proves nothing.
func TestPeerProvenByItsOwner(t *testing.T) {
	e := newEnv(t, "host", nil, nil)
	peer, owner := secret(t, "counter-2"), secret(t, "owner")
	raw := rebuild(t, example(t, "counter"), func(m *bundle.Manifest) { m.Peer = peer.ID().Bytes() })
	e.grant(GrantBody{Peer: peer.ID().Bytes(), Caps: reqKV})
	e.publishAs(owner, raw)
	ctx := context.Background()
	if _, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw)); !errors.Is(err, ErrUnprovenPeer) {
		t.Fatalf("owner not named by the peer: %v", err)
	}
	del, err := e.log.Append(peer, card.Draft{Kind: card.KindDelegate, TS: e.clock.Now().Unix(), Body: kinds.DelegateBody{Device: owner.ID().Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw)); err != nil {
		t.Fatalf("published by the owner the peer names: %v", err)
	}
	if err := e.host.Remove(ctx, peer.ID()); err != nil {
		t.Fatal(err)
	}
	id := del.ID()
	if _, err := e.log.Append(peer, card.Draft{Kind: card.KindRevoke, TS: e.clock.Now().Unix(), Body: kinds.RevokeBody{Card: id[:]}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.host.Deploy(ctx, raw, bundle.HashOf(raw)); !errors.Is(err, ErrUnprovenPeer) {
		t.Fatalf("after the peer withdrew its owner: %v", err)
	}
}
