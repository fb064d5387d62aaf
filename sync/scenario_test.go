package sync

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/transport"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/scenarios")

// TestScenarios runs the scripts in testdata/scenarios. Each command line
// is followed by "----" and the output it must print, up to a blank line;
// -rewrite regenerates the outputs. Commands:
//
//	home NAME                   a home with identity NAME (an in-memory store)
//	trust A B | follow A B      A's lists
//	append NAME N [AUTHOR]      N cards of AUTHOR's log (default NAME) into NAME's store
//	forge NAME AUTHOR SEQ       a second, different card of AUTHOR at SEQ into NAME's store
//	sync A B [cut=BYTES] [brief=1]  one session, A dials B (optionally cut after A wrote BYTES; brief: ok/failed only)
//	export A FILE [for=B]       a bundle of A's store
//	import B FILE               import it into B's store
//	damage FILE OFFSET          flip a bit of a bundle
//	heads NAME                  NAME's heads: author@seq [forked]
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/scenarios/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScenario(t, f) })
	}
}

type scenario struct {
	t      *testing.T
	homes  map[string]*node
	keys   map[string]*key.Secret
	names  map[key.ID]string
	files  map[string][]byte
	trust  map[string][]key.ID
	follow map[string][]key.ID
	seed   uint64
}

func (s *scenario) key(name string) *key.Secret {
	if k, ok := s.keys[name]; ok {
		return k
	}
	k := secret(s.t, name)
	s.keys[name], s.names[k.ID()] = k, name
	return k
}

func (s *scenario) home(name string) *node {
	n, ok := s.homes[name]
	if !ok {
		s.t.Fatalf("no home %q", name)
	}
	n.pol = NewLists([]key.ID{n.sk.ID()}, s.trust[name], s.follow[name])
	return n
}

func runScenario(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{t: t, homes: map[string]*node{}, keys: map[string]*key.Secret{}, names: map[key.ID]string{},
		files: map[string][]byte{}, trust: map[string][]key.ID{}, follow: map[string][]key.ID{}}
	var out bytes.Buffer
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		got := s.do(strings.Fields(line))
		// Expected output: "----", lines, and a blank line that ends it.
		var want []string
		if i+1 < len(lines) && lines[i+1] == "----" {
			i += 2
			for ; i < len(lines) && lines[i] != ""; i++ {
				want = append(want, lines[i])
			}
		}
		out.WriteString(line + "\n")
		if len(got) > 0 {
			out.WriteString("----\n" + strings.Join(got, "\n") + "\n\n")
		}
		if !*rewrite && strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", path, line, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if *rewrite {
		os.WriteFile(path, append(bytes.TrimRight(out.Bytes(), "\n"), '\n'), 0o644)
	}
}

func (s *scenario) do(f []string) []string {
	t := s.t
	arg := func(i int) string {
		if i >= len(f) {
			t.Fatalf("%v: missing argument %d", f, i)
		}
		return f[i]
	}
	opt := func(name string) (string, bool) {
		for _, a := range f {
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v, true
			}
		}
		return "", false
	}
	num := func(v string) int {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	switch f[0] {
	case "home":
		s.homes[arg(1)] = &node{st: newStore(), sk: s.key(arg(1))}
		return nil
	case "trust":
		s.trust[arg(1)] = append(s.trust[arg(1)], s.key(arg(2)).ID())
		return nil
	case "follow":
		s.follow[arg(1)] = append(s.follow[arg(1)], s.key(arg(2)).ID())
		return nil
	case "append":
		author := arg(1)
		if len(f) > 3 {
			author = f[3]
		}
		appendN(t, s.home(arg(1)).st, s.key(author), num(arg(2)))
		return nil
	case "forge":
		st, author, seq := s.home(arg(1)).st, s.key(arg(2)), uint64(num(arg(3)))
		prev := card.ID{}
		if seq > 1 {
			prev = mustGet(t, st, author.ID(), seq-1).ID()
		}
		c, err := card.Sign(author, seq, prev, card.Draft{Kind: "note", TS: 42, Body: map[string]string{"forged": "yes"}}, testCaps)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Import(c.Bytes())
		return []string{fmt.Sprintf("import: %v", errName(err))}
	case "sync":
		a, b := s.home(arg(1)), s.home(arg(2))
		ca, cb := transport.Pipe()
		if v, ok := opt("cut"); ok {
			ca = &cutConn{Conn: ca, limit: num(v)}
		}
		s.seed += 2
		ra, rb := runPair(t, ca, cb, *a, *b, opts(*a, s.seed), opts(*b, s.seed+1))
		_, brief := opt("brief")
		res := func(n string, r result) string {
			if r.err != nil {
				return n + ": failed"
			}
			if brief { // counts that depend on how far an earlier cut session got
				return n + ": ok"
			}
			return fmt.Sprintf("%s: %s; forks %d; rounds %d", n, r.st, r.st.Forks, r.st.Rounds)
		}
		return []string{res(arg(1), ra), res(arg(2), rb)}
	case "export":
		a := s.home(arg(1))
		o := ExportOptions{Secret: a.sk, Rand: newRand(s.seed), Policy: a.pol}
		if v, ok := opt("for"); ok {
			id := s.key(v).ID()
			o.For = &id
		}
		var buf bytes.Buffer
		st, err := Export(&buf, a.st, o)
		if err != nil {
			t.Fatal(err)
		}
		s.files[arg(2)] = buf.Bytes()
		return []string{fmt.Sprintf("exported %d cards in %d logs", st.Sent, st.Logs)}
	case "import":
		b := s.home(arg(1))
		st, rej, err := Import(bytes.NewReader(s.files[arg(2)]), b.st, ImportOptions{Secret: b.sk})
		if err != nil {
			return []string{"refused: " + errName(err)}
		}
		out := []string{st.String()}
		for _, r := range rej {
			out = append(out, fmt.Sprintf("rejected %s@%d: %s", s.names[r.Author], r.Seq, errName(r.Err)))
		}
		return out
	case "damage":
		b := s.files[arg(1)]
		b[num(arg(2))%len(b)] ^= 0x20
		return nil
	case "heads":
		var out []string
		for _, h := range s.home(arg(1)).st.Heads() {
			l := fmt.Sprintf("%s@%d", s.names[h.Author], h.Seq)
			if h.Forked {
				l += " forked"
			}
			out = append(out, l)
		}
		sort.Strings(out)
		return out
	}
	t.Fatalf("unknown command %q", f[0])
	return nil
}

// errName is the first clause of an error (its sentinel's text).
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	msg := err.Error()
	if i := strings.Index(msg, ": "); i > 0 {
		if j := strings.Index(msg[i+2:], ": "); j > 0 {
			return msg[:i+2+j]
		}
	}
	return msg
}
