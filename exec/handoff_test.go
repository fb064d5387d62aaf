package exec

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// handoffEnv: host a runs the counter at 1; hosts b and c grant it too.
func handoffEnv(t *testing.T) (a, b, c *env, raw []byte) {
	a = newEnv(t, "host-a", nil, nil)
	b = newEnv(t, "host-b", nil, nil)
	c = newEnv(t, "host-c", nil, nil)
	raw = example(t, "counter")
	for _, e := range []*env{a, b, c} {
		e.grantPeer(raw, reqKV, bundle.Limits{})
	}
	p := a.deploy(raw)
	a.mustCall(p, "inc")
	return a, b, c, raw
}

// TestHandoffSourceCannotResume (issue 12): after `move --out` the source
// could resume and both copies ran with diverging state. Now the source has
// marked the peer moved, durably: resume, call and a second export refuse,
// also after a restart.
func TestHandoffSourceCannotResume(t *testing.T) {
	a, b, _, raw := handoffEnv(t)
	p := peerOf(t, raw)
	ctx := context.Background()
	ho, err := a.host.Export(ctx, p, b.key.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.host.Resume(ctx, p); !errors.Is(err, ErrHandedOver) {
		t.Fatalf("resume after handing over: %v", err)
	}
	if _, err := a.call(p, "inc"); err == nil {
		t.Fatal("the source still serves a peer it handed over")
	}
	if _, err := a.host.Export(ctx, p, b.key.ID()); !errors.Is(err, ErrHandedOver) {
		t.Fatalf("second export: %v", err)
	}
	a.host.Close()
	a.open()
	if err := a.host.Resume(ctx, p); !errors.Is(err, ErrHandedOver) {
		t.Fatalf("resume after a restart: %v", err)
	}
	if st, _ := a.host.Status(p); st.State != kinds.StateMoved {
		t.Fatalf("source shows %s", st.State)
	}
	kv, err := a.host.readKV(p)
	if err != nil || len(kv) != 0 {
		t.Fatalf("the source kept the handed-over state: %v %v", kv, err)
	}
	// The receiver continues from the state the source had.
	if err := b.host.Receive(ctx, ho.Encode()); err != nil {
		t.Fatal(err)
	}
	if got := b.mustCall(p, "inc"); got != "2" {
		t.Fatalf("receiver counts %q", got)
	}
	// The move is the source's signed card; the receiver's deploy names it.
	if got := a.log.Cards(a.key.ID()); got[len(got)-2].Kind() != kinds.KindHandoff || got[len(got)-2].ID() != ho.ID() {
		t.Fatal("the handoff card is not in the source's log")
	}
	obs := b.observed()
	if !bytes.Contains([]byte(obs[len(obs)-1].Reason), []byte(ho.ID().String())) {
		t.Fatalf("receiver's deploy reason %q does not name the handoff", obs[len(obs)-1].Reason)
	}
	if err := a.host.Remove(ctx, p); err != nil {
		t.Fatalf("removing what is left at the source: %v", err)
	}
}

// TestHandoffReplayRefused (issue 12): a handoff is taken once; deploying it
// again, even after the peer was removed there, is refused.
func TestHandoffReplayRefused(t *testing.T) {
	a, b, _, raw := handoffEnv(t)
	p := peerOf(t, raw)
	ctx := context.Background()
	ho, err := a.host.Export(ctx, p, b.key.ID())
	if err != nil {
		t.Fatal(err)
	}
	file := ho.Encode()
	if err := b.host.Receive(ctx, file); err != nil {
		t.Fatal(err)
	}
	b.mustCall(p, "inc")
	if err := b.host.Receive(ctx, file); err == nil {
		t.Fatal("second deploy of the same handoff accepted")
	}
	if err := b.host.Remove(ctx, p); err != nil {
		t.Fatal(err)
	}
	b.host.Close()
	b.open()
	if err := b.host.Receive(ctx, file); !errors.Is(err, ErrHandoffReplay) {
		t.Fatalf("replay after remove and restart: %v", err)
	}
	if _, err := b.host.Status(p); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("the replay installed the peer: %v", err)
	}
}

// TestHandoffPatchedRefused (issue 12): a byte patched in the file's state
// was accepted by a third host, which then signed "moved here from host A"
// on the file's unchecked word. Now a patched byte anywhere (state, card,
// bundle) is refused by the receiver, and a third host refuses even the
// intact handoff: it is not addressed to it.
func TestHandoffPatchedRefused(t *testing.T) {
	a, b, c, raw := handoffEnv(t)
	p := peerOf(t, raw)
	ctx := context.Background()
	ho, err := a.host.Export(ctx, p, b.key.ID())
	if err != nil {
		t.Fatal(err)
	}
	file := ho.Encode()
	cObs := len(c.observed())
	for _, region := range []struct {
		name string
		part []byte
		want error
	}{
		{"state", ho.State, ErrTampered},
		{"card", ho.Card.Bytes(), ErrBadHandoff},
		{"bundle", ho.Bundle, ErrTampered},
	} {
		at := bytes.Index(file, region.part)
		if at < 0 {
			t.Fatalf("%s not in the file", region.name)
		}
		for _, off := range []int{0, len(region.part) / 2, len(region.part) - 1} {
			bad := bytes.Clone(file)
			bad[at+off] ^= 0x01
			for _, e := range []*env{b, c} {
				err := e.host.Receive(ctx, bad)
				if err == nil {
					t.Fatalf("patched %s byte %d accepted", region.name, off)
				}
				if e == b && !errors.Is(err, region.want) {
					t.Errorf("patched %s byte %d: %v, want %v", region.name, off, err, region.want)
				}
			}
		}
	}
	if err := c.host.Receive(ctx, file); !errors.Is(err, ErrNotAddressed) {
		t.Fatalf("third host took a handoff for another: %v", err)
	}
	if _, err := c.host.Status(p); !errors.Is(err, ErrUnknownPeer) || len(c.observed()) != cObs {
		t.Fatal("the third host installed or recorded something")
	}
	// The intact file still works for its receiver.
	if err := b.host.Receive(ctx, file); err != nil {
		t.Fatal(err)
	}
	if got := b.mustCall(p, "get"); got != "1" {
		t.Fatalf("%q", got)
	}
}

// TestHandoffOldAndMalformed: the unsigned handoff of earlier versions and
// truncated or foreign bytes are refused by name.
func TestHandoffOldAndMalformed(t *testing.T) {
	a, b, _, raw := handoffEnv(t)
	p := peerOf(t, raw)
	h := bundle.HashOf(raw)
	old := canon.MustMarshal(map[string]any{"v": 1, "from": a.key.ID().Bytes(), "peer": p.Bytes(), "hash": h[:], "bundle": raw, "state": encodeKV(map[string][]byte{"n": []byte("99")})})
	for name, bad := range map[string][]byte{
		"unsigned v1": old,
		"empty":       nil,
		"junk":        []byte("not a handoff"),
	} {
		if err := b.host.Receive(context.Background(), bad); !errors.Is(err, ErrBadHandoff) {
			t.Errorf("%s: %v", name, err)
		}
	}
	ho, err := a.host.Export(context.Background(), p, b.key.ID())
	if err != nil {
		t.Fatal(err)
	}
	file := ho.Encode()
	if err := b.host.Receive(context.Background(), file[:len(file)-1]); !errors.Is(err, ErrBadHandoff) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := a.host.Export(context.Background(), p, a.key.ID()); err == nil {
		t.Fatal("handed a peer to its own host")
	}
}

func FuzzDecodeHandoff(f *testing.F) {
	f.Add([]byte{0xa0})
	f.Add(canon.MustMarshal(handoffFile{V: handoffVersion, Card: []byte{1}, State: []byte{2}, Bundle: []byte{3}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ho, err := DecodeHandoff(b)
		if err != nil {
			return
		}
		if !bytes.Equal(ho.Encode(), b) {
			t.Fatal("accepted a handoff that does not re-encode to itself")
		}
	})
}

func peerOf(t *testing.T, raw []byte) key.ID {
	t.Helper()
	b, err := bundle.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b.Peer()
}
