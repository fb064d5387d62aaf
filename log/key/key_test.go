package key

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestTextRoundTrip(t *testing.T) {
	for range 50 {
		sk, err := Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s := sk.ID().String()
		if len(s) != TextSize || strings.Trim(s, "ybndrfg8ejkmcpqxot1uwisza345h769") != "" {
			t.Fatalf("bad text %q", s)
		}
		id, err := ParseID(s)
		if err != nil || id != sk.ID() {
			t.Fatalf("%q: %v", s, err)
		}
		b, _ := id.MarshalText()
		var back ID
		if err := back.UnmarshalText(b); err != nil || back != id {
			t.Fatal(err)
		}
	}
}

func TestSignVerify(t *testing.T) {
	sk, _ := FromSeed(bytes.Repeat([]byte{7}, SeedSize))
	msg := []byte("hello")
	sig := sk.Sign(msg)
	if err := sk.ID().Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 1
	if err := sk.ID().Verify(msg, sig); !errors.Is(err, ErrBadSignature) {
		t.Fatal("flipped signature verified")
	}
	if err := sk.ID().Verify(msg, sig[:63]); !errors.Is(err, ErrBadSignature) {
		t.Fatal("short signature verified")
	}
	other, _ := FromSeed(bytes.Repeat([]byte{8}, SeedSize))
	if sk.Equal(other) || !sk.Equal(sk) {
		t.Fatal("Equal")
	}
}

func TestFromSeedLength(t *testing.T) {
	if _, err := FromSeed(make([]byte, 31)); !errors.Is(err, ErrBadLength) {
		t.Fatal(err)
	}
	if _, err := IDFromBytes(make([]byte, 33)); !errors.Is(err, ErrBadLength) {
		t.Fatal(err)
	}
}

func FuzzParseID(f *testing.F) {
	f.Add("47pjoycnsrfmxikm95jh13y88e8qnhzu5kungjpxyepgt7a8krpy")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err == nil && id.String() != s {
			t.Fatalf("%q parsed but prints as %q", s, id)
		}
	})
}
