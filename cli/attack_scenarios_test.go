package cli_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The attacks that `sublog serve` and `sublog up` must meet alike: both
// accept with sync's own accept loop (sync.ServeLinks), so each scenario
// runs once against each, through a target that starts the process with
// the scenario's limits (flags for serve, instance.yaml for up).

// attackLimits are what a scenario sets below the defaults (zero: default).
type attackLimits struct {
	handshake     time.Duration // handshake deadline
	forgedBackoff time.Duration // first backoff after forged cards
	capsAboveFD   bool          // connection caps forced far above the descriptor limit
}

// target is a kind of server the scenarios attack.
type target struct {
	start func(t *testing.T, home string, nofile int, lim attackLimits) *server
	// checked is a pattern, with %s for the attacker's identity, of the log
	// line saying how many of its forged cards were checked (submatch 1).
	checked string
	// waiting is what the log says when accept fails and the server waits.
	waiting string
}

func serveTarget(b bins) target {
	return target{
		start: func(t *testing.T, home string, nofile int, lim attackLimits) *server {
			var args []string
			if lim.handshake > 0 {
				args = append(args, "--handshake-timeout", lim.handshake.String())
			}
			if lim.forgedBackoff > 0 {
				args = append(args, "--backoff-min", lim.forgedBackoff.String())
			}
			if lim.capsAboveFD {
				args = append(args, "--max-conns", "1000", "--max-conns-per-source", "1000",
					"--max-half-open", "1000", "--max-half-open-per-source", "1000")
			}
			return b.serve(t, home, nofile, args...)
		},
		checked: `session with %s failed: .*checked (\d+)`,
		waiting: "too many open files (waiting",
	}
}

func upTarget(b bins) target {
	return target{
		start: func(t *testing.T, home string, nofile int, lim attackLimits) *server {
			var kv []string
			if lim.handshake > 0 {
				kv = append(kv, "handshake_timeout: "+lim.handshake.String())
			}
			if lim.forgedBackoff > 0 {
				kv = append(kv, "forged_backoff_min: "+lim.forgedBackoff.String())
			}
			if lim.capsAboveFD {
				kv = append(kv, "max_conns: 1000", "max_conns_per_source: 1000",
					"max_half_open: 1000", "max_half_open_per_source: 1000")
			}
			cfg := ""
			if len(kv) > 0 {
				cfg = "limits: {" + strings.Join(kv, ", ") + "}\n"
			}
			return b.up(t, home, nofile, cfg)
		},
		checked: `msg="round refused" peer=%s initiated=false err="sync: peer refused: card [^ ]+ failed verification.*checked=(\d+)`,
		waiting: "accept failed, waiting",
	}
}

// attackFDLimit: 130 idle connections against a 128-descriptor limit ended
// `sublog serve` (issue 18). With the default caps (derived from the limit)
// the server never runs out; with caps forced above the limit, accept fails
// with EMFILE, the server waits and goes on. It returns the first server's
// stderr for checks of its own.
func attackFDLimit(t *testing.T, b bins, tg target) (firstStderr string) {
	p := newPair(t, b)
	s := tg.start(t, p.srv, 128, attackLimits{handshake: 2 * time.Second})
	ready, wait := b.attackBG(t, "idle", s.addr, "127.0.0.2", "140", "3s")
	<-ready
	p.legit(t, s.addr)
	rep := wait()
	if num(t, rep, "open") != 140 || num(t, rep, "closed") < 136 {
		t.Fatalf("idle connections: %v (at most 4 half-open from one source)", rep)
	}
	s.running(t)
	p.legit(t, s.addr)
	s.stop(t)

	f := tg.start(t, p.srv, 128, attackLimits{handshake: time.Second, capsAboveFD: true})
	ready, wait = b.attackBG(t, "idle", f.addr, "127.0.0.2", "140", "3s")
	<-ready
	p.legit(t, f.addr) // (accepted once the idle ones are dropped at the handshake deadline)
	wait()
	if !strings.Contains(f.stderr(), "too many open files") || !strings.Contains(f.stderr(), tg.waiting) {
		t.Fatalf("the forced caps did not reach the fd limit: %s", f.stderr())
	}
	f.running(t)
	p.legit(t, f.addr)
	return s.stderr()
}

// attackHandshake: a handshake dribbled one byte every few seconds held its
// connection for minutes (issue 11). It is cut at the handshake deadline
// (2 s here, 10 s by default) although it never idles, and idle half-open
// connections are capped per source (4).
func attackHandshake(t *testing.T, b bins, tg target) {
	p := newPair(t, b)
	s := tg.start(t, p.srv, 0, attackLimits{handshake: 2 * time.Second})
	ready, wait := b.attackBG(t, "dribble", s.addr, "127.0.0.3", "300ms", "30s")
	<-ready
	half := b.attack(t, "idle", s.addr, "127.0.0.4", "10", "1s")
	p.legit(t, s.addr)
	rep := wait()
	if _, ok := rep["cut"]; !ok || num(t, rep, "cut") > 15 || num(t, rep, "sent") < 3 {
		t.Fatalf("dribbled handshake: %v (want cut near the 2 s deadline)", rep)
	}
	if num(t, half, "closed") < 6 {
		t.Fatalf("half-open from one source: %v (at most 4 stay)", half)
	}
	s.running(t)
	p.legit(t, s.addr)
}

// attackForged: an authenticated peer's forged cards were all verified
// (issue 11). The first bad card ends the session (at most one batch is
// checked), the peer is told why, and its identity and source are backed
// off (1 s, doubling; 3 s here) before it is served again, whichever way it
// comes back.
func attackForged(t *testing.T, b bins, tg target) {
	p := newPair(t, b)
	ahome, aid := p.home(t, "mallory")
	if r := b.run(t, p.srv, "trust", aid); r.code != 0 {
		t.Fatal(r)
	}
	s := tg.start(t, p.srv, 0, attackLimits{forgedBackoff: 3 * time.Second})
	rep := b.attack(t, "forge", s.addr, "127.0.0.7", ahome, "20000")
	refusedAt := time.Now()
	if !strings.Contains(rep["refused"], "failed verification") {
		t.Fatalf("forged cards: %v", rep)
	}
	// At once again, from another source: the identity is backed off.
	rep = b.attack(t, "forge", s.addr, "127.0.0.8", ahome, "10")
	if !strings.Contains(rep["refused"], "backed off") || num(t, rep, "retry") < 1 {
		t.Fatalf("second attempt: %v", rep)
	}
	// From the same source: turned away before the handshake.
	rep = b.attack(t, "forge", s.addr, "127.0.0.7", ahome, "10")
	if _, ok := rep["refused"]; ok {
		t.Fatalf("the backed-off source was served: %v", rep)
	}
	p.legit(t, s.addr) // another source is served meanwhile
	m := s.waitFor(t, fmt.Sprintf(tg.checked, aid))
	if n, _ := strconv.Atoi(m[1]); n < 1 || n > 1024 {
		t.Fatalf("the server checked %d forged cards (want at most one batch)", n)
	}
	// After the delay it is served (and refused again, now for 6 s).
	time.Sleep(time.Until(refusedAt.Add(3500 * time.Millisecond)))
	rep = b.attack(t, "forge", s.addr, "127.0.0.9", ahome, "10")
	if !strings.Contains(rep["refused"], "failed verification") {
		t.Fatalf("after the backoff: %v", rep)
	}
	rep = b.attack(t, "forge", s.addr, "127.0.0.10", ahome, "10")
	if !strings.Contains(rep["refused"], "backed off") || num(t, rep, "retry") < 4 {
		t.Fatalf("second backoff does not grow: %v", rep)
	}
	s.running(t)
}
