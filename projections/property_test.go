package projections

import (
	"bytes"
	"flag"
	"fmt"
	"github.com/sublog/sublog/log/kinds"
	"testing"

	"pgregory.net/rapid"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// atLeastChecks raises rapid's default of 100 cases for the properties the
// issue asks 1,000 of (an explicit -rapid.checks still wins).
func atLeastChecks(n int) {
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == "100" {
		_ = f.Value.Set(fmt.Sprint(n))
	}
}

var actors = []string{"owner", "l1", "l2", "l3", "h1", "h2", "h3"}
var laptops = []string{"l1", "l2", "l3"}
var hostNames = []string{"h1", "h2", "h3"}

// randomHistory drives a world through random steps: intent edits on any
// owner device from its own (possibly stale) view, syncs between pairs,
// delegations and revocations, profiles, grants, grant revocations and
// observations.
func randomHistory(t *rapid.T, tb testing.TB) *world {
	w := newWorld(tb, actors...)
	grants := map[string]*card.Card{}
	steps := rapid.IntRange(5, 40).Draw(t, "steps")
	for i := 0; i < steps; i++ {
		switch rapid.IntRange(0, 9).Draw(t, "op") {
		case 0, 1, 2:
			who := rapid.SampledFrom(append([]string{"owner"}, laptops...)).Draw(t, "author")
			svc := rapid.SampledFrom([]string{"web", "api"}).Draw(t, "service")
			m := spec(int64(rapid.IntRange(0, 3).Draw(t, "replicas")), rapid.SampledFrom([]string{"1", "2", "3"}).Draw(t, "version"))
			m.Service = svc
			if rapid.Bool().Draw(t, "label") {
				m.Labels = map[string]string{"zone": rapid.SampledFrom([]string{"eu", "us"}).Draw(t, "zone")}
			}
			if rapid.IntRange(0, 9).Draw(t, "remove") == 0 {
				m = &crdt.Manifest{Service: svc, Remove: true}
			}
			if _, err := w.tryIntent(who, "owner", m); err != nil {
				// A device whose own earlier cards do not count (no
				// delegation yet) has a stale actor sequence: skip.
				continue
			}
		case 3, 4:
			a := rapid.SampledFrom(actors).Draw(t, "a")
			b := rapid.SampledFrom(actors).Draw(t, "b")
			if a != b {
				w.sync(a, b)
			}
		case 5:
			dev := rapid.SampledFrom(laptops).Draw(t, "dev")
			if rapid.Bool().Draw(t, "scoped") {
				w.delegate("owner", dev, "web")
			} else {
				w.delegate("owner", dev)
			}
		case 6:
			w.undelegate("owner", rapid.SampledFrom(laptops).Draw(t, "undev"))
		case 7:
			h := rapid.SampledFrom(hostNames).Draw(t, "host")
			w.profile(h, uint64(rapid.IntRange(0, 4).Draw(t, "cpu"))*500, uint64(rapid.IntRange(0, 4).Draw(t, "mem"))<<26,
				map[string]string{"zone": rapid.SampledFrom([]string{"eu", "us"}).Draw(t, "hzone")})
		case 8:
			h := rapid.SampledFrom(hostNames).Draw(t, "ghost")
			if g := grants[h]; g != nil && rapid.Bool().Draw(t, "revoke") {
				w.revoke(h, g)
				grants[h] = nil
			} else {
				grants[h] = w.grant(h, "owner", rapid.SampledFrom([]string{"web", "api"}).Draw(t, "gsvc"))
			}
		case 9:
			h := rapid.SampledFrom(hostNames).Draw(t, "ohost")
			w.observe(h, "owner", rapid.SampledFrom([]string{"web", "api"}).Draw(t, "osvc"),
				rapid.SampledFrom([]string{kinds.StateRunning, kinds.StateSuspended, kinds.StateMoved, kinds.StateFailed}).Draw(t, "state"))
		}
	}
	return w
}

// interleave draws an arrival order that respects every author's chain.
func interleave(t *rapid.T, w *world, label string) []*card.Card {
	var authors []key.ID
	for a := range w.logs {
		authors = append(authors, a)
	}
	// Map iteration order must not leak into the draw.
	sortIDs(authors)
	pos := map[key.ID]int{}
	var out []*card.Card
	for {
		var live []key.ID
		for _, a := range authors {
			if pos[a] < len(w.logs[a]) {
				live = append(live, a)
			}
		}
		if len(live) == 0 {
			return out
		}
		a := live[rapid.IntRange(0, len(live)-1).Draw(t, label)]
		out = append(out, w.logs[a][pos[a]])
		pos[a]++
	}
}

func sortIDs(ids []key.ID) {
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j].Compare(ids[j-1]) < 0; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
}

// TestArrivalOrderDoesNotMatter: every chain-respecting arrival order of a
// random history gives byte-identical desired state, observed state and
// plan; and folding incrementally (with queries in between) equals a full
// replay of the same prefix.
func TestArrivalOrderDoesNotMatter(t *testing.T) {
	atLeastChecks(1000)
	var cases, conflicts, ignored, pending, actions int
	defer func() {
		t.Logf("%d histories: %d with conflicts, %d with ignored intent, %d with pending intent, %d with plan actions",
			cases, conflicts, ignored, pending, actions)
	}()
	rapid.Check(t, func(rt *rapid.T) {
		w := randomHistory(rt, t)
		full := fold(w.all())
		ref := snapshot(full, now)
		cases++
		seen := map[string]bool{}
		for _, d := range full.Desired() {
			if len(d.Conflicts) > 0 {
				seen["c"] = true
			}
		}
		for _, c := range w.all() {
			if v := full.Explain(c.ID(), now); !codeAgrees(v) {
				rt.Fatalf("the code %q does not match the verdict %q (%s)", v.Code, v.Verdict, v.Reason)
			}
			switch full.Explain(c.ID(), now).Verdict {
			case "ignored":
				seen["i"] = seen["i"] || c.Kind() == card.KindIntent
			case "pending":
				seen["p"] = true
			}
		}
		if len(full.Plan(now).Actions) > 0 {
			seen["a"] = true
		}
		// A revoked device's intent after the position its revocation names
		// never counts.
		cut := map[key.ID]uint64{}
		for _, c := range w.logs[w.id("owner")] {
			var b DelegateBody
			if c.Kind() == card.KindDelegate && c.DecodeBody(&b) == nil && b.Revoked {
				d := mustID(b.Device)
				if u, ok := cut[d]; !ok || *b.Upto < u {
					cut[d] = *b.Upto
				}
			}
		}
		for d, u := range cut {
			for _, c := range w.logs[d] {
				if c.Kind() == card.KindIntent && c.Seq() > u {
					if v := full.Explain(c.ID(), now); v.Verdict == "applied" {
						rt.Fatalf("device card seq %d after revocation at %d counted: %+v", c.Seq(), u, v)
					}
				}
			}
		}
		for k, n := range map[string]*int{"c": &conflicts, "i": &ignored, "p": &pending, "a": &actions} {
			if seen[k] {
				*n++
			}
		}
		for k := 0; k < 2; k++ {
			order := interleave(rt, w, fmt.Sprintf("order%d", k))
			inc := New()
			cut := rapid.IntRange(0, len(order)).Draw(rt, "cut")
			for i, c := range order {
				inc.Add(c)
				if i+1 == cut {
					// Incremental state at a prefix equals a full replay
					// of the prefix (which is itself a valid history).
					if !bytes.Equal(snapshot(inc, now), snapshot(fold(order[:cut]), now)) {
						rt.Fatalf("incremental fold differs from a full replay after %d cards", cut)
					}
				}
			}
			if got := snapshot(inc, now); !bytes.Equal(got, ref) {
				rt.Fatalf("arrival order %d gives different projections:\n%x\n%x", k, got, ref)
			}
		}
		// Every participant's own view, built incrementally while it made
		// its cards, converges on the same bytes once all have synced.
		for _, a := range actors[1:] {
			w.sync("owner", a)
		}
		for _, a := range actors {
			w.sync("owner", a)
			if got := snapshot(w.views[a].st, now); !bytes.Equal(got, ref) {
				rt.Fatalf("%s's view differs from the full replay after syncing", a)
			}
		}
	})
}

// codeAgrees reports whether a Status's stable code is one its verdict can
// have (explainCode and Explain decide alike).
func codeAgrees(v Status) bool {
	allowed := map[string][]string{
		"applied":    {CodeIntentApplied},
		"refused":    {CodeRefused, CodeIntentRefused},
		"ignored":    {CodeIntentNotCounted, CodeRevokeForeign, CodeNotInterpreted},
		"pending":    {CodeIntentPending},
		"superseded": {CodeProfileSuperseded, CodeObserveSuperseded},
		"live":       {CodeDelegateLive, CodeProfileLatest, CodeGrantLive, CodeObserveLatest},
		"revoked":    {CodeRevoked},
		"expired":    {CodeGrantExpired},
		"recorded":   {CodeDelegateRevoked, CodeRevokeRecorded, CodeRevokeUnseen, CodeCRLRecorded},
		"unknown":    {CodeUnknown},
	}
	for _, c := range allowed[v.Verdict] {
		if c == v.Code {
			return v.Author != "" && v.Time != "" && v.Seq > 0
		}
	}
	return false
}
