package cli_test

import (
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/sync/bundle"
	"github.com/sublog/sublog/sync/proto"
)

// TestHardenScripts runs testdata/harden: homes fed hostile input (cards an
// earlier version signed and the decoder now refuses, terminal escapes in
// synced cards, junk and huge bundles) keep working. Helper commands:
// `envfile VAR FILE` as in the sync scripts, `envlast VAR FILE` its last word; `plantcard HOME KIND` stores,
// as the next card of HOME's default identity, a validly signed card the
// decoder refuses (KIND deep: the 77-byte note nested 15 lists deep; nan: a
// note holding NaN), writing the raw bytes through the store's test hook as
// a home written by an earlier version holds them; `writefile FILE TEXT`
// writes TEXT with Go escapes (\x1b) decoded, for real control bytes.
func TestHardenScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/harden",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"envfile": func(ts *testscript.TestScript, neg bool, args []string) {
				ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile(args[1])))
			},
			// envlast VAR FILE: VAR is the last word of FILE (an appended card's ID).
			"envlast": func(ts *testscript.TestScript, neg bool, args []string) {
				f := strings.Fields(ts.ReadFile(args[1]))
				ts.Setenv(args[0], f[len(f)-1])
			},
			"plantcard": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: plantcard HOME deep|nan")
				}
				h, err := home.Open(ts.MkAbs(args[0]))
				ts.Check(err)
				sk, err := h.Identity("")
				ts.Check(err)
				st, err := h.OpenStore(sublog.Options{})
				ts.Check(err)
				defer st.Close()
				hd, _ := st.Head(sk.ID())
				var body any
				switch args[1] {
				case "deep":
					var x any = []any{}
					for range 14 {
						x = []any{x}
					}
					body = map[string]any{"x": x}
				case "nan":
					body = map[string]any{"x": math.NaN()}
				default:
					ts.Fatalf("plantcard: unknown kind %q", args[1])
				}
				b, err := card.SignUnchecked(sk, hd.Seq+1, hd.ID, card.Draft{Kind: card.KindNote, Net: h.Net(), TS: 1700000000, Body: body})
				ts.Check(err)
				if _, err := card.Decode(b, nil); err == nil {
					ts.Fatalf("plantcard: the decoder accepts the planted card")
				}
				ts.Check(st.PlantRawForTest(sk.ID(), hd.Seq+1, b))
				ts.Logf("planted %s@%d %s", sk.ID(), hd.Seq+1, card.IDOf(b))
			},
			// sparse FILE SIZE: a file of SIZE zero bytes that takes no disk.
			"sparse": func(ts *testscript.TestScript, neg bool, args []string) {
				n, err := strconv.ParseInt(args[1], 10, 64)
				ts.Check(err)
				f, err := os.Create(ts.MkAbs(args[0]))
				ts.Check(err)
				ts.Check(f.Truncate(n))
				ts.Check(f.Close())
			},
			// badbundle HOME FILE N: a bundle validly signed by HOME's
			// identity holding N records that are no cards.
			"badbundle": func(ts *testscript.TestScript, neg bool, args []string) {
				h, err := home.Open(ts.MkAbs(args[0]))
				ts.Check(err)
				sk, err := h.Identity("")
				ts.Check(err)
				n, err := strconv.Atoi(args[2])
				ts.Check(err)
				f, err := os.Create(ts.MkAbs(args[1]))
				ts.Check(err)
				bw, err := bundle.NewWriter(f, sk, bundle.WriterOptions{Created: 1})
				ts.Check(err)
				batch := make([][]byte, proto.MaxBatch)
				for i := range batch {
					batch[i] = []byte("\xd2 not a card")
				}
				for from := 1; from <= n; from += proto.MaxBatch {
					ts.Check(bw.Msg(&proto.Msg{T: proto.TCards, Author: sk.ID().Bytes(), From: uint64(from), Cards: batch[:min(proto.MaxBatch, n-from+1)]}))
				}
				ts.Check(bw.Close())
				ts.Check(f.Close())
			},
			// maxsize FILE N: FILE (or stdout/stderr) is at most N bytes.
			"maxsize": func(ts *testscript.TestScript, neg bool, args []string) {
				n, err := strconv.Atoi(args[1])
				ts.Check(err)
				if got := len(ts.ReadFile(args[0])); got > n {
					ts.Fatalf("%s is %d bytes, over %d", args[0], got, n)
				}
			},
			"writefile": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: writefile FILE TEXT")
				}
				text := strings.NewReplacer(`\x1b`, "\x1b", `\x07`, "\x07", `\x9b`, "\u009b", `\n`, "\n", `\r`, "\r").Replace(args[1])
				ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(text), 0o644))
			},
		},
	})
}
