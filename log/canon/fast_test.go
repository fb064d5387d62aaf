package canon

import (
	"strings"
	"testing"
)

// The shapes of card bodies and sync messages take the fast path; what it
// does not know goes to the general check, which decides alike.
func TestFastCheckShapes(t *testing.T) {
	fast := []any{
		map[string]any{"text": "a note of a typical size, about one line of text", "n": 1234},
		map[string]any{"kind": "note", "x": []any{[]any{}, map[string]any{"y": nil}}, "b": []byte{1, 2}, "t": true, "f": false, "neg": -70000},
		map[uint64]any{1: "one", 2: []byte("two"), 3: uint64(1) << 40},
		[]any{"é", int64(-1) << 62, uint64(1) << 63, ""},
	}
	for _, v := range fast {
		b := MustMarshal(v)
		if !fastCheck(b) {
			t.Errorf("%x (%v) missed the fast path", b, v)
		}
		if err := check(b); err != nil {
			t.Errorf("%x: the general check refuses it: %v", b, err)
		}
	}
	general := map[string]string{
		"float":            "a161781a", // truncated: refused by both
		"a float value":    "a16178f93e00",
		"tag":              "c11a5f5e1000",
		"undefined":        "f7",
		"simple 16":        "f0",
		"byte-string key":  "a1410101",
		"non-shortest int": "1801",
		"unsorted keys":    "a2616201616101",
		"duplicate keys":   "a2616101616102",
		"indefinite":       "9fff",
		"trailing":         "0101",
		"bad utf-8":        "62c328",
		"big negative":     "3bffffffffffffffff",
		"deep":             strings.Repeat("81", fastMaxDepth) + "80",
	}
	for name, h := range general {
		if fastCheck(mustHex(h)) {
			t.Errorf("%s: %s took the fast path", name, h)
		}
	}
}

// FuzzFastCheck: the fast path never accepts what the general check refuses.
func FuzzFastCheck(f *testing.F) {
	for _, s := range []string{"01", "a2616101616202", "a161611801", "a2616101616102", "83f4f5f6", "a201020300", "3b7fffffffffffffff", "5a00000001ff", "a1613ff6"} {
		f.Add(mustHex(s))
	}
	f.Add(MustMarshal(map[string]any{"text": "hello", "n": 7, "l": []any{1, "x", []byte{0}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if fastCheck(b) {
			if err := check(b); err != nil {
				t.Fatalf("fast path accepted %x, which the general check refuses: %v", b, err)
			}
		}
	})
}
