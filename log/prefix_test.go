package log_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// TestIDsWithPrefix checks the short-form lookup against a naive scan of
// every card: each prefix length from 0 to 64 hex digits (odd ones too),
// bounded by max, and nothing for prefixes that match no card or are not
// hex.
func TestIDsWithPrefix(t *testing.T) {
	st := open(t, t.TempDir())
	sk, err := key.FromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	var all []card.ID
	for i := range 300 {
		c, err := st.Append(sk, note(fmt.Sprint(i), 1700000000))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, c.ID())
	}
	slices.SortFunc(all, func(a, b card.ID) int { return bytes.Compare(a[:], b[:]) })
	naive := func(p string, max int) []card.ID {
		var out []card.ID
		for _, id := range all {
			if strings.HasPrefix(strings.TrimPrefix(id.String(), "sha256:"), p) && len(out) < max {
				out = append(out, id)
			}
		}
		return out
	}
	probe := strings.TrimPrefix(all[123].String(), "sha256:")
	for n := 0; n <= 64; n++ {
		for _, max := range []int{1, 11, 1000} {
			got, err := st.IDsWithPrefix(probe[:n], max)
			if err != nil {
				t.Fatal(err)
			}
			if want := naive(probe[:n], max); !slices.Equal(got, want) {
				t.Fatalf("prefix %q max %d: got %d IDs, want %d", probe[:n], max, len(got), len(want))
			}
		}
	}
	// All-f prefixes exercise the upper bound's carry.
	for _, p := range []string{"f", "ff", "fff", "ffffffff"} {
		got, _ := st.IDsWithPrefix(p, 1000)
		if want := naive(p, 1000); !slices.Equal(got, want) {
			t.Fatalf("prefix %q: got %v, want %v", p, got, want)
		}
	}
	for _, bad := range []string{"xyz", "0g", strings.Repeat("0", 65)} {
		if got, err := st.IDsWithPrefix(bad, 10); len(got) != 0 || (err == nil && bad != strings.Repeat("0", 65)) {
			t.Errorf("prefix %q: %v, %v", bad, got, err)
		}
	}
}
