package reconcile

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// oneService: the owner delegates to its laptop, one service of one
// replica, three hosts granting it; everyone synced.
func oneService(t *testing.T) (*sim, map[int]*card.Card) {
	s := newSim(t, 1)
	s.append(ctrlA, card.KindDelegate, kinds.DelegateBody{Device: s.id(ctrlB).Bytes()})
	r, mem := int64(1), int64(1<<20)
	s.intent(ctrlA, &crdt.Manifest{Service: "counter", Replicas: &r, Bundle: fmt.Sprintf("sha256:%064x", 9), Memory: &mem})
	grants := map[int]*card.Card{}
	for h := host0; h < host0+nHost; h++ {
		s.append(h, card.KindProfile, map[string]any{"cpu": 1000, "memory": 1 << 30, "disk": 1 << 30, "gpu": 0})
		grants[h] = s.grant(h, "counter")
	}
	s.sync()
	return s, grants
}

func (s *sim) hostIndex(id key.ID) int {
	for i := range s.nodes {
		if s.id(i) == id {
			return i
		}
	}
	return -1
}

// Two controllers that write placements of one replica at the same epoch
// (a partition) merge by the smaller card ID: both then agree, exactly one
// host has the duty, and neither writes again.
func TestConcurrentPlacementsMergeBySmallerCardID(t *testing.T) {
	s, grants := oneService(t)
	var cards []*card.Card
	for i, ctrl := range []int{ctrlA, ctrlB} {
		h := host0 + i
		cards = append(cards, s.append(ctrl, kinds.KindPlacement, &kinds.PlacementBody{Service: "counter", Owner: s.id(ctrlA).Bytes(),
			Replica: 0, Epoch: 1, Host: s.id(h).Bytes(), Bundle: make([]byte, 32), Grant: idBytes(grants[h].ID())}))
	}
	s.sync()
	winner := cards[0]
	if a, b := cards[1].ID(), winner.ID(); string(a[:]) < string(b[:]) {
		winner = cards[1]
	}
	wb, _ := DecodePlacement(winner)
	for _, ctrl := range []int{ctrlA, ctrlB} {
		d := s.nodes[ctrl].st.Pass(s.id(ctrl), s.now)
		if len(d.Writes) != 0 || len(d.Placements) != 1 || d.Placements[0].Card != winner.ID() {
			t.Fatalf("controller %d: writes %d, placements %+v, want the smaller ID %s", ctrl, len(d.Writes), d.Placements, winner.ID())
		}
	}
	running := 0
	for h := host0; h < host0+nHost; h++ {
		if n := len(s.nodes[h].st.Duties(s.id(h), s.now)); n > 0 {
			running++
			if string(s.id(h).Bytes()) != string(wb.Host) {
				t.Fatalf("host %d runs the replica; the winning placement names another", h)
			}
		}
	}
	if running != 1 {
		t.Fatalf("%d hosts run the replica", running)
	}
}

// A revoke stops the replica on that host at once (its duties, at the
// same now) and the controller rehosts it with the next epoch.
func TestRevokeStopsAtOnceAndRehosts(t *testing.T) {
	s, grants := oneService(t)
	d := s.control(ctrlA)
	if len(d.Writes) != 1 {
		t.Fatalf("first pass: %d writes", len(d.Writes))
	}
	s.sync()
	h := s.hostIndex(d.Placements[0].Host)
	duties := s.nodes[h].st.Duties(s.id(h), s.now)
	if len(duties) != 1 {
		t.Fatal("the placed host has no duty")
	}
	s.append(h, card.KindRevoke, kinds.RevokeBody{Card: idBytes(grants[h].ID())})
	if n := len(s.nodes[h].st.Duties(s.id(h), s.now)); n != 0 {
		t.Fatalf("after its own revoke the host still has %d duties", n)
	}
	s.sync()
	d2 := s.control(ctrlA)
	if len(d2.Writes) != 1 {
		t.Fatalf("rehosting pass: %d writes", len(d2.Writes))
	}
	pb := d2.Writes[0].Body.(*kinds.PlacementBody)
	if pb.Epoch != 2 || string(pb.Host) == string(s.id(h).Bytes()) || string(pb.Supersedes) != string(idBytes(duties[0].Placement)) {
		t.Fatalf("rehosted as %+v", pb)
	}
}

// A lost host is declared once; when it returns it is not chosen again
// until it has been heard for a lease past the declaration, and it stops
// its stale replica as soon as it holds the newer placement.
func TestHostLossDeclaredOnceAndReturnHysteresis(t *testing.T) {
	s, _ := oneService(t)
	s.tick()
	d := s.nodes[ctrlA].st.Pass(s.id(ctrlA), s.now)
	lostHost := s.hostIndex(d.Placements[0].Host)
	s.down[lostHost] = true
	for i := 0; i < DefaultLease+5; i++ {
		s.tick()
	}
	// Each controller declares the loss once (both pass in the same second
	// on the same cards, so both may), and never again for this episode.
	for _, ctrl := range []int{ctrlA, ctrlB} {
		n := 0
		for _, c := range s.logs[s.id(ctrl)] {
			if c.Kind() == kinds.KindHostLost {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("controller %d wrote %d host-lost cards for one loss", ctrl, n)
		}
	}
	if s.written[kinds.KindHostLost] == 0 {
		t.Fatal("no host-lost card")
	}
	st := s.nodes[ctrlA].st
	sv := &st.services()[0]
	if w := st.ineligible(s.id(lostHost), sv, &capLeft{1 << 40, 1 << 40, 1 << 40, 1 << 40}, nil, s.now); !strings.Contains(w, "not heard") {
		t.Fatalf("lost host: %q", w)
	}
	s.down[lostHost] = false
	for i := 0; i < 5; i++ {
		s.tick()
	}
	if len(s.nodes[lostHost].st.Duties(s.id(lostHost), s.now)) != 0 {
		t.Fatal("the returning host still has its stale replica")
	}
	if w := st.ineligible(s.id(lostHost), sv, &capLeft{1 << 40, 1 << 40, 1 << 40, 1 << 40}, nil, s.now); !strings.Contains(w, "back from a loss") {
		t.Fatalf("returning host: %q", w)
	}
	for i := 0; i < DefaultLease; i++ {
		s.tick()
	}
	if w := st.ineligible(s.id(lostHost), sv, &capLeft{1 << 40, 1 << 40, 1 << 40, 1 << 40}, nil, s.now); w != "" {
		t.Fatalf("a lease after returning the host is still ineligible: %q", w)
	}
	// Placements: the first (by both controllers, or one), the rehosting
	// (likewise); none moves the replica back once the host returns.
	d = s.nodes[ctrlA].st.Pass(s.id(ctrlA), s.now)
	if len(d.Writes) != 0 || d.Placements[0].Host == s.id(lostHost) || s.written[kinds.KindPlacement] > 4 {
		t.Fatalf("after the return: %d writes, %d placements in all, placed on the returned host: %v",
			len(d.Writes), s.written[kinds.KindPlacement], d.Placements[0].Host == s.id(lostHost))
	}
}

// The pass depends on the set of cards, not the order authors' logs
// arrive in: two states fed the same simulation's cards interleaved
// differently (each log in chain order) decide the same bytes.
func TestPassIndependentOfArrivalOrder(t *testing.T) {
	for seed := int64(1); seed <= 10; seed++ {
		s := newSim(t, seed)
		s.setup()
		for i := 0; i < 60; i++ {
			if i == 20 {
				s.down[host0] = true
			}
			if i == 25 {
				s.group[ctrlB] = 1
			}
			s.tick()
		}
		var out []string
		for k := 0; k < 2; k++ {
			st := New()
			rng := rand.New(rand.NewSource(seed*10 + int64(k)))
			next := map[key.ID]int{}
			var authors []key.ID
			for a := range s.logs {
				authors = append(authors, a)
			}
			for {
				var open []key.ID
				for _, a := range authors {
					if next[a] < len(s.logs[a]) {
						open = append(open, a)
					}
				}
				if len(open) == 0 {
					break
				}
				a := open[rng.Intn(len(open))]
				_ = st.Add(s.logs[a][next[a]])
				next[a]++
			}
			d := st.Pass(s.id(ctrlA), s.now)
			var b strings.Builder
			for _, w := range d.Writes {
				fmt.Fprintf(&b, "%s %x\n", w.Kind, canon.MustMarshal(w.Body))
			}
			fmt.Fprintf(&b, "%v %s", d.Placements, d.UnmetText())
			out = append(out, b.String())
		}
		if out[0] != out[1] {
			t.Fatalf("seed %d: arrival order changed the pass:\n%s\n---\n%s", seed, out[0], out[1])
		}
	}
}

// A placement by someone who does not speak for the owner is ignored: it
// neither decides where the replica runs nor pushes the epochs.
func TestStrangerPlacementIgnored(t *testing.T) {
	s, grants := oneService(t)
	stranger := &simNode{name: "stranger", sk: simKey("stranger"), st: New(), held: map[key.ID]int{}}
	s.nodes = append(s.nodes, stranger)
	s.group, s.down = append(s.group, 0), append(s.down, false)
	st := len(s.nodes) - 1
	s.append(st, kinds.KindPlacement, &kinds.PlacementBody{Service: "counter", Owner: s.id(ctrlA).Bytes(), Replica: 0,
		Epoch: kinds.MaxEpoch, Host: s.id(host0).Bytes(), Bundle: make([]byte, 32), Grant: idBytes(grants[host0].ID())})
	s.sync()
	d := s.control(ctrlA)
	if len(d.Writes) != 1 || d.Writes[0].Body.(*kinds.PlacementBody).Epoch != 1 {
		t.Fatalf("writes %+v", d.Writes)
	}
	s.sync()
	if d := s.control(ctrlA); len(d.Writes) != 0 {
		t.Fatalf("second pass wrote %d cards", len(d.Writes))
	}
	for h := host0; h < host0+nHost; h++ {
		for _, du := range s.nodes[h].st.Duties(s.id(h), s.now) {
			if du.Epoch != 1 {
				t.Fatalf("host %d follows the stranger's placement", h)
			}
		}
	}
}
