package projections_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/sublog/sublog/golden"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/projections"
)

// The timeline depends on the set of cards only: every arrival order (and
// duplicates) gives the same entries and summary.
func TestTimelineIsAFoldOverTheSet(t *testing.T) {
	chain, err := golden.Chain()
	if err != nil {
		t.Fatal(err)
	}
	bob := golden.Fixture("bob")
	prev := card.ID{}
	for i := range 5 {
		c, err := card.Sign(bob, uint64(i+1), prev, card.Draft{Kind: "note", TS: golden.BaseTS + 3}, caps.Builtin())
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
		prev = c.ID()
	}
	render := func(cs []*card.Card) string {
		tl := projections.NewTimeline()
		for _, c := range cs {
			tl.Add(c)
		}
		b, _ := json.Marshal([]any{tl.Entries(), tl.Summary()})
		return string(b)
	}
	want := render(chain)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		shuffled := append([]*card.Card(nil), chain...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		shuffled = append(shuffled, shuffled[:rng.IntN(len(shuffled))]...) // duplicates
		if got := render(shuffled); got != want {
			t.Fatalf("order changed the timeline:\n%s\n%s", got, want)
		}
	}
	tl := projections.NewTimeline()
	for _, c := range chain {
		tl.Add(c)
	}
	s := tl.Summary()
	if s.Cards != 15 || s.Logs != 2 || s.Kinds["note"] != 6 {
		t.Fatalf("%+v", s)
	}
	e := tl.Entries()
	for i := 1; i < len(e); i++ {
		if e[i].Time.Before(e[i-1].Time) {
			t.Fatal("not in time order")
		}
	}
}
