// Package units parses and prints the quantities users write in manifests and
// flags: byte sizes ("64Mi", "10MB", "512"), CPU in millicores ("500m", "2")
// and durations ("200ms", "24h"). Kubernetes-style suffixes; strict: no
// negative values, no fractions of a byte, overflow is an error. Leaf package.
package units

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// ErrQuantity: the text is not a quantity of the expected kind.
var ErrQuantity = errors.New("not a valid quantity")

var byteSuffixes = []struct {
	s string
	m uint64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"B", 1},
}

// ParseBytes parses a byte size such as "64Mi", "1.5Gi", "10MB" or "4096".
func ParseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mult := uint64(1)
	for _, suf := range byteSuffixes {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSuffix(t, suf.s), suf.m
			break
		}
	}
	r, ok := new(big.Rat).SetString(t)
	if !ok || t == "" || strings.ContainsAny(t, "eE/+-") {
		return 0, fmt.Errorf("%w: %q is not a byte size (like 64Mi, 10MB, 4096)", ErrQuantity, s)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).SetUint64(mult)))
	if !r.IsInt() {
		return 0, fmt.Errorf("%w: %q is not a whole number of bytes", ErrQuantity, s)
	}
	if !r.Num().IsUint64() {
		return 0, fmt.Errorf("%w: %q is too large", ErrQuantity, s)
	}
	return r.Num().Uint64(), nil
}

// ParseMilliCPU parses CPU as millicores: "500m" is 500, "2" is 2000, "0.5" is 500.
func ParseMilliCPU(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1000)
	if strings.HasSuffix(t, "m") {
		t, mult = strings.TrimSuffix(t, "m"), 1
	}
	r, ok := new(big.Rat).SetString(t)
	if !ok || t == "" || strings.ContainsAny(t, "eE/+-") {
		return 0, fmt.Errorf("%w: %q is not a CPU amount (like 500m or 2)", ErrQuantity, s)
	}
	r.Mul(r, big.NewRat(mult, 1))
	if !r.IsInt() || !r.Num().IsUint64() || r.Num().Uint64() > math.MaxUint32 {
		return 0, fmt.Errorf("%w: %q is not a whole number of millicores", ErrQuantity, s)
	}
	return r.Num().Uint64(), nil
}

// ParseDuration parses a Go duration ("200ms", "24h") and refuses negative ones.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %q is not a duration (like 200ms or 24h)", ErrQuantity, s)
	}
	return d, nil
}

// FormatBytes prints a size with the largest binary suffix that divides it.
func FormatBytes(n uint64) string {
	for _, suf := range []struct {
		s string
		m uint64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n >= suf.m && n%suf.m == 0 {
			return fmt.Sprintf("%d%s", n/suf.m, suf.s)
		}
	}
	return fmt.Sprintf("%d", n)
}

// FormatMilliCPU prints millicores as "500m" or "2".
func FormatMilliCPU(m uint64) string {
	if m%1000 == 0 {
		return fmt.Sprintf("%d", m/1000)
	}
	return fmt.Sprintf("%dm", m)
}
