package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	tg := upTarget(b)
	t.Run("handshake", func(t *testing.T) { attackHandshake(t, b, tg) })
	t.Run("fd-limit", func(t *testing.T) { attackFDLimit(t, b, tg) })
	t.Run("forged", func(t *testing.T) { attackForged(t, b, tg) })
}
