package reconcile

import (
	"fmt"
	"testing"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
	"github.com/sublog/sublog/projections"
)

// benchWorld: one owner with nSvc services (one replica each, one bundle),
// nHosts hosts that each publish a profile and grant the bundle. extra
// adds history: per host that many more heartbeat cards, and per replica
// extra/10 superseded placements before the one in force.
type benchWorld struct {
	st    *State
	owner *key.Secret
	seq   map[key.ID]uint64
	prev  map[key.ID]card.ID
	now   int64
	cards int
}

func (w *benchWorld) sign(tb testing.TB, sk *key.Secret, kind string, body any) {
	id := sk.ID()
	w.seq[id]++
	c, err := card.Sign(sk, w.seq[id], w.prev[id], card.Draft{Kind: kind, TS: w.now, Body: body}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	w.prev[id] = c.ID()
	if err := w.st.Add(c); err != nil {
		tb.Fatal(err)
	}
	w.cards++
}

func newBenchWorld(tb testing.TB, nSvc, nHosts, extra int) *benchWorld {
	w := &benchWorld{st: New(), owner: simKey("owner"), seq: map[key.ID]uint64{}, prev: map[key.ID]card.ID{}, now: 1_800_000_000}
	var bundle [32]byte
	bundle[0] = 7
	bt := fmt.Sprintf("sha256:%x", bundle[:])
	one, mem := int64(1), int64(16<<20)
	for i := 0; i < nSvc; i++ {
		svc := fmt.Sprintf("svc-%04d", i)
		ch, err := crdt.New(w.owner.ID(), svc).Build(w.owner.ID(), &crdt.Manifest{Service: svc, Replicas: &one, Bundle: bt, Memory: &mem}, time.Unix(w.now, 0))
		if err != nil {
			tb.Fatal(err)
		}
		w.sign(tb, w.owner, card.KindIntent, projections.IntentBody{Service: svc, Owner: w.owner.ID().Bytes(), Changes: ch})
	}
	hosts := make([]*key.Secret, nHosts)
	for h := range hosts {
		hosts[h] = simKey(fmt.Sprintf("bench host %d", h))
		w.sign(tb, hosts[h], card.KindProfile, projections.ProfileBody{CPU: 64000, Memory: 1 << 40, Disk: 1 << 40})
		w.sign(tb, hosts[h], card.KindGrant, kinds.GrantBody{Bundle: bundle[:], Limits: kinds.Limits{Memory: 1 << 30, Instances: 64}})
	}
	// Older history: superseded placements of every replica.
	d := w.st.Pass(w.owner.ID(), w.now)
	for k := 0; k < extra/10; k++ {
		for _, wr := range d.Writes {
			pb := *wr.Body.(*kinds.PlacementBody)
			pb.Epoch = uint64(k + 1)
			w.sign(tb, w.owner, wr.Kind, &pb)
		}
	}
	for _, wr := range w.st.Pass(w.owner.ID(), w.now).Writes {
		w.sign(tb, w.owner, wr.Kind, wr.Body)
	}
	// Heartbeats.
	for k := 0; k < extra; k++ {
		w.now++
		for _, h := range hosts {
			w.sign(tb, h, card.KindNote, map[string]string{"hb": "alive"})
		}
	}
	if n := len(w.st.Pass(w.owner.ID(), w.now).Writes); n != 0 {
		tb.Fatalf("not steady: %d writes", n)
	}
	return w
}

// BenchmarkPass: the cost of one steady pass (every replica in force, so
// every placement is re-checked) at 1,000 services × 100 hosts, for a
// short history and one about seven times longer (more heartbeats, ten
// superseded placements per replica), timed alternately in the same loop
// so the machine's noise falls on both. Reported: each pass in ms, their
// ratio (long/short: 1 when the pass is flat in history length), and the
// short pass against this run's cost of hashing one rank per (service,
// host) pair (pass/rank-all: the work of choosing every replica afresh).
func BenchmarkPass(b *testing.B) {
	const nSvc, nHosts = 1000, 100
	owner := simKey("owner").ID()
	host := simKey("bench host 0").ID()
	t0 := time.Now()
	const refRounds = 3
	for r := 0; r < refRounds; r++ {
		for i := 0; i < nSvc*nHosts; i++ {
			_ = rank(owner, "svc", uint64(i), host)
		}
	}
	rankAll := time.Since(t0) / refRounds
	short, long := newBenchWorld(b, nSvc, nHosts, 10), newBenchWorld(b, nSvc, nHosts, 100)
	b.Logf("history: %d and %d cards", short.cards, long.cards)
	var ts, tl time.Duration
	b.ResetTimer()
	for j := 0; j < b.N; j++ {
		for _, w := range []*benchWorld{short, long} {
			t := time.Now()
			if d := w.st.Pass(w.owner.ID(), w.now); len(d.Placements) != nSvc || len(d.Writes) != 0 {
				b.Fatalf("%d placements, %d writes", len(d.Placements), len(d.Writes))
			}
			if w == short {
				ts += time.Since(t)
			} else {
				tl += time.Since(t)
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(ts.Nanoseconds())/n/1e6, "ms/pass-short")
	b.ReportMetric(float64(tl.Nanoseconds())/n/1e6, "ms/pass-long")
	b.ReportMetric(float64(tl)/float64(ts), "long/short")
	b.ReportMetric(float64(ts.Nanoseconds())/n/float64(rankAll.Nanoseconds()), "pass/rank-all")
}
