package canon

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestCheckRefusals(t *testing.T) {
	cases := []struct {
		name string
		hex  string
		want error
	}{
		{"duplicate key", "a2 6161 01 6161 02", ErrDuplicateKey},
		{"indefinite map", "bf 6161 01 ff", ErrIndefinite},
		{"indefinite bytes", "5f 4101 ff", ErrIndefinite},
		{"tag", "c1 1a 5f5e1000", ErrTag},
		{"non-shortest int", "18 01", ErrNonCanonical},
		{"non-shortest length", "78 01 61", ErrNonCanonical},
		{"unsorted map", "a2 6162 01 6161 02", ErrNonCanonical},
		{"length-first order", "a2 626161 01 6162 02", ErrNonCanonical},
		{"float64 that fits float16", "fb 3ff0000000000000", ErrNonCanonical},
		{"trailing bytes", "01 02", ErrTrailing},
		{"truncated", "a1 6161", ErrMalformed},
		{"invalid utf-8", "62 c328", ErrMalformed},
		{"undefined", "f7", ErrMalformed},
		{"too deep", strings.Repeat("81", MaxNesting+1) + "01", ErrTooDeep},
	}
	for _, c := range cases {
		err := Check(mustHex(c.hex))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	for _, ok := range []string{"01", "a2 6161 01 6162 02", "a2 6162 01 626161 02", "f93c00", "80", "f6", "f5"} {
		if err := Check(mustHex(ok)); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

func TestUnmarshalRefusesUnknownFields(t *testing.T) {
	type T struct {
		A int `cbor:"a"`
	}
	var v T
	if err := Unmarshal(MustMarshal(map[string]int{"a": 1, "b": 2}), &v); !errors.Is(err, ErrUnknownField) {
		t.Fatal(err)
	}
	if err := Unmarshal(MustMarshal(map[string]int{"a": 7}), &v); err != nil || v.A != 7 {
		t.Fatal(err)
	}
}

func TestMarshalIsDeterministic(t *testing.T) {
	m := map[string]any{"zz": 1, "a": []any{1.5, "x"}, "bb": map[string]any{"y": true, "x": nil}}
	a, b := MustMarshal(m), MustMarshal(m)
	if !bytes.Equal(a, b) || Check(a) != nil {
		t.Fatal("not deterministic or not canonical")
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"01", "a2616101616202", "bf616101ff", "c11a5f5e1000", "fb3ff0000000000000", "a3616101616241016163617861", "a161611801"} {
		f.Add(mustHex(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The one-decode check never accepts what the generic one refuses.
		var st struct {
			A uint64   `cbor:"a"`
			B []byte   `cbor:"b,omitempty"`
			C string   `cbor:"c,omitempty"`
			D []string `cbor:"d,omitempty"`
			E int64    `cbor:"e,omitempty"`
		}
		exact := UnmarshalExact(b, &st)
		if Check(b) != nil {
			if exact == nil {
				t.Fatalf("UnmarshalExact accepted %x, which Check refuses", b)
			}
			return
		}
		var v any
		if err := Unmarshal(b, &v); err != nil {
			t.Fatalf("checked bytes do not unmarshal: %v", err)
		}
		again, err := Marshal(v)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted bytes do not round-trip: %x -> %x", b, again)
		}
	})
}

// UnmarshalExact gives the refusals of Unmarshal with one decode: each of
// these is a map a struct decode alone would accept.
func TestUnmarshalExactRefusals(t *testing.T) {
	type T struct {
		A uint64 `cbor:"a"`
		B []byte `cbor:"b,omitempty"`
		C string `cbor:"c,omitempty"`
	}
	cases := []struct {
		name string
		hex  string
		want error
	}{
		{"non-shortest int", "a1 6161 1801", ErrNonCanonical},
		{"non-shortest key length", "a1 780161 01", ErrNonCanonical},
		{"unsorted", "a2 6162 4101 6161 01", ErrNonCanonical},
		{"empty omitted field present", "a2 6161 01 6162 40", ErrNonCanonical},
		{"null omitted field present", "a2 6161 01 6162 f6", ErrNonCanonical},
		{"duplicate key", "a2 6161 01 6161 02", ErrDuplicateKey},
		{"indefinite", "bf 6161 01 ff", ErrIndefinite},
		{"tag", "a1 6161 c1 01", ErrTag},
		{"unknown field", "a2 6161 01 6164 01", ErrUnknownField},
		{"trailing", "a1 6161 01 00", ErrTrailing},
		{"text for bytes", "a2 6161 01 6162 6178", ErrMalformed},
	}
	for _, c := range cases {
		var v T
		if err := UnmarshalExact(mustHex(c.hex), &v); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	var v T
	if err := UnmarshalExact(mustHex("a3 6161 01 6162 4101 6163 6178"), &v); err != nil || v.A != 1 || v.C != "x" {
		t.Fatalf("canonical bytes refused: %v %+v", err, v)
	}
}

// NaN and the infinities are refused in every width, as items and inside
// containers, by Check, Unmarshal and UnmarshalExact alike.
func TestNonFiniteFloatsRefused(t *testing.T) {
	for _, h := range []string{
		"f97e00", "f97c00", "f9fc00", // half: NaN, +Inf, -Inf
		"fa7fc00000", "fa7f800000", // single NaN, +Inf (non-shortest too)
		"fb7ff8000000000000", "fbfff0000000000000", // double NaN, -Inf
		"a16178f97e00", "8201f97c00", // inside a map and an array
	} {
		b := mustHex(h)
		if err := Check(b); !errors.Is(err, ErrNotFinite) && !errors.Is(err, ErrNonCanonical) {
			t.Errorf("Check(%s) = %v, want ErrNotFinite", h, err)
		} else if err == nil {
			t.Errorf("Check(%s) accepted", h)
		}
		var v any
		if err := Unmarshal(b, &v); err == nil {
			t.Errorf("Unmarshal(%s) accepted", h)
		}
		var st struct {
			X float64 `cbor:"x"`
		}
		if err := UnmarshalExact(b, &st); err == nil {
			t.Errorf("UnmarshalExact(%s) accepted", h)
		}
	}
	if err := Check(mustHex("f97e00")); !errors.Is(err, ErrNotFinite) {
		t.Fatalf("canonical NaN: %v, want ErrNotFinite", err)
	}
	if err := Check(mustHex("fb3ff8000000000000")); err != nil { // 1.5 as a double is non-canonical
		if !errors.Is(err, ErrNonCanonical) {
			t.Fatal(err)
		}
	}
	if err := Check(mustHex("f93e00")); err != nil { // 1.5: finite floats still pass
		t.Fatal(err)
	}
}
