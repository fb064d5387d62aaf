package golden

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/discovery"
)

// Discovery vectors: out-of-band tokens (suite discovery-token) and PKARR
// signed packets (suite pkarr). Token vectors carry the token text and its
// CBOR in hex; PKARR vectors carry the BEP 44 signable bytes, the DNS packet
// and the relay payload in hex. Times are Unix seconds; PKARR timestamps are
// microseconds.

func init() {
	Register(&Suite{Name: "discovery-token", Generate: genTokens, Check: checkToken})
	Register(&Suite{Name: "pkarr", Generate: genPKARR, Check: checkPKARR})
}

// discoveryReason names discovery rejections; other errors fall back to Reason.
func discoveryReason(err error) string {
	for _, r := range []struct {
		name string
		err  error
	}{
		{"expired", discovery.ErrExpired},
		{"stale", discovery.ErrStale},
		{"bad-signature", discovery.ErrBadSignature},
		{"wrong-identity", discovery.ErrWrongIdentity},
		{"too-large", discovery.ErrTooLarge},
		{"malformed", discovery.ErrMalformed},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return Reason(err)
}

func expectDiscoveryReject(v *Vector, err error, want string) error {
	if err == nil {
		return fmt.Errorf("%w: %s: accepted, want reject %s", ErrMismatch, v.ID(), want)
	}
	if got := discoveryReason(err); got != want {
		return fmt.Errorf("%w: %s: rejected as %s (%v), want %s", ErrMismatch, v.ID(), got, err, want)
	}
	return nil
}

func unixField(v *Vector, k string) (time.Time, error) {
	s, err := v.Must(k)
	if err != nil {
		return time.Time{}, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s: %s is not an integer", ErrVectorFormat, v.ID(), k)
	}
	return time.Unix(n, 0).UTC(), nil
}

func addrsField(v *Vector) []string {
	s, _ := v.Get("addrs")
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

func profileField(v *Vector) (card.ID, error) {
	s, ok := v.Get("profile")
	if !ok {
		return card.ID{}, nil
	}
	return card.ParseID(s)
}

func secretField(v *Vector) (*key.Secret, error) {
	seed, err := v.Hex("seed")
	if err != nil {
		return nil, err
	}
	return key.FromSeed(seed)
}

// --- tokens -----------------------------------------------------------------

// The token format, written out here independently of sync/discovery so the
// vectors check the format and not merely the code: text = prefix +
// base64url(CBOR map {1..7}); signature (key 7) over label ‖ 0 ‖ CBOR of the
// map without key 7.

func tokenCBOR(text string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(strings.TrimPrefix(text, discovery.TokenPrefix))
}

func tokenFields(raw []byte) map[int]any {
	var m map[int]any
	if err := canon.Unmarshal(raw, &m); err != nil {
		panic(err) // raw is sublog's own token
	}
	return m
}

func encodeTokenFields(m map[int]any) string {
	return discovery.TokenPrefix + base64.RawURLEncoding.EncodeToString(canon.MustMarshal(m))
}

func tokenSignable(m map[int]any) []byte {
	body := map[int]any{}
	for k, v := range m {
		if k != 7 {
			body[k] = v
		}
	}
	return append(append([]byte(discovery.LabelToken), 0), canon.MustMarshal(body)...)
}

func tokenProfile() card.ID { return card.IDOf([]byte("golden profile card")) }

func genTokens() ([]*Vector, error) {
	alice, mallory := Fixture("alice"), Fixture("mallory")
	iss, exp := time.Unix(BaseTS, 0).UTC(), time.Unix(BaseTS+86400, 0).UTC()
	now := BaseTS + 3600
	var out []*Vector
	accept := []struct {
		name    string
		addrs   []string
		profile bool
	}{
		{"addrs-and-profile", []string{"127.0.0.1:7000", "[2001:db8::1]:7000", "host.example.org:443"}, true},
		{"identity-only", nil, false},
	}
	for _, a := range accept {
		d := discovery.TokenDraft{Addrs: a.addrs, Issued: iss, Expires: exp}
		if a.profile {
			d.Profile = tokenProfile()
		}
		tok, err := discovery.NewToken(alice, d)
		if err != nil {
			return nil, err
		}
		v := newVector("discovery-token", a.name, "accept",
			"token(seed, addrs, issued, expires, profile) must give exactly this text;",
			"text = \"sublog1.\" + base64url(cbor), no padding; valid at now")
		v.SetHex("seed", key.DeriveSeed(Master, "alice"))
		v.Set("identity", alice.ID().String())
		v.Set("addrs", strings.Join(a.addrs, " "))
		v.Set("issued", strconv.FormatInt(iss.Unix(), 10))
		v.Set("expires", strconv.FormatInt(exp.Unix(), 10))
		if a.profile {
			v.Set("profile", tokenProfile().String())
		}
		v.Set("now", strconv.FormatInt(now, 10))
		raw, _ := tokenCBOR(tok.String())
		v.SetHex("cbor", raw)
		v.Set("token", tok.String())
		out = append(out, v)
	}
	good, err := discovery.NewToken(alice, discovery.TokenDraft{Addrs: []string{"127.0.0.1:7000"}, Issued: iss, Expires: exp})
	if err != nil {
		return nil, err
	}
	raw, _ := tokenCBOR(good.String())
	forge := func(f func(m map[int]any)) string {
		m := tokenFields(raw)
		f(m)
		return encodeTokenFields(m)
	}
	resign := func(signer *key.Secret, f func(m map[int]any)) string {
		m := tokenFields(raw)
		f(m)
		delete(m, 7)
		m[7] = signer.Sign(tokenSignable(m))
		return encodeTokenFields(m)
	}
	rejects := []struct {
		name, token string
		now         int64
		reason, why string
	}{
		{"expired", good.String(), exp.Unix(), "expired", "checked exactly at its expiry time"},
		{"altered-address", forge(func(m map[int]any) { m[3] = []string{"10.6.6.6:7000"} }), now, "bad-signature", "address changed after signing"},
		{"extended-expiry", forge(func(m map[int]any) { m[5] = exp.Unix() + 86400*365 }), now, "bad-signature", "expiry changed after signing"},
		{"signed-by-another-key", resign(mallory, func(map[int]any) {}), now, "bad-signature", "names alice, signed by mallory"},
		{"explicit-empty-addrs", resign(alice, func(m map[int]any) { m[3] = []string{} }), now, "malformed", "an empty address list must be omitted: one valid encoding"},
		{"unknown-field", resign(alice, func(m map[int]any) { m[8] = 1 }), now, "malformed", "field 8 is not defined"},
		{"version-2", resign(alice, func(m map[int]any) { m[1] = 2 }), now, "malformed", "unknown version"},
		{"expires-before-issued", resign(alice, func(m map[int]any) { m[5] = iss.Unix() - 1 }), now, "malformed", "expiry before issue time"},
		{"bad-address", resign(alice, func(m map[int]any) { m[3] = []string{"127.0.0.1:0"} }), now, "malformed", "port 0"},
		{"weak-identity", forge(func(m map[int]any) { m[2] = make([]byte, 32) }), now, "malformed", "the identity is a small-order point"},
		{"padded", good.String() + "=", now, "malformed", "base64url with padding"},
		{"no-prefix", strings.TrimPrefix(good.String(), discovery.TokenPrefix), now, "malformed", "missing sublog1. prefix"},
	}
	for _, r := range rejects {
		v := newVector("discovery-token", "reject-"+r.name, "reject "+r.reason, r.why)
		v.Set("now", strconv.FormatInt(r.now, 10))
		v.Set("token", r.token)
		out = append(out, v)
	}
	return out, nil
}

func checkToken(v *Vector) error {
	accept, reason, _ := v.Expect()
	now, err := unixField(v, "now")
	if err != nil {
		return err
	}
	text, err := v.Must("token")
	if err != nil {
		return err
	}
	tok, derr := discovery.DecodeToken(text, now)
	if !accept {
		return expectDiscoveryReject(v, derr, reason)
	}
	if derr != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), derr)
	}
	sk, err := secretField(v)
	if err != nil {
		return err
	}
	iss, err := unixField(v, "issued")
	if err != nil {
		return err
	}
	exp, err := unixField(v, "expires")
	if err != nil {
		return err
	}
	prof, err := profileField(v)
	if err != nil {
		return err
	}
	want, err := v.Hex("cbor")
	if err != nil {
		return err
	}
	made, err := discovery.NewToken(sk, discovery.TokenDraft{Addrs: addrsField(v), Issued: iss, Expires: exp, Profile: prof})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	raw, _ := tokenCBOR(text)
	id, _ := v.Get("identity")
	if made.String() != text || hex.EncodeToString(raw) != hex.EncodeToString(want) || tok.ID().String() != id ||
		strings.Join(tok.Addrs(), " ") != strings.Join(addrsField(v), " ") || tok.Profile() != prof ||
		!tok.Expires().Equal(exp) || !tok.Issued().Equal(iss) {
		return fmt.Errorf("%w: %s: token does not match its fields", ErrMismatch, v.ID())
	}
	return nil
}

// --- PKARR ------------------------------------------------------------------

// jsPacket is a relay payload made by the pkarr npm package 1.3.0
// (SignedPacket.fromPacket with alice's seed, timestamp 1767225600000000,
// two TXT records at _sublog: addr=127.0.0.1:7000, addr=[::1]:7000, TTL 300).
// It pins that sublog reads another implementation's packets.
const jsPacket = "e17edaaadf08f35dc8513f8457bca534696a792ea0a685aa1f581a894156b56d32ef0909f68d041f5ec8bb97337cce643203d0ddf7af5d9bb92e2da12ffe36020006474846204000000080000000000200000000075f7375626c6f67346a72667170797935346d696d67616b657967746e36753678747a3931613465783978716577706a6a776b6262616933383836626f00001000010000012c001413616464723d3132372e302e302e313a37303030075f7375626c6f67346a72667170797935346d696d67616b657967746e36753678747a3931613465783978716577706a6a776b6262616933383836626f00001000010000012c00100f616464723d5b3a3a315d3a37303030"

func genPKARR() ([]*Vector, error) {
	alice, mallory := Fixture("alice"), Fixture("mallory")
	at := time.Unix(BaseTS, 0).UTC()
	rec := discovery.Record{Addrs: []string{"127.0.0.1:7000", "[2001:db8::1]:7000"}, Profile: tokenProfile(), TTL: 300}
	p, err := discovery.NewPacket(alice, at, rec)
	if err != nil {
		return nil, err
	}
	var out []*Vector
	v := newVector("pkarr", "sublog-record", "accept",
		"NewPacket(seed, timestamp, addrs, profile, ttl) must give exactly this DNS packet and payload;",
		"signature = Ed25519 over signable = \"3:seqi<timestamp>e1:v<len>:<packet>\" (BEP 44);",
		"payload = signature(64) || timestamp(8, big-endian) || packet")
	v.SetHex("seed", key.DeriveSeed(Master, "alice"))
	v.Set("identity", alice.ID().String())
	v.Set("timestamp", strconv.FormatUint(p.Timestamp(), 10))
	v.Set("ttl", "300")
	v.Set("addrs", strings.Join(rec.Addrs, " "))
	v.Set("profile", rec.Profile.String())
	v.SetHex("signable", discovery.BEP44Signable(p.Timestamp(), p.Packet()))
	v.SetHex("packet", p.Packet())
	v.SetHex("payload", p.Payload())
	out = append(out, v)

	js, _ := hex.DecodeString(jsPacket)
	v = newVector("pkarr", "js-pkarr-1.3.0", "accept",
		"made by the pkarr npm package 1.3.0 (no name compression): sublog must verify it and read its records")
	v.Set("identity", alice.ID().String())
	v.Set("timestamp", "1767225600000000")
	v.Set("ttl", "300")
	v.Set("addrs", "127.0.0.1:7000 [::1]:7000")
	v.SetHex("payload", js)
	out = append(out, v)

	good := p.Payload()
	other, err := discovery.NewPacket(mallory, at, rec)
	if err != nil {
		return nil, err
	}
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 0x01
	retimed := append([]byte(nil), good...)
	binary.BigEndian.PutUint64(retimed[64:72], p.Timestamp()+1)
	notDNS := append(alice.Sign(discovery.BEP44Signable(7, []byte{0xff, 0xff})), 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff)
	older, err := discovery.NewPacket(alice, at.Add(-time.Second), rec)
	if err != nil {
		return nil, err
	}
	rejects := []struct {
		name    string
		payload []byte
		seen    uint64
		reason  string
		why     string
	}{
		{"another-keys-packet", other.Payload(), 0, "bad-signature", "a valid packet of mallory served for alice's key"},
		{"tampered-record", tampered, 0, "bad-signature", "last byte of the DNS packet flipped"},
		{"retimed", retimed, 0, "bad-signature", "timestamp changed after signing"},
		{"not-dns", notDNS, 0, "malformed", "validly signed bytes that are not a DNS packet"},
		{"too-large", append(good, make([]byte, discovery.MaxPayload)...), 0, "too-large", "payload over 1072 bytes"},
		{"short", good[:71], 0, "malformed", "shorter than signature and timestamp"},
		{"stale", older.Payload(), p.Timestamp(), "stale", "older than the packet already seen (seen-timestamp): no rollback"},
	}
	for _, r := range rejects {
		v := newVector("pkarr", "reject-"+r.name, "reject "+r.reason, r.why)
		v.Set("identity", alice.ID().String())
		if r.seen != 0 {
			v.Set("seen-timestamp", strconv.FormatUint(r.seen, 10))
		}
		v.SetHex("payload", r.payload)
		out = append(out, v)
	}
	return out, nil
}

func checkPKARR(v *Vector) error {
	accept, reason, _ := v.Expect()
	ids, err := v.Must("identity")
	if err != nil {
		return err
	}
	id, err := key.ParseID(ids)
	if err != nil {
		return fmt.Errorf("%w: %s: identity: %v", ErrVectorFormat, v.ID(), err)
	}
	payload, err := v.Hex("payload")
	if err != nil {
		return err
	}
	p, perr := discovery.ParsePayload(id, payload)
	if perr == nil {
		if s, ok := v.Get("seen-timestamp"); ok {
			seen, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: %s: seen-timestamp", ErrVectorFormat, v.ID())
			}
			if p.Timestamp() < seen {
				perr = fmt.Errorf("%w: %d < %d", discovery.ErrStale, p.Timestamp(), seen)
			}
		}
	}
	if !accept {
		return expectDiscoveryReject(v, perr, reason)
	}
	if perr != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), perr)
	}
	rec, err := p.Record()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	ts, _ := v.Get("timestamp")
	ttl, _ := v.Get("ttl")
	prof, err := profileField(v)
	if err != nil {
		return err
	}
	if strconv.FormatUint(p.Timestamp(), 10) != ts || strconv.FormatUint(uint64(rec.TTL), 10) != ttl ||
		strings.Join(rec.Addrs, " ") != strings.Join(addrsField(v), " ") || rec.Profile != prof {
		return fmt.Errorf("%w: %s: packet does not match its fields", ErrMismatch, v.ID())
	}
	if _, ok := v.Get("seed"); !ok {
		return nil // made by another implementation: read, not reproduced
	}
	// sublog's own packets must be reproduced byte for byte.
	sk, err := secretField(v)
	if err != nil {
		return err
	}
	made, err := discovery.NewPacket(sk, time.UnixMicro(int64(p.Timestamp())), discovery.Record{Addrs: addrsField(v), Profile: prof, TTL: rec.TTL})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	signable, err := v.Hex("signable")
	if err != nil {
		return err
	}
	packet, err := v.Hex("packet")
	if err != nil {
		return err
	}
	if hex.EncodeToString(made.Payload()) != hex.EncodeToString(payload) ||
		hex.EncodeToString(made.Packet()) != hex.EncodeToString(packet) ||
		hex.EncodeToString(discovery.BEP44Signable(p.Timestamp(), packet)) != hex.EncodeToString(signable) {
		return fmt.Errorf("%w: %s: NewPacket does not reproduce the bytes", ErrMismatch, v.ID())
	}
	return nil
}
