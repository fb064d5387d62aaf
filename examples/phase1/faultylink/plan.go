package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/sublog/sublog/log/units"
)

// Faults are the link's settings. TCP cannot lose bytes, so loss is what a
// TCP connection over a lossy path shows its ends: a chunk whose segment
// was "lost" arrives only after a retransmission timeout, and each further
// loss of the same chunk doubles that timeout (RFC 6298 backoff). "30%
// loss" therefore means: every forwarded chunk, independently with
// probability 0.3, is held for RTO, then again with probability 0.3 for
// 2·RTO more, and so on (at most MaxRetries times, after which the
// connection is cut, as a real stack gives up). Because TCP delivers in
// order, a held chunk holds every chunk behind it in the same direction.
type Faults struct {
	Loss       float64       // probability that one chunk's transmission is lost (0..1)
	Delay      time.Duration // one-way delay added to every chunk
	Jitter     time.Duration // uniform extra delay in [0, Jitter) per chunk
	Rate       uint64        // bytes per second in each direction; 0 = unlimited
	RTO        time.Duration // retransmission timeout of the first loss (default 200 ms)
	MaxRetries int           // consecutive losses of one chunk before the connection is cut (default 6)
	Cut        bool          // the link is cut: see CutMode
	CutMode    string        // "close" (connections reset, new ones refused) or "blackhole" (nothing passes, connections stay)
}

// DefaultFaults is a clean link.
func DefaultFaults() Faults {
	return Faults{RTO: 200 * time.Millisecond, MaxRetries: 6, CutMode: "close"}
}

// Check refuses settings that make no sense.
func (f Faults) Check() error {
	switch {
	case f.Loss < 0 || f.Loss > 1 || f.Loss != f.Loss:
		return fmt.Errorf("loss %v is not in 0..1", f.Loss)
	case f.Delay < 0 || f.Jitter < 0 || f.RTO < 0:
		return fmt.Errorf("negative duration")
	case f.MaxRetries < 1:
		return fmt.Errorf("max-retries %d is below 1", f.MaxRetries)
	case f.CutMode != "close" && f.CutMode != "blackhole":
		return fmt.Errorf("cut mode %q is neither close nor blackhole", f.CutMode)
	}
	return nil
}

// Set applies one KEY=VALUE setting (the control file's and -set's form).
func (f *Faults) Set(kv string) error {
	k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
	if !ok {
		return fmt.Errorf("%q is not KEY=VALUE", kv)
	}
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	var err error
	switch k {
	case "loss":
		v = strings.TrimSuffix(v, "%")
		var p float64
		if p, err = strconv.ParseFloat(v, 64); err == nil {
			if strings.HasSuffix(strings.TrimSpace(kv), "%") {
				p /= 100
			}
			f.Loss = p
		}
	case "delay":
		f.Delay, err = time.ParseDuration(v)
	case "jitter":
		f.Jitter, err = time.ParseDuration(v)
	case "rto":
		f.RTO, err = time.ParseDuration(v)
	case "rate":
		if v == "0" || v == "" {
			f.Rate = 0
		} else {
			f.Rate, err = units.ParseBytes(v)
		}
	case "max-retries":
		f.MaxRetries, err = strconv.Atoi(v)
	case "cut":
		f.Cut, err = strconv.ParseBool(v)
	case "cut-mode":
		f.CutMode = v
	default:
		return fmt.Errorf("unknown setting %q (loss, delay, jitter, rate, rto, max-retries, cut, cut-mode)", k)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	return f.Check()
}

// Parse reads a control file: KEY=VALUE lines, '#' comments, blank lines.
// Keys not named keep their value in base.
func Parse(base Faults, text string) (Faults, error) {
	f := base
	for i, line := range strings.Split(text, "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := f.Set(line); err != nil {
			return base, fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	return f, nil
}

func (f Faults) String() string {
	return fmt.Sprintf("loss=%g delay=%s jitter=%s rate=%d rto=%s max-retries=%d cut=%t cut-mode=%s",
		f.Loss, f.Delay, f.Jitter, f.Rate, f.RTO, f.MaxRetries, f.Cut, f.CutMode)
}

// Plan decides, deterministically from its seed, what happens to each chunk
// of one direction of one connection. It does no I/O and reads no clock.
type Plan struct {
	rng      *rand.Rand
	lastOut  time.Duration // when the previous chunk left, relative to the connection's start
	txFree   time.Duration // when the (rate-limited) sender is free for the next chunk
	Losses   int           // chunks that lost at least one transmission
	Resends  int           // transmissions lost in all
	Chunks   int
	GaveUpAt int // chunk number at which MaxRetries was exceeded (0: never)
}

// NewPlan is a plan whose draws follow seed.
func NewPlan(seed uint64) *Plan {
	return &Plan{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Next returns when a chunk of n bytes that arrived at time at (since the
// connection started) leaves the link, and false when the link gives up on
// it (cut the connection). Departures never go backwards: TCP is in order.
func (p *Plan) Next(f Faults, at time.Duration, n int) (time.Duration, bool) {
	p.Chunks++
	sent := at
	if f.Rate > 0 {
		start := max(at, p.txFree)
		p.txFree = start + time.Duration(float64(n)/float64(f.Rate)*float64(time.Second))
		sent = p.txFree
	}
	out := sent + f.Delay
	if f.Jitter > 0 {
		out += time.Duration(p.rng.Int64N(int64(f.Jitter)))
	}
	rto, lost := f.RTO, false
	for tries := 0; f.Loss > 0 && p.rng.Float64() < f.Loss; tries++ {
		if tries == f.MaxRetries {
			p.GaveUpAt = p.Chunks
			return 0, false
		}
		lost = true
		p.Resends++
		out += rto
		rto *= 2
	}
	if lost {
		p.Losses++
	}
	out = max(out, p.lastOut)
	p.lastOut = out
	return out, true
}
