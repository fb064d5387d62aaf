package discovery

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func secret(t testing.TB, name string) *key.Secret {
	t.Helper()
	sk, err := key.FromSeed(key.DeriveSeed([]byte("sublog discovery tests"), name))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

var t0 = time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)

func profileID(s string) card.ID { return card.IDOf([]byte(s)) }

func newToken(t testing.TB, sk *key.Secret, addrs ...string) *Token {
	t.Helper()
	tok, err := NewToken(sk, TokenDraft{Addrs: addrs, Issued: t0, Expires: t0.Add(24 * time.Hour), Profile: profileID("profile")})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenRoundTrip(t *testing.T) {
	sk := secret(t, "alice")
	tok := newToken(t, sk, "127.0.0.1:7000", "[::1]:7000", "host.example.org:443")
	if !strings.HasPrefix(tok.String(), TokenPrefix) || len(tok.String()) > 400 {
		t.Fatalf("token text %q", tok.String())
	}
	// Pasted with surrounding white space, as a terminal gives it.
	got, err := DecodeToken("  "+tok.String()+"\n", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != sk.ID() || strings.Join(got.Addrs(), ",") != "127.0.0.1:7000,[::1]:7000,host.example.org:443" ||
		got.Profile() != profileID("profile") || !got.Expires().Equal(t0.Add(24*time.Hour)) || !got.Issued().Equal(t0) {
		t.Fatalf("decoded %+v", got)
	}
	// Deterministic: same inputs, same text.
	if again := newToken(t, sk, "127.0.0.1:7000", "[::1]:7000", "host.example.org:443"); again.String() != tok.String() {
		t.Fatal("token text is not deterministic")
	}
	// Without addresses and profile.
	bare, err := NewToken(sk, TokenDraft{Issued: t0, Expires: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeToken(bare.String(), t0); err != nil || len(got.Addrs()) != 0 || !got.Profile().IsZero() {
		t.Fatalf("bare token: %v %+v", err, got)
	}
}

// rawToken decodes a token's CBOR so tests can build altered ones.
func rawToken(t testing.TB, tok *Token) tokenWire {
	t.Helper()
	raw, err := b64.DecodeString(strings.TrimPrefix(tok.String(), TokenPrefix))
	if err != nil {
		t.Fatal(err)
	}
	var w tokenWire
	if err := canon.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func encodeWire(w any) string { return TokenPrefix + b64.EncodeToString(canon.MustMarshal(w)) }

func TestTokenRejects(t *testing.T) {
	alice, mallory := secret(t, "alice"), secret(t, "mallory")
	tok := newToken(t, alice, "127.0.0.1:7000")
	now := t0.Add(time.Hour)

	w := rawToken(t, tok)
	altered := w
	altered.Addrs = []string{"10.9.9.9:7000"}
	resigned := w
	resigned.Sig = mallory.Sign(tokenSignable(tokenBody{V: w.V, ID: w.ID, Addrs: w.Addrs, Issued: w.Issued, Expires: w.Expires, Profile: w.Profile}))
	longer := w
	longer.Expires += 86400 * 365
	badVer := w
	badVer.V = 2
	badID := w
	badID.ID = make([]byte, 32) // small-order point
	// An explicit empty address list is valid CBOR but not the one encoding.
	type explicitEmpty struct {
		V       uint64   `cbor:"1,keyasint"`
		ID      []byte   `cbor:"2,keyasint"`
		Addrs   []string `cbor:"3,keyasint"`
		Issued  int64    `cbor:"4,keyasint"`
		Expires int64    `cbor:"5,keyasint"`
		Sig     []byte   `cbor:"7,keyasint"`
	}
	emptyTok, err := NewToken(alice, TokenDraft{Issued: t0, Expires: t0.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ew := rawToken(t, emptyTok)
	explicit := encodeWire(explicitEmpty{V: 1, ID: ew.ID, Addrs: []string{}, Issued: ew.Issued, Expires: ew.Expires, Sig: ew.Sig})
	type extra struct {
		tokenWire
		X int `cbor:"8,keyasint"`
	}

	raw, _ := b64.DecodeString(strings.TrimPrefix(tok.String(), TokenPrefix))
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)-70] ^= 0x01 // inside the signed fields or signature

	cases := []struct {
		name string
		text string
		now  time.Time
		want error
	}{
		{"expired", tok.String(), t0.Add(24 * time.Hour), ErrExpired},
		{"expired later", tok.String(), t0.Add(48 * time.Hour), ErrExpired},
		{"altered address", encodeWire(altered), now, ErrBadSignature},
		{"signed by another key", encodeWire(resigned), now, ErrBadSignature},
		{"extended expiry", encodeWire(longer), now, ErrBadSignature},
		{"flipped bit", TokenPrefix + b64.EncodeToString(flipped), now, nil},
		{"version 2", encodeWire(badVer), now, ErrMalformed},
		{"weak identity", encodeWire(badID), now, ErrMalformed},
		{"explicit empty list", explicit, now, ErrMalformed},
		{"unknown field", encodeWire(extra{w, 1}), now, ErrMalformed},
		{"no prefix", strings.TrimPrefix(tok.String(), TokenPrefix), now, ErrMalformed},
		{"other prefix", "sublog2." + strings.TrimPrefix(tok.String(), TokenPrefix), now, ErrMalformed},
		{"padding", tok.String() + "=", now, ErrMalformed},
		{"std base64", strings.NewReplacer("-", "+", "_", "/").Replace(tok.String()) + "+", now, ErrMalformed},
		{"truncated", tok.String()[:len(tok.String())-4], now, ErrMalformed},
		{"trailing bytes", TokenPrefix + b64.EncodeToString(append(raw, 0)), now, ErrMalformed},
		{"too long", TokenPrefix + strings.Repeat("A", MaxTokenText), now, ErrTooLarge},
		{"empty", "", now, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeToken(c.text, c.now)
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if c.want == nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v", err)
			}
		})
	}
}

func TestTokenDraftChecks(t *testing.T) {
	sk := secret(t, "alice")
	bad := []TokenDraft{
		{Addrs: []string{"nohost"}, Issued: t0, Expires: t0.Add(time.Hour)},
		{Addrs: []string{"127.0.0.1:0"}, Issued: t0, Expires: t0.Add(time.Hour)},
		{Addrs: []string{"127.0.0.1:070"}, Issued: t0, Expires: t0.Add(time.Hour)},
		{Addrs: []string{"127.0.0.1:65536"}, Issued: t0, Expires: t0.Add(time.Hour)},
		{Addrs: []string{"bad host:1"}, Issued: t0, Expires: t0.Add(time.Hour)},
		{Addrs: []string{"::1:80"}, Issued: t0, Expires: t0.Add(time.Hour)},
		{Addrs: []string{"a:1", "a:1"}, Issued: t0, Expires: t0.Add(time.Hour)},
		{Addrs: strings.Split("a:1 b:1 c:1 d:1 e:1 f:1 g:1 h:1 i:1", " "), Issued: t0, Expires: t0.Add(time.Hour)},
		{Issued: t0, Expires: t0},
		{Issued: t0, Expires: t0.Add(-time.Hour)},
	}
	for i, d := range bad {
		if _, err := NewToken(sk, d); err == nil {
			t.Errorf("draft %d %+v accepted", i, d)
		}
	}
	for _, a := range []string{"127.0.0.1:1", "[2001:db8::1]:65535", "peer.example.org:7000", "localhost:80"} {
		if err := CheckAddr(a); err != nil {
			t.Errorf("CheckAddr(%q): %v", a, err)
		}
	}
}

func FuzzDecodeToken(f *testing.F) {
	sk := secret(f, "alice")
	f.Add(newToken(f, sk, "127.0.0.1:7000").String())
	f.Add(newToken(f, sk).String())
	f.Add(TokenPrefix)
	f.Add("sublog1.oA")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := DecodeToken(s, t0)
		if err != nil {
			return
		}
		// Whatever decodes is signed by the identity it names and
		// re-decodes to the same token.
		again, err := DecodeToken(tok.String(), t0)
		if err != nil || again.ID() != tok.ID() || strings.Join(again.Addrs(), " ") != strings.Join(tok.Addrs(), " ") {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
