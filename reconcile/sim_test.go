package reconcile

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
	"github.com/sublog/sublog/projections"
)

// simNode is one identity of the in-process simulation: its own log and
// its own view (a prefix of every log it has received, as a store holds).
type simNode struct {
	name string
	sk   *key.Secret
	st   *State
	held map[key.ID]int // how many cards of each log it holds
}

type sim struct {
	t     testing.TB
	rng   *rand.Rand
	now   int64
	logs  map[key.ID][]*card.Card
	nodes []*simNode
	group []int  // partition group of each node
	down  []bool // a crashed host: no cards, no sync
	// written counts the cards controllers wrote by kind.
	written map[string]int
}

const (
	ctrlA = 0 // the owner's own controller
	ctrlB = 1 // a device the owner delegated to (a second laptop)
	host0 = 2 // three hosts: 2, 3, 4
	nHost = 3
)

func simKey(name string) *key.Secret {
	s := sha256.Sum256([]byte("reconcile sim " + name))
	k, err := key.FromSeed(s[:])
	if err != nil {
		panic(err)
	}
	return k
}

func newSim(t testing.TB, seed int64) *sim {
	s := &sim{t: t, rng: rand.New(rand.NewSource(seed)), now: 1_800_000_000, logs: map[key.ID][]*card.Card{},
		written: map[string]int{}}
	for _, n := range []string{"owner", "laptop", "h0", "h1", "h2"} {
		s.nodes = append(s.nodes, &simNode{name: n, sk: simKey(n), st: New(), held: map[key.ID]int{}})
	}
	s.group = make([]int, len(s.nodes))
	s.down = make([]bool, len(s.nodes))
	return s
}

func (s *sim) id(n int) key.ID { return s.nodes[n].sk.ID() }

// append signs the next card of node n's log at the current time.
func (s *sim) append(n int, kind string, body any) *card.Card {
	s.t.Helper()
	nd := s.nodes[n]
	log := s.logs[nd.sk.ID()]
	var prev card.ID
	if len(log) > 0 {
		prev = log[len(log)-1].ID()
	}
	c, err := card.Sign(nd.sk, uint64(len(log)+1), prev, card.Draft{Kind: kind, TS: s.now, Body: body}, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	s.logs[nd.sk.ID()] = append(log, c)
	s.give(nd, nd.sk.ID(), len(log)+1)
	return c
}

// give lets nd hold author's log up to n cards, in chain order.
func (s *sim) give(nd *simNode, author key.ID, n int) {
	for i := nd.held[author]; i < n; i++ {
		if err := nd.st.Add(s.logs[author][i]); err != nil {
			s.t.Fatalf("%s: add: %v", nd.name, err)
		}
	}
	if n > nd.held[author] {
		nd.held[author] = n
	}
}

// sync exchanges every log among the up nodes of each partition group.
func (s *sim) sync() {
	groups := map[int][]*simNode{}
	for i, nd := range s.nodes {
		if !s.down[i] {
			groups[s.group[i]] = append(groups[s.group[i]], nd)
		}
	}
	for g := 0; g < len(s.nodes); g++ {
		members := groups[g]
		max := map[key.ID]int{}
		for _, nd := range members {
			for a, n := range nd.held {
				if n > max[a] {
					max[a] = n
				}
			}
		}
		for _, nd := range members {
			for a, n := range max {
				s.give(nd, a, n)
			}
		}
	}
}

func (s *sim) intent(n int, m *crdt.Manifest) {
	s.t.Helper()
	o := s.id(ctrlA)
	d := s.nodes[n].st.ps.Doc(o, m.Service)
	if d == nil {
		d = crdt.New(o, m.Service)
	}
	ch, err := d.Build(s.id(n), m, time.Unix(s.now, 0))
	if err != nil {
		s.t.Fatal(err)
	}
	s.append(n, card.KindIntent, projections.IntentBody{Service: m.Service, Owner: o.Bytes(), Changes: ch})
}

func (s *sim) grant(h int, service string) *card.Card {
	return s.append(h, card.KindGrant, kinds.GrantBody{Service: service, Owner: s.id(ctrlA).Bytes(),
		Limits: kinds.Limits{Memory: 1 << 30, Instances: 4}})
}

// control runs one pass of controller n and appends what it decides.
func (s *sim) control(n int) *Decision {
	d := s.nodes[n].st.Pass(s.id(n), s.now)
	for _, w := range d.Writes {
		s.append(n, w.Kind, w.Body)
		s.written[w.Kind]++
	}
	return d
}

var simServices = []struct {
	name     string
	replicas int64
}{{"counter", 1}, {"web", 2}}

// setup: the owner delegates to its laptop and states intent; every host
// publishes a profile and grants both services.
func (s *sim) setup() map[int]map[string]*card.Card {
	s.append(ctrlA, card.KindDelegate, kinds.DelegateBody{Device: s.id(ctrlB).Bytes()})
	bundle := fmt.Sprintf("sha256:%064x", 7)
	mem := int64(64 << 20)
	for _, sv := range simServices {
		r := sv.replicas
		s.intent(ctrlA, &crdt.Manifest{Service: sv.name, Replicas: &r, Bundle: bundle, Memory: &mem})
	}
	grants := map[int]map[string]*card.Card{}
	for h := host0; h < host0+nHost; h++ {
		s.append(h, card.KindProfile, projections.ProfileBody{CPU: 4000, Memory: 8 << 30, Disk: 1 << 30})
		grants[h] = map[string]*card.Card{}
		for _, sv := range simServices {
			grants[h][sv.name] = s.grant(h, sv.name)
		}
	}
	s.sync()
	return grants
}

// tick advances one simulated second: hosts that are up write a heartbeat
// every 5 s, groups sync, both controllers pass.
func (s *sim) tick() {
	s.now++
	if s.now%5 == 0 {
		for h := host0; h < host0+nHost; h++ {
			if !s.down[h] {
				s.append(h, card.KindNote, map[string]string{"hb": "alive"})
			}
		}
	}
	s.sync()
	s.control(ctrlA)
	s.control(ctrlB)
}

func runPartitions(t testing.TB, seed int64) {
	s := newSim(t, seed)
	grants := s.setup()
	revoked := map[int]string{}
	for i := 0; i < 240; i++ {
		switch x := s.rng.Intn(100); {
		case x < 4: // a new partition: each node lands in group 0 or 1
			for n := range s.group {
				s.group[n] = s.rng.Intn(2)
			}
		case x < 8: // heal
			for n := range s.group {
				s.group[n] = 0
			}
		case x < 10: // a host revokes its grant for one service
			h := host0 + s.rng.Intn(nHost)
			if _, ok := revoked[h]; !ok && !s.down[h] {
				sv := simServices[s.rng.Intn(len(simServices))].name
				s.append(h, card.KindRevoke, kinds.RevokeBody{Card: idBytes(grants[h][sv].ID()), Reason: "sim"})
				revoked[h] = sv
			}
		case x < 12: // it grants again
			for h, sv := range revoked {
				if !s.down[h] {
					grants[h][sv] = s.grant(h, sv)
					delete(revoked, h)
					break
				}
			}
		case x < 14: // a host crashes
			h := host0 + s.rng.Intn(nHost)
			s.down[h] = true
		case x < 17: // a crashed host comes back
			h := host0 + s.rng.Intn(nHost)
			s.down[h] = false
		}
		s.tick()
	}
	// Heal: one group, every host up, every grant live again; then run
	// past two leases so every loss and return hysteresis has played out.
	for n := range s.group {
		s.group[n], s.down[n] = 0, false
	}
	for h, sv := range revoked {
		grants[h][sv] = s.grant(h, sv)
	}
	for i := 0; i < 3*DefaultLease; i++ {
		s.tick()
	}
	s.checkHealed(seed)
}

// checkHealed: both controllers compute the same placements and write
// nothing more; every replica runs on exactly one host, an eligible one.
func (s *sim) checkHealed(seed int64) {
	t := s.t
	t.Helper()
	da := s.nodes[ctrlA].st.Pass(s.id(ctrlA), s.now)
	db := s.nodes[ctrlB].st.Pass(s.id(ctrlB), s.now)
	if len(da.Writes)+len(db.Writes) != 0 || len(da.Unmet)+len(db.Unmet) != 0 {
		t.Fatalf("seed %d: not quiescent after healing: %d+%d writes, unmet %q %q", seed, len(da.Writes), len(db.Writes), da.UnmetText(), db.UnmetText())
	}
	if fmt.Sprint(da.Placements) != fmt.Sprint(db.Placements) {
		t.Fatalf("seed %d: controllers disagree:\n%v\n%v", seed, da.Placements, db.Placements)
	}
	runs := map[string][]int{}
	for h := host0; h < host0+nHost; h++ {
		for _, d := range s.nodes[h].st.Duties(s.id(h), s.now) {
			k := fmt.Sprintf("%s#%d", d.Service, d.Replica)
			runs[k] = append(runs[k], h)
		}
	}
	want := 0
	for _, sv := range simServices {
		for r := int64(0); r < sv.replicas; r++ {
			want++
			k := fmt.Sprintf("%s#%d", sv.name, r)
			if len(runs[k]) != 1 {
				t.Fatalf("seed %d: replica %s runs on hosts %v, want exactly one", seed, k, runs[k])
			}
			h := runs[k][0]
			st := s.nodes[ctrlA].st
			d := findDesired(st, sv.name)
			if w := st.ineligible(s.id(h), &svc{svcKey{s.id(ctrlA), sv.name}, d, Lease(d), projections.SubjectOf(d)}, &capLeft{1 << 40, 1 << 40, 1 << 40, 1 << 40}, nil, s.now); w != "" {
				t.Fatalf("seed %d: replica %s runs on %s, which is not eligible: %s", seed, k, s.nodes[h].name, w)
			}
		}
	}
	if len(runs) != want || len(da.Placements) != want {
		t.Fatalf("seed %d: %d replicas run, %d placed, want %d", seed, len(runs), len(da.Placements), want)
	}
}

func findDesired(st *State, service string) crdt.Desired {
	for _, sv := range st.services() {
		if sv.k.service == service {
			return sv.d
		}
	}
	return crdt.Desired{}
}

func idBytes(id card.ID) []byte { return bytes.Clone(id[:]) }

// TestPartitions: two controllers of one owner, three hosts, random
// partitions and heals, revocations and host losses, 60 seeds.
func TestPartitions(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		runPartitions(t, seed)
	}
}

// FuzzPartitions runs the same simulation over fuzzed seeds (`make fuzz`
// runs thousands in its 30 s).
func FuzzPartitions(f *testing.F) {
	for seed := int64(100); seed < 105; seed++ {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed int64) { runPartitions(t, seed) })
}

// The simulation does exercise what it claims: over the seeds, losses are
// declared and replicas are re-placed.
func TestPartitionsExerciseLossAndRehosting(t *testing.T) {
	total := map[string]int{}
	for seed := int64(1); seed <= 10; seed++ {
		s := newSim(t, seed)
		s.setup()
		s.tick()
		// Crash the host of counter#0 and wait out the lease.
		d := s.nodes[ctrlA].st.Pass(s.id(ctrlA), s.now)
		var h int
		for i := host0; i < host0+nHost; i++ {
			if d.Placements[0].Host == s.id(i) {
				h = i
			}
		}
		s.down[h] = true
		for i := 0; i < DefaultLease+10; i++ {
			s.tick()
		}
		d = s.nodes[ctrlA].st.Pass(s.id(ctrlA), s.now)
		if d.Placements[0].Host == s.id(h) {
			t.Fatalf("seed %d: counter#0 still placed on the lost host", seed)
		}
		// The host returns: it stops its stale replica once it has synced.
		s.down[h] = false
		s.tick()
		for _, du := range s.nodes[h].st.Duties(s.id(h), s.now) {
			if du.Service == "counter" {
				t.Fatalf("seed %d: returning host still runs counter (epoch %d)", seed, du.Epoch)
			}
		}
		for k, n := range s.written {
			total[k] += n
		}
	}
	if total[kinds.KindHostLost] == 0 || total[kinds.KindPlacement] == 0 {
		t.Fatalf("no loss or placement written: %v", total)
	}
}
