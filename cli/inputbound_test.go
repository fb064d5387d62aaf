package cli

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// The bound never under-estimates what the parser will see: for documents
// of known depth the scan says at least that, and never more than twice.
func TestInputBoundsDepth(t *testing.T) {
	for _, tc := range []struct {
		src   string
		depth int
	}{
		{"kind: note\ntext: hi\n", 1},
		{`{"kind":"note","x":[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]}`, 16},
		{"kind: note\nx:\n  y:\n    z: [1, {a: [2]}]\n", 6},
		{"kind: note\nx:\n- a\n- - b\n  - - c\n", 4},
		{"kind: note\nx: - - - - 1\n", 1}, // a plain scalar, not sequences
		{"kind: note\nx:\n  - - - - 1\n", 5},
		{"kind: note\ntext: \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"\n", 1},
		{"kind: note\ntext: 'it''s [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['\n", 1},
		{"kind: note\ntext: a[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n", 1},
		{"kind: note # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n", 1},
	} {
		got, _ := inputBounds([]byte(tc.src))
		if got < tc.depth || got > 2*tc.depth+1 {
			t.Errorf("%q: bound %d for depth %d", tc.src, got, tc.depth)
		}
	}
}

// Deep or huge input within the 1 MiB cap is refused before the parser
// runs, with a clear message and bounded memory: 64 KB, 200 KB and 1 MiB
// of nesting (flow brackets, compact sequences, indentation) and 1 MiB of
// tiny items. Before the bound, 64 KB of brackets took 3.1 GB.
func TestParseDocRefusesDeepInputCheaply(t *testing.T) {
	indent := func(n int) string {
		var b strings.Builder
		b.WriteString("kind: note\n")
		for i := 0; b.Len() < n; i++ {
			b.WriteString(strings.Repeat(" ", i) + "k:\n")
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, src, want string
	}{
		{"64 KB of brackets", "kind: note\nx: " + strings.Repeat("[", 64<<10), "levels deep"},
		{"200 KB of brackets", "kind: note\nx: " + strings.Repeat("[", 100<<10) + strings.Repeat("]", 100<<10), "levels deep"},
		{"1 MiB of braces", `{"kind":"note","x":` + strings.Repeat(`{"a":`, (MaxInput-40)/5), "levels deep"},
		{"200 KB of compact sequences", "kind: note\nx:\n  " + strings.Repeat("- ", 100<<10) + "1\n", "levels deep"},
		{"1 MiB of indentation", indent(MaxInput - 2048), "levels deep"},
		{"1 MiB of items", "kind: note\nx: [" + strings.Repeat("1,", (MaxInput-20)/2) + "1]\n", "items"},
		{"1 MiB of comments", "kind: note\n" + strings.Repeat("#\n", (MaxInput-20)/2), "items"},
	} {
		if len(tc.src) > MaxInput {
			t.Fatalf("%s: %d bytes is over the input cap", tc.name, len(tc.src))
		}
		var err error
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		_, err = ParseDoc("in.yaml", []byte(tc.src))
		runtime.ReadMemStats(&m1)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal naming %q", tc.name, err, tc.want)
		}
		// The scan allocates nothing; the bound is generous.
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 8<<20 {
			t.Errorf("%s: refusing took %d MB", tc.name, alloc>>20)
		}
	}
}

// What passes the scan parses within a stated bound: the worst accepted
// shapes (deep and wide at the bounds) allocate at most maxParseAlloc.
func TestParseDocAcceptedInputBounded(t *testing.T) {
	// Depth just under the scan's bound with many items inside it, and
	// items just under the item bound.
	deep := "kind: note\nx: " + strings.Repeat("[", maxInputDepth-2) + strings.Repeat("1,", maxInputItems/2-2*maxInputDepth) + "1" + strings.Repeat("]", maxInputDepth-2) + "\n"
	wide := "kind: note\nx:\n" + strings.Repeat("- 1\n", maxInputItems/2-16)
	var forest strings.Builder
	forest.WriteString("kind: note\nx: [")
	for forest.Len() < 60<<10 {
		forest.WriteString(strings.Repeat("[", maxInputDepth-3) + "1" + strings.Repeat("]", maxInputDepth-3) + ",")
	}
	forest.WriteString("1]\n")
	for name, src := range map[string]string{"deep": deep, "wide": wide, "forest of deep trees": forest.String()} {
		if d, n := inputBounds([]byte(src)); d > maxInputDepth || n > maxInputItems {
			t.Fatalf("%s: the shape is over the bounds (%d, %d)", name, d, n)
		}
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		_, err := ParseDoc("in.yaml", []byte(src))
		runtime.ReadMemStats(&m1)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > maxParseAlloc {
			t.Errorf("%s: parsing allocated %d MB, over the stated %d MB", name, alloc>>20, maxParseAlloc>>20)
		} else {
			t.Logf("%s: %d bytes of input, %d MB allocated", name, len(src), alloc>>20)
		}
	}
}
