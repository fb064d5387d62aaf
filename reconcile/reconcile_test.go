package reconcile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/exec"
	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/kinds"
	"github.com/sublog/sublog/projections"
)

// An intent no host can satisfy (placement labels no host has) gives one
// unmet report, the same on every pass, and no cards, over 60 s of
// simulated time with both controllers passing every second.
func TestUnsatisfiableIntentWritesNothing(t *testing.T) {
	s := newSim(t, 1)
	s.append(ctrlA, card.KindDelegate, kinds.DelegateBody{Device: s.id(ctrlB).Bytes()})
	r := int64(1)
	s.intent(ctrlA, &crdt.Manifest{Service: "counter", Replicas: &r, Labels: map[string]string{"zone": "mars"}})
	for h := host0; h < host0+nHost; h++ {
		s.append(h, card.KindProfile, projections.ProfileBody{CPU: 4000, Memory: 8 << 30, Disk: 1 << 30, Labels: map[string]string{"zone": "eu"}})
		s.grant(h, "counter")
	}
	s.sync()
	reports := map[string]int{}
	for i := 0; i < 60; i++ {
		s.tick() // heartbeats, sync, both controllers pass and write
		for _, n := range []int{ctrlA, ctrlB} {
			reports[s.nodes[n].st.Pass(s.id(n), s.now).UnmetText()]++
		}
	}
	if n := s.written[kinds.KindPlacement] + s.written[kinds.KindHostLost]; n != 0 {
		t.Fatalf("%d cards written for an unsatisfiable intent", n)
	}
	if len(reports) != 1 {
		t.Fatalf("%d different unmet reports, want 1: %v", len(reports), reports)
	}
	for text := range reports {
		if !strings.Contains(text, `label zone is "eu", placement wants "mars"`) || strings.Count(text, "\n") != 1 {
			t.Fatalf("unmet report: %q", text)
		}
	}
}

// The consent the reconciler places under is the consent the executor
// runs under: a service-only grant makes the plan say deploy, the
// reconciler place the replica there, and the executor run it as that
// service (exec.DeployAs), while a bare deploy stays refused.
func TestServiceOnlyGrantPlanPlacementAndExecutorAgree(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "examples", "greeter", "greeter.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	hash := bundle.HashOf(raw)
	owner, hostKey := simKey("owner"), simKey("h0")
	mlog := exec.NewMemLog()
	now := time.Unix(1_800_000_000, 0)
	g, err := mlog.Append(hostKey, card.Draft{Kind: card.KindGrant, TS: now.Unix(), Body: kinds.GrantBody{Service: "greeter",
		Owner: owner.ID().Bytes(), Caps: []string{kinds.CapReq, kinds.CapLog}, Limits: kinds.Limits{Memory: 1 << 30, Instances: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	prof, err := mlog.Append(hostKey, card.Draft{Kind: card.KindProfile, TS: now.Unix(), Body: projections.ProfileBody{CPU: 1000, Memory: 1 << 30, Disk: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	r, mem := int64(1), int64(16<<20)
	ch, err := crdt.New(owner.ID(), "greeter").Build(owner.ID(), &crdt.Manifest{Service: "greeter", Replicas: &r, Memory: &mem, Bundle: hash.String()}, now)
	if err != nil {
		t.Fatal(err)
	}
	in, err := card.Sign(owner, 1, card.ID{}, card.Draft{Kind: card.KindIntent, TS: now.Unix(),
		Body: projections.IntentBody{Service: "greeter", Owner: owner.ID().Bytes(), Changes: ch}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps, st := projections.New(), New()
	for _, c := range []*card.Card{g, prof, in} {
		if err := ps.Add(c); err != nil {
			t.Fatal(err)
		}
		if err := st.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	plan := ps.Plan(now)
	if len(plan.Actions) != 1 || plan.Actions[0].Action != projections.ActDeploy || plan.Actions[0].Host != hostKey.ID().String() {
		t.Fatalf("plan: %+v unmet %+v", plan.Actions, plan.Unmet)
	}
	d := st.Pass(owner.ID(), now.Unix())
	if len(d.Writes) != 1 || d.Writes[0].Kind != kinds.KindPlacement {
		t.Fatalf("pass: %+v unmet %q", d.Writes, d.UnmetText())
	}
	pb := d.Writes[0].Body.(*kinds.PlacementBody)
	if string(pb.Host) != string(hostKey.ID().Bytes()) || string(pb.Grant) != string(idBytes(g.ID())) || string(pb.Bundle) != string(hash[:]) {
		t.Fatalf("placement %+v", pb)
	}
	h, err := exec.Open(exec.Config{Dir: t.TempDir(), Key: hostKey, Log: mlog, Now: func() time.Time { return now }, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	if _, err := h.Deploy(ctx, raw, hash); !errors.Is(err, exec.ErrNoGrant) {
		t.Fatalf("bare deploy under a service-only grant: %v", err)
	}
	stt, err := h.DeployAs(ctx, raw, hash, exec.As{Owner: owner.ID(), Service: pb.Service})
	if err != nil {
		t.Fatalf("the executor refuses what the placement asks: %v", err)
	}
	if stt.Grant != g.ID() {
		t.Fatalf("ran under grant %s, placement names %s", stt.Grant, g.ID())
	}
}

// Bad bytes for each rejection of the new bodies.
func TestPlacementBodyRejections(t *testing.T) {
	sk := simKey("owner")
	good := kinds.PlacementBody{Service: "web", Owner: sk.ID().Bytes(), Replica: 0, Epoch: 1, Host: sk.ID().Bytes(),
		Bundle: make([]byte, 32), Grant: make([]byte, 32)}
	mk := func(kind string, body any) *card.Card {
		c, err := card.Sign(sk, 1, card.ID{}, card.Draft{Kind: kind, TS: 1, RawBody: canon.MustMarshal(body)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := DecodePlacement(mk(kinds.KindPlacement, good)); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(m map[string]any){
		"epoch 0":       func(m map[string]any) { m["epoch"] = 0 },
		"short grant":   func(m map[string]any) { m["grant"] = make([]byte, 31) },
		"bad host":      func(m map[string]any) { m["host"] = make([]byte, 32) },
		"no service":    func(m map[string]any) { m["service"] = "" },
		"replica 64":    func(m map[string]any) { m["replica"] = 64 },
		"unknown field": func(m map[string]any) { m["colour"] = "red" },
		"missing owner": func(m map[string]any) { delete(m, "owner") },
	} {
		m := map[string]any{"service": good.Service, "owner": good.Owner, "replica": 0, "epoch": 1, "host": good.Host, "bundle": good.Bundle, "grant": good.Grant}
		mut(m)
		if _, err := DecodePlacement(mk(kinds.KindPlacement, m)); !errors.Is(err, ErrBadBody) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := DecodeHostLost(mk(kinds.KindHostLost, kinds.HostLostBody{Host: sk.ID().Bytes(), Last: 5, Lease: 30})); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]any{
		"lease 0":  map[string]any{"host": sk.ID().Bytes(), "last": 5, "lease": 0},
		"negative": map[string]any{"host": sk.ID().Bytes(), "last": -1, "lease": 30},
		"bad host": map[string]any{"host": []byte{1}, "last": 5, "lease": 30},
		"extra":    map[string]any{"host": sk.ID().Bytes(), "last": 5, "lease": 30, "x": 1},
	} {
		if _, err := DecodeHostLost(mk(kinds.KindHostLost, b)); !errors.Is(err, ErrBadBody) {
			t.Errorf("host-lost %s: %v", name, err)
		}
	}
	// A refused placement takes no part: the state ignores it.
	st := New()
	if err := st.Add(mk(kinds.KindPlacement, map[string]any{"service": "web"})); !errors.Is(err, ErrBadBody) {
		t.Fatalf("add of a bad placement: %v", err)
	}
	if len(st.places) != 0 {
		t.Fatal("a refused placement was folded in")
	}
}

// The lease comes from the intent's policy, bounded.
func TestLeaseFromIntent(t *testing.T) {
	for v, want := range map[string]int64{"": DefaultLease, "45s": 45, "2m": 120, "10": 10, "0": DefaultLease, "nonsense": DefaultLease, "48h": DefaultLease} {
		d := crdt.Desired{}
		if v != "" {
			d.Policy = map[string]string{"lease": v}
		}
		if got := Lease(d); got != want {
			t.Errorf("lease %q: %d, want %d", v, got, want)
		}
	}
}

// FuzzDecodeBodies: any body bytes under either kind decode or are refused
// with ErrBadBody, never a panic; what decodes passes Validate and the
// state folds it.
func FuzzDecodeBodies(f *testing.F) {
	sk := simKey("owner")
	f.Add(canon.MustMarshal(kinds.PlacementBody{Service: "web", Owner: sk.ID().Bytes(), Epoch: 1, Host: sk.ID().Bytes(),
		Bundle: make([]byte, 32), Grant: make([]byte, 32)}), true)
	f.Add(canon.MustMarshal(kinds.HostLostBody{Host: sk.ID().Bytes(), Last: 1, Lease: 30}), false)
	f.Fuzz(func(t *testing.T, body []byte, placement bool) {
		kind := kinds.KindHostLost
		if placement {
			kind = kinds.KindPlacement
		}
		c, err := card.Sign(sk, 1, card.ID{}, card.Draft{Kind: kind, TS: 1, RawBody: body}, nil)
		if err != nil {
			return // not a body a card can carry
		}
		if placement {
			b, err := DecodePlacement(c)
			if err != nil && !errors.Is(err, ErrBadBody) {
				t.Fatalf("unwrapped error %v", err)
			}
			if err == nil && b.Validate() != nil {
				t.Fatal("decoded an invalid placement")
			}
		} else {
			b, err := DecodeHostLost(c)
			if err != nil && !errors.Is(err, ErrBadBody) {
				t.Fatalf("unwrapped error %v", err)
			}
			if err == nil && b.Validate() != nil {
				t.Fatal("decoded an invalid host-lost body")
			}
		}
		st := New()
		_ = st.Add(c)
		_ = st.Pass(sk.ID(), 100)
	})
}
