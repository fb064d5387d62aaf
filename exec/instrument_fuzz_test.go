package exec

import (
	"bytes"
	"testing"
)

// FuzzInstrument: the rewrite never panics on any bytes, is deterministic,
// and what it accepts it can read back (its own output instruments again).
func FuzzInstrument(f *testing.F) {
	f.Add(loopFree)
	f.Add(loopFree[:8])
	f.Add(append(append([]byte{}, loopFree[:8]...), 0x0a, 0x05, 0x01, 0x03, 0x00, 0x03, 0x40, 0x0b, 0x0b))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := instrument(b)
		if err != nil {
			return
		}
		again, err := instrument(b)
		if err != nil || !bytes.Equal(out, again) {
			t.Fatalf("not deterministic: %v", err)
		}
		if _, err := instrument(out); err != nil {
			t.Fatalf("own output refused: %v", err)
		}
	})
}
