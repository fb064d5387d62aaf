package log_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/sublog/sublog/golden"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

const crashEnv = "SUBLOG_CRASH_CHILD_DIR"

// TestMain turns the test binary into the crash test's child process when
// crashEnv is set: it appends on four logs until it is killed, printing a
// line for every card only after Append has returned (acknowledged).
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashChild(dir string) {
	st, err := sublog.Open(dir, sublog.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	var mu stdsync.Mutex
	var wg stdsync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sk := golden.Fixture(fmt.Sprint("crash", w))
			for i := 0; ; i++ {
				c, err := st.Append(sk, card.Draft{Kind: card.KindNote, TS: int64(i), Body: map[string]any{"i": i, "pad": strings.Repeat("x", i%200)}})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "%s %d %s\n", c.Author(), c.Seq(), c.ID())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

type acked struct {
	author key.ID
	seq    uint64
	id     card.ID
}

// TestCrash kills an appending child with SIGKILL at random points, then
// checks that every card it acknowledged is stored and every chain verifies.
// SUBLOG_CRASH_KILLS sets the number of kills (default 50; make fuzz: 300).
func TestCrash(t *testing.T) {
	kills := 50
	if s := os.Getenv("SUBLOG_CRASH_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SUBLOG_CRASH_KILLS=%q", s)
		}
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SUBLOG_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set SUBLOG_CRASH_SEED to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	var all []acked
	for k := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan acked, 1<<16)
		first := make(chan struct{}) // closed at the first acknowledgement
		ended := make(chan struct{}) // closed when the child's output ends
		go func() {
			defer close(ended)
			defer close(lines)
			once := stdsync.OnceFunc(func() { close(first) })
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) != 3 {
					continue // a line cut by the kill was never acknowledged
				}
				a, err1 := key.ParseID(f[0])
				seq, err2 := strconv.ParseUint(f[1], 10, 64)
				id, err3 := card.ParseID(f[2])
				if err1 == nil && err2 == nil && err3 == nil {
					lines <- acked{a, seq, id}
					once()
				}
			}
		}()
		// The kill lands at a random point after the child has started
		// appending (its first acknowledgement), however long starting
		// takes on a loaded machine.
		select {
		case <-first:
		case <-ended:
		}
		time.Sleep(time.Duration(rng.IntN(180)) * time.Millisecond)
		_ = cmd.Process.Kill() // SIGKILL: no chance to flush or close
		_ = cmd.Wait()
		n := 0
		for a := range lines {
			all = append(all, a)
			n++
		}
		if strings.Contains(stderr.String(), "child") {
			t.Fatalf("kill %d: child failed: %s", k, stderr.String())
		}
		st, err := sublog.Open(dir, sublog.Options{})
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", k, err)
		}
		for _, a := range all {
			c, err := st.Get(a.author, a.seq)
			if err != nil || c.ID() != a.id {
				st.Close()
				t.Fatalf("kill %d: acknowledged %s@%d %s lost: %v", k, a.author, a.seq, a.id, err)
			}
		}
		if _, probs, err := st.CheckChains(); err != nil || len(probs) > 0 {
			st.Close()
			t.Fatalf("kill %d: chains: %v %+v", k, err, probs)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	st, err := sublog.Open(dir, sublog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if rep, err := st.Verify(nil, nil); err != nil || !rep.OK() || rep.Cards < len(all) {
		t.Fatalf("final verify: %v %+v", err, rep)
	}
	if len(all) < kills {
		t.Fatalf("only %d cards acknowledged over %d runs: the child barely ran", len(all), kills)
	}
	t.Logf("%d kills, %d acknowledged cards, all present, chains verify", kills, len(all))
}
