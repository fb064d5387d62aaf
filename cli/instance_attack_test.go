package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The attacks of issue 11 against a real `sublog up` process: the instance
// accepts with sync's own accept loop (sync.ServeLinks), so a dribbled
// handshake, idle half-open connections, running out of descriptors and a
// forged card are met exactly as `sublog serve` meets them (see
// serve_attack_test.go), with the limits of the instance's config file.

// up starts `sublog up` on home with cfg as its instance.yaml (listening on
// a free loopback port, no roles) under a file descriptor limit (0: the
// inherited one); it is stopped with SIGINT when the test ends.
func (b bins) up(t *testing.T, home string, nofile int, cfg string) *server {
	t.Helper()
	cfg = "listen: [127.0.0.1:0]\nroles: []\n" + cfg
	if err := os.WriteFile(filepath.Join(home, "instance.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `exec "$0" "$@"`
	if nofile > 0 {
		script = fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, nofile)
	}
	s := &server{cmd: exec.Command("sh", "-c", script, b.sublog, "--home", home, "up"), exit: make(chan error, 1)}
	s.cmd.Stdout, s.cmd.Stderr = lockedWriter{s}, lockedWriter{s}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exit <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop(t) })
	re := regexp.MustCompile(`listening: (\S+)`)
	for range 500 {
		if m := re.FindStringSubmatch(s.stderr()); m != nil {
			s.addr = m[1]
			return s
		}
		select {
		case err := <-s.exit:
			t.Fatalf("up exited: %v\n%s", err, s.stderr())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("up did not start: %s", s.stderr())
	return nil
}

func TestInstanceUnderAttack(t *testing.T) {
	b := buildBins(t)

	// A handshake dribbled one byte at a time is cut at the handshake
	// deadline (2 s here, 10 s by default) although it never idles; idle
	// half-open connections are capped per source (4).
	t.Run("handshake", func(t *testing.T) {
		p := newPair(t, b)
		s := b.up(t, p.srv, 0, "limits: {handshake_timeout: 2s}\n")
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
	})

	// Out of descriptors: with the default caps (derived from the limit)
	// the instance never runs out; with caps forced above the limit, accept
	// fails with EMFILE, the instance waits and goes on.
	t.Run("fd-limit", func(t *testing.T) {
		p := newPair(t, b)
		s := b.up(t, p.srv, 128, "limits: {handshake_timeout: 2s}\n")
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

		f := b.up(t, p.srv, 128, "limits: {handshake_timeout: 1s, max_conns: 1000, max_conns_per_source: 1000, "+
			"max_half_open: 1000, max_half_open_per_source: 1000}\n")
		ready, wait = b.attackBG(t, "idle", f.addr, "127.0.0.2", "140", "3s")
		<-ready
		p.legit(t, f.addr)
		wait()
		if !strings.Contains(f.stderr(), "too many open files") || !strings.Contains(f.stderr(), "accept failed, waiting") {
			t.Fatalf("the forced caps did not reach the fd limit: %s", f.stderr())
		}
		f.running(t)
		p.legit(t, f.addr)
	})

	// An authenticated peer's forged cards: the first bad card ends the
	// session (at most one batch is checked), the peer is told why, and its
	// identity and source are backed off (1 s, doubling; 3 s here) before it
	// is served again, whichever way it comes back.
	t.Run("forged", func(t *testing.T) {
		p := newPair(t, b)
		ahome, aid := p.home(t, "mallory")
		if r := b.run(t, p.srv, "trust", aid); r.code != 0 {
			t.Fatal(r)
		}
		s := b.up(t, p.srv, 0, "limits: {forged_backoff_min: 3s}\n")
		rep := b.attack(t, "forge", s.addr, "127.0.0.7", ahome, "20000")
		refusedAt := time.Now()
		if !strings.Contains(rep["refused"], "failed verification") {
			t.Fatalf("forged cards: %v", rep)
		}
		rep = b.attack(t, "forge", s.addr, "127.0.0.8", ahome, "10")
		if !strings.Contains(rep["refused"], "backed off") || num(t, rep, "retry") < 1 {
			t.Fatalf("second attempt: %v", rep)
		}
		rep = b.attack(t, "forge", s.addr, "127.0.0.7", ahome, "10")
		if _, ok := rep["refused"]; ok {
			t.Fatalf("the backed-off source was served: %v", rep)
		}
		p.legit(t, s.addr)
		m := s.waitFor(t, `msg="round refused" peer=`+aid+` initiated=false err="sync: peer refused: card [^ ]+ failed verification.*checked=(\d+)`)
		if n, _ := strconv.Atoi(m[1]); n < 1 || n > 1024 {
			t.Fatalf("the instance checked %d forged cards (want at most one batch)", n)
		}
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
	})
}
