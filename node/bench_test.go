package node

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkCardPush: two instances on loopback that trust each other; a
// card appended on one, timed until it is stored (durable, readable) on the
// other. Reported: p50 and p99 of append->stored over the cards of the run,
// and as the physical reference the p50 of the local append alone (one
// durable commit): the push costs the local commit, two to three loopback
// round trips and the peer's own durable commit, so ~2x the reference is
// the floor.
func BenchmarkCardPush(b *testing.B) {
	a, peer := pair(b)
	// The session is up once a first card has gone across.
	if _, err := a.Store().Append(a.sk, note(-1)); err != nil {
		b.Fatal(err)
	}
	waitSeq(b, peer.Node, a.sk.ID(), 1, 10*time.Second)
	sub := peer.Store().Subscribe()
	defer sub.Cancel()
	n := max(b.N, 1000)
	lat := make([]time.Duration, 0, n)
	local := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		t0 := time.Now()
		c, err := a.Store().Append(a.sk, note(i))
		if err != nil {
			b.Fatal(err)
		}
		local = append(local, time.Since(t0))
		for {
			if h, ok := peer.Store().Head(a.sk.ID()); ok && h.Seq >= c.Seq() {
				break
			}
			select {
			case <-sub.C:
			case <-time.After(10 * time.Second):
				b.Fatalf("card %d not stored on the peer within 10 s", c.Seq())
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(local)
	p := func(d []time.Duration, q float64) float64 {
		return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(lat, 0.50), "ms-p50")
	b.ReportMetric(p(lat, 0.99), "ms-p99")
	b.ReportMetric(p(lat, 1), "ms-max")
	b.ReportMetric(p(local, 0.50), "ms-local-commit-p50")
	b.ReportMetric(p(lat, 0.50)/p(local, 0.50), "x-local-commit")
	b.ReportMetric(float64(n), "cards")
}
