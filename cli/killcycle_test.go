package cli_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	stdsync "sync"
	"syscall"
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
	p.Cmds["waitup"] = func(ts *testscript.TestScript, neg bool, args []string) { waitUp(ts, ts.MkAbs(args[0])) }
	p.Cmds["blobgc"] = cmdBlobGC
	p.Cmds["waitgone"] = cmdWaitGone
	p.Cmds["termcycle"] = cmdTermCycle
	// waitcard HOME ID: wait (up to 30 s) until HOME's instance holds card ID.
	p.Cmds["waitcard"] = func(ts *testscript.TestScript, neg bool, args []string) {
		for range 600 {
			if _, err := forward(ts, ts.MkAbs(args[0]), "", "show", args[1]); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		ts.Fatalf("card %s never reached %s", args[1], args[0])
	}
	p.Setup = execParams(t).Setup // builds the example bundles, sets EXAMPLES

	testscript.Run(t, p)
}

// blobgc HOME INTERVAL GRACE: add automatic blob collection settings to
// HOME's instance config.
func cmdBlobGC(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: blobgc HOME INTERVAL GRACE")
	}
	p := filepath.Join(ts.MkAbs(args[0]), node.ConfigFile)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	ts.Check(err)
	_, err = fmt.Fprintf(f, "blobs:\n  gc_interval: %s\n  gc_grace: %s\n", args[1], args[2])
	ts.Check(err)
	ts.Check(f.Close())
}

// waitgone HOME HASH: wait (up to 30 s) until HOME's instance no longer
// lists blob HASH.
func cmdWaitGone(ts *testscript.TestScript, neg bool, args []string) {
	dir := ts.MkAbs(args[0])
	for range 600 {
		out, err := forward(ts, dir, "", "blob", "ls")
		ts.Check(err)
		if !strings.Contains(out, args[1]) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("blob %s still in %s after 30 s", args[1], args[0])
}

// termcycle HOME: with HOME's instance running, append cards through its
// socket from two clients and, after a random moment, send the instance
// SIGTERM; wait for it to end. Every append that was acknowledged must then
// be in the home (read without an instance).
func cmdTermCycle(ts *testscript.TestScript, neg bool, args []string) {
	dir := ts.MkAbs(args[0])
	waitUp(ts, dir)
	inf, err := node.ReadInfo(dir)
	ts.Check(err)
	proc, err := os.FindProcess(inf.PID)
	ts.Check(err)
	var acked []string
	var mu stdsync.Mutex
	var wg stdsync.WaitGroup
	for c := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				out, err := forward(ts, dir, fmt.Sprintf("kind: note\nclient: %d\nn: %d\n", c, j), "append", "-")
				if err != nil {
					return // the instance is going away: unacknowledged
				}
				f := strings.Fields(out)
				mu.Lock()
				acked = append(acked, f[len(f)-1])
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
	ts.Check(proc.Signal(syscall.SIGTERM))
	wg.Wait()
	for range 1200 {
		if _, err := node.Dial(dir); err != nil && !fileExists(filepath.Join(dir, node.RunDir, "instance.json")) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if len(acked) == 0 {
		ts.Fatalf("no append was acknowledged before SIGTERM")
	}
	bin := sublogPath(ts)
	for _, id := range acked {
		cmd := osexec.Command(bin, "--home", dir, "show", id)
		cmd.Env = append(os.Environ(), "SUBLOG_HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			ts.Fatalf("acknowledged card %s missing after SIGTERM: %v\n%s", id, err, out)
		}
	}
	ts.Logf("%d acknowledged cards before SIGTERM, all stored", len(acked))
}

// instcfg HOME PORT HINT...: the instance config of a test home: listen on
// loopback PORT, keep sessions with each HINT (IDENTITY@ADDR), short
// backoff; roles from $ROLES (none when unset).
func cmdInstCfg(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: instcfg HOME PORT HINT...")
	}
	var hints []string
	for _, h := range args[2:] {
		hints = append(hints, strconv.Quote(h))
	}
	cfg := fmt.Sprintf("listen: [127.0.0.1:%s]\nroles: [%s]\nlog: {level: debug}\nsync:\n  peers: [%s]\n  backoff_min: 50ms\n  backoff_max: 400ms\n",
		args[1], ts.Getenv("ROLES"), strings.Join(hints, ", "))
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
	// The test means something only if both homes acknowledged cards.
	onB := 0
	for _, e := range acked {
		if strings.HasPrefix(e, b+" ") {
			onB++
		}
	}
	if onB == 0 || onB == len(acked) {
		ts.Fatalf("%d cards acknowledged, %d of them by the killed instance: want both homes to acknowledge some", len(acked), onB)
	}
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
