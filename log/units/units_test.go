package units

import (
	"errors"
	"testing"
)

func TestParseBytes(t *testing.T) {
	good := map[string]uint64{"64Mi": 64 << 20, "10MB": 10e6, "4096": 4096, "1.5Ki": 1536, "0": 0, "2Gi": 2 << 30, " 1k ": 1000}
	for in, want := range good {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5", "abc", "1e3", "64mi", "99999999999Ti", "Mi", "+5"} {
		if _, err := ParseBytes(in); !errors.Is(err, ErrQuantity) {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}

func TestParseMilliCPU(t *testing.T) {
	good := map[string]uint64{"500m": 500, "2": 2000, "0.5": 500, "0": 0, "1.25": 1250}
	for in, want := range good {
		got, err := ParseMilliCPU(in)
		if err != nil || got != want {
			t.Errorf("ParseMilliCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0.5m", "x", "1e3"} {
		if _, err := ParseMilliCPU(in); !errors.Is(err, ErrQuantity) {
			t.Errorf("ParseMilliCPU(%q) accepted", in)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, n := range []uint64{0, 1, 1024, 64 << 20, 3 << 30, 1000} {
		got, err := ParseBytes(FormatBytes(n))
		if err != nil || got != n {
			t.Errorf("round trip %d: %d, %v", n, got, err)
		}
	}
	for _, m := range []uint64{0, 500, 2000, 1250} {
		got, err := ParseMilliCPU(FormatMilliCPU(m))
		if err != nil || got != m {
			t.Errorf("round trip %dm: %d, %v", m, got, err)
		}
	}
}
