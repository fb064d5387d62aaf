package discovery

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Token limits and text form.
const (
	TokenPrefix  = "sublog1."
	TokenVersion = 1
	// MaxTokenText bounds the text a decoder looks at (8 long addresses fit).
	MaxTokenText = 1024
	// MaxAddrs bounds the address hints of a token or a packet.
	MaxAddrs = 8
	// MaxAddrLen is the longest HOST:PORT accepted (a DNS name is ≤ 253).
	MaxAddrLen = 261
)

var b64 = base64.RawURLEncoding.Strict()

// Token is a verified out-of-band token: an identity's signed statement of
// where it can be reached until Expires. A Token value only ever comes from
// NewToken or DecodeToken, so it always carries a valid signature.
type Token struct {
	id      key.ID
	addrs   []string
	issued  time.Time
	expires time.Time
	profile card.ID
	text    string
}

// TokenDraft is what NewToken signs.
type TokenDraft struct {
	Addrs   []string  // HOST:PORT hints, at most MaxAddrs
	Issued  time.Time // signing time (whole seconds)
	Expires time.Time // after this the token is refused
	Profile card.ID   // the capability profile card, or zero
}

// tokenBody is the signed part; tokenWire adds the signature as key 7 (it
// sorts last, so the body is a prefix of the wire map's entries).
type tokenBody struct {
	V       uint64   `cbor:"1,keyasint"`
	ID      []byte   `cbor:"2,keyasint"`
	Addrs   []string `cbor:"3,keyasint,omitempty"`
	Issued  int64    `cbor:"4,keyasint"`
	Expires int64    `cbor:"5,keyasint"`
	Profile []byte   `cbor:"6,keyasint,omitempty"`
}

type tokenWire struct {
	V       uint64   `cbor:"1,keyasint"`
	ID      []byte   `cbor:"2,keyasint"`
	Addrs   []string `cbor:"3,keyasint,omitempty"`
	Issued  int64    `cbor:"4,keyasint"`
	Expires int64    `cbor:"5,keyasint"`
	Profile []byte   `cbor:"6,keyasint,omitempty"`
	Sig     []byte   `cbor:"7,keyasint"`
}

func tokenSignable(b tokenBody) []byte {
	msg := []byte(LabelToken)
	msg = append(msg, 0)
	return append(msg, canon.MustMarshal(b)...)
}

// NewToken signs a token for sk's identity.
func NewToken(sk *key.Secret, d TokenDraft) (*Token, error) {
	if err := checkAddrs(d.Addrs); err != nil {
		return nil, err
	}
	iss, exp := d.Issued.Unix(), d.Expires.Unix()
	if iss < 0 || exp <= iss {
		return nil, fmt.Errorf("%w: expiry %s is not after issue time %s", ErrMalformed,
			d.Expires.UTC().Format(time.RFC3339), d.Issued.UTC().Format(time.RFC3339))
	}
	body := tokenBody{V: TokenVersion, ID: sk.ID().Bytes(), Addrs: d.Addrs, Issued: iss, Expires: exp}
	if !d.Profile.IsZero() {
		body.Profile = append([]byte(nil), d.Profile[:]...)
	}
	sig := sk.Sign(tokenSignable(body))
	w := tokenWire{V: body.V, ID: body.ID, Addrs: body.Addrs, Issued: iss, Expires: exp, Profile: body.Profile, Sig: sig}
	raw := canon.MustMarshal(w)
	text := TokenPrefix + b64.EncodeToString(raw)
	if len(text) > MaxTokenText {
		return nil, fmt.Errorf("%w: token would be %d characters, limit %d", ErrTooLarge, len(text), MaxTokenText)
	}
	return &Token{id: sk.ID(), addrs: append([]string(nil), d.Addrs...), issued: time.Unix(iss, 0).UTC(),
		expires: time.Unix(exp, 0).UTC(), profile: d.Profile, text: text}, nil
}

// DecodeToken parses and verifies a token's text: its one valid encoding,
// the identity it names, the signature under that identity, and that it has
// not expired at now. Surrounding white space is ignored (copy and paste).
func DecodeToken(s string, now time.Time) (*Token, error) {
	t, err := parseToken(s)
	if err != nil {
		return nil, err
	}
	if !now.Before(t.expires) {
		return nil, fmt.Errorf("%w: token of %s expired at %s", ErrExpired, t.id, t.expires.Format(time.RFC3339))
	}
	return t, nil
}

// parseToken does everything DecodeToken does except the expiry check.
func parseToken(s string) (*Token, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxTokenText {
		return nil, fmt.Errorf("%w: token is %d characters, limit %d", ErrTooLarge, len(s), MaxTokenText)
	}
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: %q does not start with %q", ErrMalformed, clip(s), TokenPrefix)
	}
	raw, err := b64.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: token is not base64url: %v", ErrMalformed, err)
	}
	var w tokenWire
	if err := canon.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("%w: token: %w", ErrMalformed, err)
	}
	// One valid encoding: the fields must re-encode to the exact bytes (an
	// explicit empty address list, for one, is refused).
	if again := canon.MustMarshal(w); !bytes.Equal(again, raw) {
		return nil, fmt.Errorf("%w: token is not in its one valid encoding", ErrMalformed)
	}
	if w.V != TokenVersion {
		return nil, fmt.Errorf("%w: token version %d, want %d", ErrMalformed, w.V, TokenVersion)
	}
	id, err := key.IDFromBytes(w.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: token identity: %w", ErrMalformed, err)
	}
	if err := checkAddrs(w.Addrs); err != nil {
		return nil, err
	}
	var prof card.ID
	if w.Profile != nil {
		if prof, err = card.IDFromBytes(w.Profile); err != nil {
			return nil, fmt.Errorf("%w: token profile: %v", ErrMalformed, err)
		}
	}
	if w.Issued < 0 || w.Expires <= w.Issued {
		return nil, fmt.Errorf("%w: token expiry %d is not after its issue time %d", ErrMalformed, w.Expires, w.Issued)
	}
	body := tokenBody{V: w.V, ID: w.ID, Addrs: w.Addrs, Issued: w.Issued, Expires: w.Expires, Profile: w.Profile}
	if err := id.Verify(tokenSignable(body), w.Sig); err != nil {
		return nil, fmt.Errorf("%w: token is not signed by %s, the identity it names", ErrBadSignature, id)
	}
	return &Token{id: id, addrs: w.Addrs, issued: time.Unix(w.Issued, 0).UTC(),
		expires: time.Unix(w.Expires, 0).UTC(), profile: prof, text: s}, nil
}

// ID is the identity the token speaks for.
func (t *Token) ID() key.ID { return t.id }

// Addrs are the address hints (candidates, never trusted).
func (t *Token) Addrs() []string { return append([]string(nil), t.addrs...) }

// Issued and Expires bound the token's validity.
func (t *Token) Issued() time.Time  { return t.issued }
func (t *Token) Expires() time.Time { return t.expires }

// Profile is the capability profile card ID, or zero.
func (t *Token) Profile() card.ID { return t.profile }

// String is the copy-pasteable text form.
func (t *Token) String() string { return t.text }

// checkAddrs validates address hints: at most MaxAddrs, each HOST:PORT with
// a DNS name or IP literal and a decimal port 1..65535, no duplicates.
func checkAddrs(addrs []string) error {
	if len(addrs) > MaxAddrs {
		return fmt.Errorf("%w: %d address hints, limit %d", ErrTooLarge, len(addrs), MaxAddrs)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if err := CheckAddr(a); err != nil {
			return err
		}
		if seen[a] {
			return fmt.Errorf("%w: address hint %q repeated", ErrMalformed, a)
		}
		seen[a] = true
	}
	return nil
}

// CheckAddr validates one HOST:PORT address hint.
func CheckAddr(a string) error {
	if len(a) == 0 || len(a) > MaxAddrLen {
		return fmt.Errorf("%w: address hint of %d bytes", ErrMalformed, len(a))
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%w: address hint %q: %v", ErrMalformed, clip(a), err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return fmt.Errorf("%w: address hint %q: port must be 1..65535", ErrMalformed, clip(a))
	}
	if ip := net.ParseIP(host); ip != nil {
		if strings.Contains(host, ":") != (ip.To4() == nil) || strings.Contains(host, "%") {
			return fmt.Errorf("%w: address hint %q: bad IP literal", ErrMalformed, clip(a))
		}
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%w: address hint %q: host is neither an IP address nor a DNS name", ErrMalformed, clip(a))
	}
	return nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// clip shortens untrusted text quoted in an error message.
func clip(s string) string {
	if len(s) > 48 {
		return s[:48] + "..."
	}
	return s
}
