package log

import (
	"fmt"
	"os"
	"runtime"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"

	circl "github.com/cloudflare/circl/sign/ed25519"
)

// Benchmarks report rates as ratios to the physical limits measured in the
// same run (the machines are shared and noisy): the raw Ed25519 sign and
// verify rates of the implementation sublog uses (curve25519-voi, the new
// limit) and of circl (the one it used before, the old limit), and a raw
// Pebble scan.

func benchKey(name string) *key.Secret {
	sk, _ := key.FromSeed(key.DeriveSeed([]byte("bench"), name))
	return sk
}

// rawSignRate is single-core signatures per second over a card-sized
// message: the best of three short measurements, since a limit is what the
// machine can do when it is not disturbed.
func rawSignRate() float64 { return best(rawSignOnce) }

// rawCirclSignRate and rawCirclVerifyRate are the same with circl.
func rawCirclSignRate() float64 { return best(rawCirclSignOnce) }

func rawCirclVerifyRate() float64 { return best(rawCirclVerifyOnce) }

func rawCirclSignOnce() float64 {
	priv := circl.NewKeyFromSeed(benchKey("raw").Seed())
	msg := make([]byte, 250)
	const n = 3000
	start := time.Now()
	for i := range n {
		msg[0] = byte(i)
		_ = circl.Sign(priv, msg)
	}
	return n / time.Since(start).Seconds()
}

func rawCirclVerifyOnce() float64 {
	sk := benchKey("raw")
	msg := make([]byte, 250)
	sig := sk.Sign(msg)
	pub := circl.PublicKey(sk.ID().Bytes())
	const n = 3000
	start := time.Now()
	for range n {
		if !circl.Verify(pub, msg, sig) {
			panic("raw verify failed")
		}
	}
	return n / time.Since(start).Seconds()
}

// rawCirclVerifyAllCores is rawVerifyAllCores with circl.
func rawCirclVerifyAllCores() float64 {
	sk := benchKey("raw")
	msg := make([]byte, 250)
	sig := sk.Sign(msg)
	pub := circl.PublicKey(sk.ID().Bytes())
	const n = 2000
	g := runtime.GOMAXPROCS(0)
	var wg stdsync.WaitGroup
	start := time.Now()
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if !circl.Verify(pub, msg, sig) {
					panic("raw verify failed")
				}
			}
		}()
	}
	wg.Wait()
	return float64(n*g) / time.Since(start).Seconds()
}

// rawVerifyRate is single-core verifications per second (best of three).
func rawVerifyRate() float64 { return best(rawVerifyOnce) }

// rawVerifyAllCores is verifications per second with every core verifying
// at once: the machine's limit as it is at that moment (shared machines
// slow down and speed up; measure it right around what it is compared with).
func rawVerifyAllCores() float64 {
	sk := benchKey("raw")
	msg := make([]byte, 250)
	sig := sk.Sign(msg)
	const n = 2000
	g := runtime.GOMAXPROCS(0)
	var wg stdsync.WaitGroup
	start := time.Now()
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if sk.ID().Verify(msg, sig) != nil {
					panic("raw verify failed")
				}
			}
		}()
	}
	wg.Wait()
	return float64(n*g) / time.Since(start).Seconds()
}

// reportVerifyRatios reports rate against the raw verify rates: per core
// (the all-core rate measured just before and just after, averaged, divided
// by the cores), against one core at its best, and against the best single
// core times the cores (the earlier, stricter denominator, which assumes
// perfect scaling at the best moment).
//
// The same ratios against circl (the old limit) are reported with "circl"
// in their names; oldBefore is circl's all-core rate measured with before.
func reportVerifyRatios(b *testing.B, rate, before, best1, oldBefore, oldBest1 float64) {
	after := rawVerifyAllCores()
	oldAfter := rawCirclVerifyAllCores()
	all := (before + after) / 2
	old := (oldBefore + oldAfter) / 2
	b.ReportMetric(rate/all, "x-raw-verify-per-core")
	b.ReportMetric(rate/best1, "x-raw-verify-1core")
	b.ReportMetric(rate/(best1*float64(runtime.GOMAXPROCS(0))), "x-best-1core-x-cores")
	b.ReportMetric(rate/old, "x-circl-verify-per-core")
	b.ReportMetric(rate/oldBest1, "x-circl-verify-1core")
}

func best(f func() float64) float64 {
	b := 0.0
	for range 3 {
		b = max(b, f())
	}
	return b
}

func rawSignOnce() float64 {
	sk := benchKey("raw")
	msg := make([]byte, 250)
	const n = 3000
	start := time.Now()
	for i := range n {
		msg[0] = byte(i)
		_ = sk.Sign(msg)
	}
	return n / time.Since(start).Seconds()
}

func rawVerifyOnce() float64 {
	sk := benchKey("raw")
	msg := make([]byte, 250)
	sig := sk.Sign(msg)
	const n = 3000
	start := time.Now()
	for range n {
		if sk.ID().Verify(msg, sig) != nil {
			panic("raw verify failed")
		}
	}
	return n / time.Since(start).Seconds()
}

// cpuTime is the process's user and system CPU seconds so far.
func cpuTime() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func BenchmarkRawSign(b *testing.B) {
	sk := benchKey("raw")
	msg := make([]byte, 250)
	for i := 0; b.Loop(); i++ {
		msg[0] = byte(i)
		_ = sk.Sign(msg)
	}
}

func BenchmarkRawVerify(b *testing.B) {
	sk := benchKey("raw")
	msg := make([]byte, 250)
	sig := sk.Sign(msg)
	for b.Loop() {
		_ = sk.ID().Verify(msg, sig)
	}
}

func benchStore(b *testing.B) *Store {
	st, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

func benchDraft(i int) card.Draft {
	return card.Draft{Kind: card.KindNote, TS: 1767225600 + int64(i), Body: map[string]any{"msg": "benchmark card", "i": i}}
}

// BenchmarkAppendSingleWriter: one writer, each append durable before the
// next (so it is bounded by the sync latency, not by signing).
func BenchmarkAppendSingleWriter(b *testing.B) {
	raw := rawSignRate()
	st := benchStore(b)
	sk := benchKey("single")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Append(sk, benchDraft(i)); err != nil {
			b.Fatal(err)
		}
	}
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "cards/s")
	b.ReportMetric(rate/raw, "x-raw-sign")
	b.ReportMetric(rate/rawCirclSignRate(), "x-circl-sign")
}

// BenchmarkAppendConcurrent: 256 writers on 16 logs; group commit lets many
// durable appends share one sync.
func BenchmarkAppendConcurrent(b *testing.B) {
	raw := rawSignRate()
	st := benchStore(b)
	nlogs, writers := 16, 256
	if v := os.Getenv("SUBLOG_BENCH_LOGS"); v != "" {
		fmt.Sscan(v, &nlogs)
	}
	if v := os.Getenv("SUBLOG_BENCH_WRITERS"); v != "" {
		fmt.Sscan(v, &writers)
	}
	keys := make([]*key.Secret, nlogs)
	for i := range keys {
		keys[i] = benchKey(fmt.Sprint("w", i))
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	var wg stdsync.WaitGroup
	per := (b.N + writers - 1) / writers
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if _, err := st.Append(keys[w%len(keys)], benchDraft(i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rate := float64(per*writers) / b.Elapsed().Seconds()
	b.StopTimer()
	b.ReportMetric((cpuTime()-cpu0)/(b.Elapsed().Seconds()*float64(runtime.GOMAXPROCS(0))), "cpu-busy")
	b.ReportMetric(rate, "cards/s")
	b.ReportMetric(rate/raw, "x-raw-sign")
	b.ReportMetric(rate/rawCirclSignRate(), "x-circl-sign")
}

var fixtureOnce stdsync.Once
var fixtureCards [][]byte

// fixture is 20,000 pre-signed cards in 20 logs.
func fixture() [][]byte {
	fixtureOnce.Do(func() {
		for l := range 20 {
			sk := benchKey(fmt.Sprint("log", l))
			prev := card.ID{}
			for i := range 1000 {
				c, err := card.Sign(sk, uint64(i+1), prev, benchDraft(i), nil)
				if err != nil {
					panic(err)
				}
				fixtureCards = append(fixtureCards, c.Bytes())
				prev = c.ID()
			}
		}
	})
	return fixtureCards
}

func filledStore(b *testing.B) *Store {
	st := benchStore(b)
	cards := fixture()
	for i := 0; i < len(cards); i += 2000 {
		res, err := st.ImportBatch(cards[i : i+2000])
		if err != nil || len(res.Errs) > 0 {
			b.Fatal(err, res.Errs)
		}
	}
	return st
}

// BenchmarkImportBatch: verified import of 20,000 cards, signature checks
// spread over all cores.
func BenchmarkImportBatch(b *testing.B) {
	raw, oldRaw := rawVerifyRate(), rawCirclVerifyRate()
	cards := fixture()
	before, oldBefore := rawVerifyAllCores(), rawCirclVerifyAllCores()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		st, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i := 0; i < len(cards); i += 2000 {
			if _, err := st.ImportBatch(cards[i : i+2000]); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	rate := float64(b.N*len(cards)) / b.Elapsed().Seconds()
	b.StopTimer()
	b.ReportMetric(rate, "cards/s")
	reportVerifyRatios(b, rate, before, raw, oldBefore, oldRaw)
}

// BenchmarkVerify: `sublog verify` / replay re-verification of every stored
// card (signature, canonical form, chain, index).
func BenchmarkVerify(b *testing.B) {
	raw, oldRaw := rawVerifyRate(), rawCirclVerifyRate()
	st := filledStore(b)
	before, oldBefore := rawVerifyAllCores(), rawCirclVerifyAllCores()
	b.ResetTimer()
	for range b.N {
		rep, err := st.Verify(nil, nil)
		if err != nil || !rep.OK() {
			b.Fatal(err, rep.Problems)
		}
	}
	rate := float64(b.N*len(fixture())) / b.Elapsed().Seconds()
	b.StopTimer()
	b.ReportMetric(rate, "cards/s")
	reportVerifyRatios(b, rate, before, raw, oldBefore, oldRaw)
}

// BenchmarkChainScan: the chain-only scan (hashes and links, no signatures)
// against a raw Pebble scan of the same keys and values, measured in turn.
func BenchmarkChainScan(b *testing.B) {
	st := filledStore(b)
	var rawTime, chainTime time.Duration
	for range b.N {
		t0 := time.Now()
		n := 0
		it, _ := st.db.NewIter(prefixBounds(pfxCard))
		for it.First(); it.Valid(); it.Next() {
			v := it.Value()
			n += len(v) & 1
		}
		it.Close()
		rawTime += time.Since(t0)
		t1 := time.Now()
		cards, probs, err := st.CheckChains()
		if err != nil || len(probs) > 0 || cards != len(fixture()) {
			b.Fatal(err, probs)
		}
		chainTime += time.Since(t1)
		_ = n
	}
	b.ReportMetric(float64(b.N*len(fixture()))/chainTime.Seconds(), "cards/s")
	b.ReportMetric(float64(b.N*len(fixture()))/rawTime.Seconds(), "raw-scan-keys/s")
	b.ReportMetric(rawTime.Seconds()/chainTime.Seconds(), "x-raw-scan")
}
