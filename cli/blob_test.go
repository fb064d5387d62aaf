package cli_test

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/log/canon"
)

// TestBlobScripts runs testdata/blob: bundles that reach a host by hash
// alone over real `sublog serve` processes, cut transfers resumed, and
// signed handoffs. Commands beside testscript's own:
//
//	envfile VAR FILE       VAR = FILE's trimmed content ("stdout" is the last output)
//	grab VAR REGEXP        VAR = the first group of REGEXP in the last stdout
//	freeport VAR, waitport ADDR
//	mkbig DIR SIZE         DIR = the counter example's source, its module padded
//	                       with a custom section to SIZE bytes
//	waitpartial HOME N     wait (up to 60 s) until HOME holds a partial blob of ≥ N bytes
//	flippartial HOME OFF   flip one byte at offset OFF of HOME's (only) partial blob
//	patch FILE OFF         flip one byte of FILE at OFF (negative: from the end)
//	patchfield FILE FIELD  flip the middle byte of byte-string FIELD of a CBOR map file
//	validjson DEF [stderr] the last stdout (or stderr) validates against docs/json.schema.json
//	resumed FILE MINREUSED FILE holds `blob fetch --json`: check it reused at least
//	                       MINREUSED chunks and fetched exactly the rest
func TestBlobScripts(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	buildExamples.Do(func() {
		if _, err := os.Stat(filepath.Join(root, "examples/misbehave/misbehave.bundle")); err == nil {
			return
		}
		cmd := osexec.Command("make", "-s", "examples")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make examples: %v\n%s", err, out)
		}
	})
	partial := func(ts *testscript.TestScript, home string) string {
		m, _ := filepath.Glob(filepath.Join(ts.MkAbs(home), "blobs", "partial", "*.data"))
		if len(m) > 1 {
			ts.Fatalf("%d partial blobs in %s", len(m), home)
		}
		if len(m) == 0 {
			return ""
		}
		return m[0]
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/blob",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"envfile": func(ts *testscript.TestScript, neg bool, args []string) {
				ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
			},
			"grab": func(ts *testscript.TestScript, neg bool, args []string) {
				m := regexp.MustCompile(args[1]).FindStringSubmatch(ts.ReadFile("stdout"))
				if len(m) < 2 {
					ts.Fatalf("grab: no match for %q in stdout", args[1])
				}
				ts.Setenv(args[0], m[1])
			},
			"freeport": func(ts *testscript.TestScript, neg bool, args []string) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				ts.Check(err)
				ts.Setenv(args[0], strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
				l.Close()
			},
			"waitport": func(ts *testscript.TestScript, neg bool, args []string) {
				for range 400 {
					if c, err := net.Dial("tcp", args[0]); err == nil {
						c.Close()
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				ts.Fatalf("nothing listens on %s", args[0])
			},
			"mkbig": func(ts *testscript.TestScript, neg bool, args []string) {
				size, err := strconv.Atoi(args[1])
				ts.Check(err)
				dir := ts.MkAbs(args[0])
				ts.Check(os.MkdirAll(dir, 0o755))
				mod, err := os.ReadFile(filepath.Join(root, "examples/counter/counter.wasm"))
				ts.Check(err)
				man, err := os.ReadFile(filepath.Join(root, "examples/counter/manifest.yaml"))
				ts.Check(err)
				// A custom section: id 0, LEB128 size, name "pad", bytes.
				n := max(size-len(mod)-16, 0)
				r := rand.New(rand.NewPCG(1, 2))
				pad := make([]byte, n)
				for i := range pad {
					pad[i] = byte(r.Uint32())
				}
				body := append([]byte{3, 'p', 'a', 'd'}, pad...)
				sec := append([]byte{0}, binary.AppendUvarint(nil, uint64(len(body)))...)
				mod = append(append(mod, sec...), body...)
				ts.Check(os.WriteFile(filepath.Join(dir, "counter.wasm"), mod, 0o644))
				ts.Check(os.WriteFile(filepath.Join(dir, "manifest.yaml"), man, 0o644))
			},
			"waitpartial": func(ts *testscript.TestScript, neg bool, args []string) {
				n, err := strconv.ParseInt(args[1], 10, 64)
				ts.Check(err)
				for range 1200 {
					if p := partial(ts, args[0]); p != "" {
						if fi, err := os.Stat(p); err == nil && fi.Size() >= n {
							return
						}
					}
					time.Sleep(50 * time.Millisecond)
				}
				ts.Fatalf("no partial blob of %d bytes in %s", n, args[0])
			},
			"flippartial": func(ts *testscript.TestScript, neg bool, args []string) {
				off, err := strconv.ParseInt(args[1], 10, 64)
				ts.Check(err)
				p := partial(ts, args[0])
				if p == "" {
					ts.Fatalf("no partial blob in %s", args[0])
				}
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				ts.Check(err)
				defer f.Close()
				b := make([]byte, 1)
				_, err = f.ReadAt(b, off)
				ts.Check(err)
				b[0] ^= 0xff
				_, err = f.WriteAt(b, off)
				ts.Check(err)
			},
			// patch FILE OFF: flip one byte at OFF (negative: from the end).
			"patch": func(ts *testscript.TestScript, neg bool, args []string) {
				off, err := strconv.Atoi(args[1])
				ts.Check(err)
				b, err := os.ReadFile(ts.MkAbs(args[0]))
				ts.Check(err)
				if off < 0 {
					off += len(b)
				}
				b[off] ^= 0x01
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o600))
			},
			// patchfield FILE FIELD: flip the middle byte of a byte-string
			// field of a CBOR map file (a handoff's state, card or bundle).
			"patchfield": func(ts *testscript.TestScript, neg bool, args []string) {
				b, err := os.ReadFile(ts.MkAbs(args[0]))
				ts.Check(err)
				var m map[string]any
				ts.Check(canon.Unmarshal(b, &m))
				v, ok := m[args[1]].([]byte)
				if !ok || len(v) == 0 {
					ts.Fatalf("no byte string %q in %s", args[1], args[0])
				}
				v[len(v)/2] ^= 0x01
				out, err := canon.Marshal(m)
				ts.Check(err)
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), out, 0o600))
			},
			"validjson": cmdValidJSON,
			"resumed": func(ts *testscript.TestScript, neg bool, args []string) {
				var st struct {
					blob.Stats
					Hash string `json:"hash"`
				}
				ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[0])), &st))
				minReused, err := strconv.Atoi(args[1])
				ts.Check(err)
				rest := st.Size - int64(st.Reused)*blob.ChunkSize
				ts.Logf("fetch: %+v", st.Stats)
				if st.Reused < minReused || st.BytesFetched != rest || st.Fetched != st.Chunks-st.Reused {
					ts.Fatalf("resumed fetch reused %d chunks (want ≥ %d) and fetched %d bytes in %d chunks (want %d bytes in %d)",
						st.Reused, minReused, st.BytesFetched, st.Fetched, rest, st.Chunks-st.Reused)
				}
			},
		},
		Setup: func(env *testscript.Env) error {
			env.Setenv("EXAMPLES", filepath.Join(root, "examples"))
			return nil
		},
	})
}
