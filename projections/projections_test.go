package projections

import (
	"bytes"
	"errors"
	"github.com/sublog/sublog/log/kinds"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
)

var now = time.Unix(1_800_000_000, 0)

func setupHosts(w *world, owner string, hosts ...string) {
	for _, h := range hosts {
		w.profile(h, 4000, 4<<30, map[string]string{"zone": "eu"})
		w.grant(h, owner, "web")
	}
}

func TestTwoLaptopsConverge(t *testing.T) {
	w := newWorld(t, "owner", "l1", "l2", "h1", "h2")
	w.delegate("owner", "l1")
	w.delegate("owner", "l2")
	w.intent("owner", "owner", spec(1, "1.0.0"))
	setupHosts(w, "owner", "h1", "h2")
	for _, n := range []string{"l1", "l2"} {
		for _, o := range []string{"owner", "h1", "h2"} {
			w.sync(n, o)
		}
	}
	// Offline: different fields on each laptop, then the same field.
	c1 := w.intent("l1", "owner", spec(2, "1.0.0"))
	w.intent("l2", "owner", spec(1, "2.0.0"))
	m1, m2 := spec(2, "1.0.0"), spec(1, "2.0.0")
	big1, big2 := int64(128<<20), int64(256<<20)
	m1.Memory, m2.Memory = &big1, &big2
	w.intent("l1", "owner", m1)
	w.intent("l2", "owner", m2)
	w.sync("l1", "l2")

	s1, s2 := snapshot(w.views["l1"].st, now), snapshot(w.views["l2"].st, now)
	if !bytes.Equal(s1, s2) {
		t.Fatal("the laptops disagree after exchanging cards")
	}
	ds := w.views["l1"].st.Desired()
	if len(ds) != 1 || ds[0].Replicas != 2 || ds[0].Version != "2.0.0" {
		t.Fatalf("merged desired %+v", ds)
	}
	if ds[0].Memory != big1 && ds[0].Memory != big2 {
		t.Fatalf("memory %d", ds[0].Memory)
	}
	if len(ds[0].Conflicts) != 1 || ds[0].Conflicts[0].Path != "spec.resources.memory" {
		t.Fatalf("conflicts %+v", ds[0].Conflicts)
	}
	if got := ds[0].Conflicts[0].Winner.Value; got != "i:"+itoa(ds[0].Memory) {
		t.Fatalf("winner %s, memory %d", got, ds[0].Memory)
	}
	plan := w.views["l1"].st.Plan(now)
	if len(plan.Actions) != 2 || plan.Actions[0].Action != ActDeploy || plan.Actions[1].Action != ActDeploy {
		t.Fatalf("plan %+v", plan)
	}
	found := false
	for _, c := range plan.Actions[0].Causes {
		if c.Card == c1.ID().String() && strings.Contains(c.Authority, "delegated by") {
			found = true
		}
	}
	if !found {
		t.Fatalf("deploy does not cite l1's replicas card with its delegation: %+v", plan.Actions[0].Causes)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRevokedDeviceCannotChangeIntent(t *testing.T) {
	w := newWorld(t, "owner", "l1", "l3", "h1")
	w.delegate("owner", "l1")
	w.delegate("owner", "l3")
	w.intent("owner", "owner", spec(1, "1.0.0"))
	w.sync("owner", "l3")
	w.sync("owner", "l1")
	before := w.intent("l3", "owner", spec(3, "1.0.0")) // counts: the owner saw it
	w.sync("owner", "l3")
	rev := w.undelegate("owner", "l3")
	after := w.intent("l3", "owner", spec(3, "6.6.6")) // l3 has not seen the revocation
	// l1 picks up l3's later card before it hears of the revocation and
	// builds on it: that card waits for a change that never counts.
	w.sync("l1", "l3")
	onTop := w.intent("l1", "owner", spec(3, "6.6.6-plus"))
	for _, n := range []string{"l1", "l3", "h1"} {
		w.sync("owner", n)
	}
	for _, n := range []string{"owner", "l1", "l3"} {
		st := w.views[n].st
		ds := st.Desired()
		if len(ds) != 1 || ds[0].Replicas != 3 || ds[0].Version != "1.0.0" {
			t.Fatalf("%s: desired %+v", n, ds)
		}
		if v := st.Explain(before.ID(), now); v.Verdict != "applied" {
			t.Fatalf("%s: before the revocation point: %+v", n, v)
		}
		if v := st.Explain(after.ID(), now); v.Verdict != "ignored" || !strings.Contains(v.Reason, rev.ID().String()) {
			t.Fatalf("%s: after the revocation point: %+v", n, v)
		}
		if v := st.Explain(onTop.ID(), now); v.Verdict != "pending" {
			t.Fatalf("%s: built on revoked intent: %+v", n, v)
		}
	}
	// Any arrival order gives the same bytes.
	ref := snapshot(fold(w.all()), now)
	for _, n := range []string{"owner", "l1", "l3"} {
		if got := snapshot(w.views[n].st, now); !bytes.Equal(got, ref) {
			t.Fatalf("%s's incremental view differs from a full replay", n)
		}
	}
}

func TestRevokeWithoutPositionCountsNothing(t *testing.T) {
	w := newWorld(t, "owner", "l1")
	d := w.delegate("owner", "l1")
	w.sync("owner", "l1")
	w.intent("l1", "owner", spec(2, "1.0.0"))
	w.sync("owner", "l1")
	if ds := w.views["owner"].st.Desired(); len(ds) != 1 || ds[0].Replicas != 2 {
		t.Fatalf("before revoke: %+v", ds)
	}
	w.revoke("owner", d)
	if ds := w.views["owner"].st.Desired(); len(ds) != 0 {
		t.Fatalf("a revoke card naming the delegation (no position) must leave none of the device's intent: %+v", ds)
	}
}

func TestDelegationScope(t *testing.T) {
	w := newWorld(t, "owner", "l1", "stranger")
	w.delegate("owner", "l1", "api")
	w.sync("owner", "l1")
	c := w.intent("l1", "owner", spec(2, "1"))
	s := w.intent("stranger", "owner", spec(5, "x"))
	w.sync("owner", "l1")
	w.sync("owner", "stranger")
	st := w.views["owner"].st
	if len(st.Desired()) != 0 {
		t.Fatalf("out-of-scope intent counted: %+v", st.Desired())
	}
	if v := st.Explain(c.ID(), now); v.Verdict != "ignored" || !strings.Contains(v.Reason, "scope") {
		t.Fatalf("%+v", v)
	}
	if v := st.Explain(s.ID(), now); v.Verdict != "ignored" || !strings.Contains(v.Reason, "not a device") {
		t.Fatalf("%+v", v)
	}
	// Widening the scope later makes the earlier card count.
	w.delegate("owner", "l1", "web")
	if ds := w.views["owner"].st.Desired(); len(ds) != 1 || ds[0].Replicas != 2 {
		t.Fatalf("after widening: %+v", ds)
	}
}

func TestBadAutomergeIsRefusedAndHarmless(t *testing.T) {
	w := newWorld(t, "owner", "h1")
	w.intent("owner", "owner", spec(2, "1.0.0"))
	good := snapshot(w.views["owner"].st, now)
	bads := [][]byte{
		[]byte("definitely not automerge"),
		{0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 3, 1, 2, 3},
		nil,
	}
	for _, b := range bads {
		c := w.append("owner", card.KindIntent, IntentBody{Service: "web", Owner: w.id("owner").Bytes(), Changes: b})
		if err := Check(c); !errors.Is(err, ErrBadIntent) {
			t.Fatalf("Check(%x) = %v", b, err)
		}
		if v := w.views["owner"].st.Explain(c.ID(), now); v.Verdict != "refused" {
			t.Fatalf("%+v", v)
		}
	}
	if !bytes.Equal(good, snapshot(w.views["owner"].st, now)) {
		t.Fatal("a refused intent card changed the projections")
	}
	// Real changes made by another actor, passed off as the author's.
	other := crdt.New(w.id("owner"), "web")
	forged, err := other.Build(w.id("h1"), spec(9, "9"), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	c := w.append("owner", card.KindIntent, IntentBody{Service: "web", Owner: w.id("owner").Bytes(), Changes: forged})
	if err := Check(c); !errors.Is(err, crdt.ErrWrongActor) {
		t.Fatalf("forged actor: %v", err)
	}
	// Later good intent still applies.
	w.intent("owner", "owner", spec(3, "1.0.0"))
	if ds := w.views["owner"].st.Desired(); ds[0].Replicas != 3 {
		t.Fatalf("%+v", ds)
	}
}

func TestPlanMoveSuspendResumeRemove(t *testing.T) {
	w := newWorld(t, "owner", "h1", "h2", "h3")
	w.intent("owner", "owner", spec(1, "1.0.0"))
	setupHosts(w, "owner", "h1", "h2")
	w.profile("h3", 100, 1<<20, nil) // too small
	w.grant("h3", "owner", "web")
	all := func() *State { return fold(w.all()) }

	p := all().Plan(now)
	if len(p.Actions) != 1 || p.Actions[0].Action != ActDeploy {
		t.Fatalf("initial plan %+v", p)
	}
	host := p.Actions[0].Host
	hn := map[string]string{w.id("h1").String(): "h1", w.id("h2").String(): "h2"}[host]
	w.observe(hn, "owner", "web", kinds.StateRunning)
	if p := all().Plan(now); len(p.Actions) != 0 {
		t.Fatalf("converged plan not empty: %+v", p)
	}
	// The host withdraws consent: move, citing the revoke.
	var g *card.Card
	for _, c := range w.logs[w.id(hn)] {
		if c.Kind() == card.KindGrant {
			g = c
		}
	}
	rev := w.revoke(hn, g)
	p = all().Plan(now)
	if len(p.Actions) != 1 || p.Actions[0].Action != ActMove || p.Actions[0].Host != host {
		t.Fatalf("after revoke %+v", p)
	}
	cited := false
	for _, c := range p.Actions[0].Causes {
		cited = cited || (c.Card == rev.ID().String() && c.Authority != "")
	}
	if !cited {
		t.Fatalf("move does not cite the revoke: %+v", p.Actions[0])
	}
	// Scale to zero: suspend; back to one: resume where it is.
	other := map[string]string{"h1": "h2", "h2": "h1"}[hn]
	w.observe(hn, "owner", "web", kinds.StateMoved)
	w.observe(other, "owner", "web", kinds.StateRunning)
	w.intent("owner", "owner", spec(0, "1.0.0"))
	if p := all().Plan(now); len(p.Actions) != 1 || p.Actions[0].Action != ActSuspend {
		t.Fatalf("replicas 0: %+v", p)
	}
	w.observe(other, "owner", "web", kinds.StateSuspended)
	w.intent("owner", "owner", spec(1, "1.0.0"))
	if p := all().Plan(now); len(p.Actions) != 1 || p.Actions[0].Action != ActResume {
		t.Fatalf("replicas 1: %+v", p)
	}
	w.observe(other, "owner", "web", kinds.StateRunning)
	w.intent("owner", "owner", &crdt.Manifest{Service: "web", Remove: true})
	if p := all().Plan(now); len(p.Actions) != 1 || p.Actions[0].Action != ActRemove {
		t.Fatalf("removed: %+v", p)
	}
	// With too little everywhere, the plan says why.
	w2 := newWorld(t, "owner", "h3")
	w2.intent("owner", "owner", spec(1, "1"))
	w2.profile("h3", 100, 1<<20, nil)
	w2.grant("h3", "owner", "web")
	p = fold(w2.all()).Plan(now)
	if len(p.Unmet) != 1 || !strings.Contains(strings.Join(p.Unmet[0].Reasons, " "), "profile does not fit") {
		t.Fatalf("unmet: %+v", p)
	}
}

func TestCRLWithdrawsGrantAndDelegation(t *testing.T) {
	w := newWorld(t, "owner", "l1", "h1")
	d := w.delegate("owner", "l1")
	w.sync("owner", "l1")
	w.intent("l1", "owner", spec(1, "1"))
	w.profile("h1", 4000, 4<<30, nil)
	g := w.grant("h1", "owner", "web")
	st := fold(w.all())
	if len(st.Desired()) != 1 || len(st.Plan(now).Actions) != 1 {
		t.Fatalf("before: %+v %+v", st.Desired(), st.Plan(now))
	}
	w.append("h1", card.KindCRL, CRLBody{Revoked: [][]byte{idBytes(g.ID())}})
	if p := fold(w.all()).Plan(now); len(p.Actions) != 0 || len(p.Unmet) != 1 {
		t.Fatalf("a crl naming the grant must withdraw it: %+v", p)
	}
	w.append("owner", card.KindCRL, CRLBody{Revoked: [][]byte{idBytes(d.ID())}})
	if ds := fold(w.all()).Desired(); len(ds) != 0 {
		t.Fatalf("a crl naming the delegation must revoke it (no position: nothing counts): %+v", ds)
	}
}

// Grant bodies are judged by the one check the executor also uses
// (kinds.GrantBody.Validate): a grant the executor would refuse for its
// shape gives no placement either.
func TestMalformedGrantsGiveNoPlacement(t *testing.T) {
	w := newWorld(t, "owner", "h1")
	for _, g := range []GrantBody{
		{},
		{Service: "web", Owner: w.id("owner").Bytes(), Caps: []string{"net"}},
		{Service: "web", Owner: w.id("owner").Bytes(), Expires: -5},
		{Service: "web", Owner: w.id("owner").Bytes(), Limits: GrantLimits{Memory: 100}},
		{Bundle: []byte{1, 2, 3}},
	} {
		c := w.append("h1", card.KindGrant, g)
		if err := Check(c); !errors.Is(err, ErrBadBody) {
			t.Fatalf("%+v: Check = %v", g, err)
		}
		if v := w.views["h1"].st.Explain(c.ID(), now); v.Verdict != "refused" {
			t.Fatalf("%+v: %+v", g, v)
		}
	}
	for _, hv := range w.views["h1"].st.Observed() {
		if len(hv.Grants) != 0 {
			t.Fatalf("a malformed grant is shown as consent: %+v", hv.Grants)
		}
	}
}
