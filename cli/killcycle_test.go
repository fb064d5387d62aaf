package cli_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sublog/sublog/node"
)

// TestInstanceScripts runs testdata/instance: real `sublog up` processes.
func TestInstanceScripts(t *testing.T) {
	p := syncParams()
	p.Dir = "testdata/instance"
	p.Cmds["instcfg"] = cmdInstCfg
	p.Cmds["killcycle"] = cmdKillCycle
	p.Cmds["waitheads"] = cmdWaitHeads
	testscript.Run(t, p)
}

// instcfg HOME PORT HINT: the instance config of a test home: listen on
// loopback PORT, keep a session with HINT (IDENTITY@ADDR), short backoff.
func cmdInstCfg(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: instcfg HOME PORT HINT")
	}
	cfg := fmt.Sprintf("listen: [127.0.0.1:%s]\nroles: []\nlog: {level: debug}\nsync:\n  peers: [%q]\n  backoff_min: 50ms\n  backoff_max: 400ms\n", args[1], args[2])
	ts.Check(os.WriteFile(filepath.Join(ts.MkAbs(args[0]), node.ConfigFile), []byte(cfg), 0o600))
}

// sublogPath finds the scripts' sublog program.
func sublogPath(ts *testscript.TestScript) string {
	for _, d := range filepath.SplitList(ts.Getenv("PATH")) {
		if p := filepath.Join(d, "sublog"); fileExists(p) {
			return p
		}
	}
	ts.Fatalf("no sublog in PATH")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// forward runs a CLI command through the home's instance.
func forward(ts *testscript.TestScript, dir string, stdin string, args ...string) (string, error) {
	cl, err := node.Dial(dir)
	if err != nil {
		return "", err
	}
	var out, errb strings.Builder
	code, err := cl.Run(context.Background(), node.Command{Args: append([]string{"--home", dir}, args...), Dir: ts.MkAbs("."),
		Env: []string{"HOME=" + ts.Getenv("HOME")}, Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	if err != nil {
		return "", err
	}
	if code != 0 {
		return "", fmt.Errorf("exit %d: %s", code, errb.String())
	}
	return out.String(), nil
}

func waitUp(ts *testscript.TestScript, dir string) {
	for range 800 {
		if _, err := node.Dial(dir); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	ts.Fatalf("the instance of %s did not come up", dir)
}

// killcycle A B N: with a's instance running, N times: start b's instance,
// append cards on both (through their sockets) while, after a random
// moment, b is killed with SIGKILL. Every append that was acknowledged is
// remembered; after the last cycle b runs again and every acknowledged
// card must be on both homes (waitheads checks the rest).
func cmdKillCycle(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: killcycle A B N")
	}
	a, b := ts.MkAbs(args[0]), ts.MkAbs(args[1])
	var n int
	fmt.Sscan(args[2], &n)
	bin := sublogPath(ts)
	waitUp(ts, a)
	var acked []string // "home card-id"
	var mu stdsync.Mutex
	start := func() *osexec.Cmd {
		log, err := os.OpenFile(b+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		ts.Check(err)
		cmd := osexec.Command("timeout", "300", bin, "up", "--home", b)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.Env = append(os.Environ(), "SUBLOG_HOME="+b)
		ts.Check(cmd.Start())
		log.Close()
		waitUp(ts, b)
		return cmd
	}
	for i := range n {
		up := start()
		stop := make(chan struct{})
		var wg stdsync.WaitGroup
		for _, dir := range []string{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; ; j++ {
					select {
					case <-stop:
						return
					default:
					}
					out, err := forward(ts, dir, fmt.Sprintf("kind: note\ncycle: %d\nn: %d\n", i, j), "append", "-")
					if err != nil {
						if dir == a {
							ts.Logf("append on a failed: %v", err)
						}
						return // b was killed: unacknowledged, may or may not be stored
					}
					f := strings.Fields(out)
					mu.Lock()
					acked = append(acked, dir+" "+f[len(f)-1])
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
		up.Process.Kill() // SIGKILL
		up.Wait()
		close(stop)
		wg.Wait()
	}
	up := start()
	go up.Wait()
	// Every acknowledged card is on the home that acknowledged it, and, once
	// the instances have reconnected by themselves, on the other one too.
	deadline := time.Now().Add(60 * time.Second)
	for _, e := range acked {
		home, id, _ := strings.Cut(e, " ")
		for _, dir := range []string{home, other(home, a, b)} {
			for {
				_, err := forward(ts, dir, "", "show", id)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					ts.Fatalf("acknowledged card %s of %s missing on %s: %v", id, filepath.Base(home), filepath.Base(dir), err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	ts.Logf("%d acknowledged cards over %d kills, all on both homes", len(acked), n)
}

func other(h, a, b string) string {
	if h == a {
		return b
	}
	return a
}

// waitheads A B: wait (up to 60 s) until both instances hold the same heads.
func cmdWaitHeads(ts *testscript.TestScript, neg bool, args []string) {
	a, b := ts.MkAbs(args[0]), ts.MkAbs(args[1])
	for range 1200 {
		ha, err1 := forward(ts, a, "", "heads")
		hb, err2 := forward(ts, b, "", "heads")
		if err1 == nil && err2 == nil && ha == hb {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("heads differ after 60 s")
}

var _ = testing.Short
