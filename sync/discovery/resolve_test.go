package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
)

func mustToken(t testing.TB, sk *key.Secret, now time.Time, addrs ...string) *Token {
	t.Helper()
	return issuedToken(t, sk, now.Add(-time.Minute), now, addrs...)
}

// issuedToken is a token issued at iss, valid until an hour after now.
func issuedToken(t testing.TB, sk *key.Secret, iss, now time.Time, addrs ...string) *Token {
	t.Helper()
	tok, err := NewToken(sk, TokenDraft{Addrs: addrs, Issued: iss, Expires: now.Add(time.Hour), Profile: profileID("profile")})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forgedToken claims to be claimed's token but is signed by signer.
func forgedToken(t testing.TB, claimed, signer *key.Secret, now time.Time, addrs ...string) string {
	t.Helper()
	b := tokenBody{V: 1, ID: claimed.ID().Bytes(), Addrs: addrs, Issued: now.Unix() - 60, Expires: now.Unix() + 3600}
	return encodeWire(tokenWire{V: b.V, ID: b.ID, Addrs: b.Addrs, Issued: b.Issued, Expires: b.Expires, Sig: signer.Sign(tokenSignable(b))})
}

// fixedRelay serves one payload for every GET.
func fixedRelay(t testing.TB, payload []byte) string {
	return startRelay(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(payload) }))
}

func outcomes(res *Result) string {
	var s []string
	for _, a := range res.Attempts {
		s = append(s, a.Source+":"+a.Outcome)
	}
	return strings.Join(s, " ")
}

// Every poisoned source is refused and resolution falls through, in order,
// to the one honest hint.
func TestResolvePoisonedFallThrough(t *testing.T) {
	ctx := context.Background()
	alice, mallory := secret(t, "alice"), secret(t, "mallory")
	aliceAddr := startProver(t, alice)
	impostor := startProver(t, mallory)
	impostor2 := startProver(t, mallory)
	now := time.Now()

	cache, err := OpenCache(filepath.Join(t.TempDir(), "cache.json"))
	if err != nil {
		t.Fatal(err)
	}
	newest := newPacket(t, "alice", now.Add(-time.Minute), impostor)
	cache.SeePacket(alice.ID(), newest.Timestamp())

	expired, err := NewToken(alice, TokenDraft{Addrs: []string{aliceAddr}, Issued: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	w := rawToken(t, mustToken(t, alice, now, aliceAddr))
	w.Addrs = []string{impostor} // altered to point at the impostor
	altered := encodeWire(w)
	tampered := newPacket(t, "alice", now, aliceAddr).Payload()
	tampered[len(tampered)-2] ^= 0x01

	r := &Resolver{
		Tokens: []string{expired.String(), altered, forgedToken(t, alice, mallory, now, impostor), mustToken(t, mallory, now, impostor).String()},
		Relays: []string{
			fixedRelay(t, newPacket(t, "mallory", now, impostor).Payload()),     // another key's packet
			fixedRelay(t, newPacket(t, "alice", now.Add(-time.Hour)).Payload()), // stale (older than cached)
			fixedRelay(t, tampered),               // bad signature
			startRelay(t, http.NotFoundHandler()), // has nothing
			"http://127.0.0.1:1",                  // unreachable
			fixedRelay(t, newest.Payload()),       // valid, points at an impostor
		},
		DNSNames: []string{"example.org"},
		Prover:   &ChallengeProver{Timeout: 2 * time.Second},
		Cache:    cache,
	}
	server, kind := startDNS(t, map[string][]string{"_sublog.example.org.": {
		// A DNS hint to an impostor, newer so it is tried first.
		issuedToken(t, alice, now.Add(-time.Second), now, impostor2).String(),
		issuedToken(t, alice, now.Add(-time.Hour), now, aliceAddr).String(),
	}})
	t.Logf("DNS server: %s", kind)
	r.DNS = &DNSClient{Server: server, Timeout: 2 * time.Second}

	res, err := r.Resolve(ctx, alice.ID())
	if err != nil {
		t.Fatalf("%v\n%s", err, outcomes(res))
	}
	want := "token:rejected token:rejected token:rejected token:rejected " +
		"pkarr:rejected pkarr:rejected pkarr:rejected pkarr:empty pkarr:error pkarr:rejected " +
		"dns:rejected dns:accepted"
	if got := outcomes(res); got != want {
		t.Fatalf("attempts\n got %s\nwant %s", got, want)
	}
	if res.Addr != aliceAddr || res.Source != SourceDNS || res.ID != alice.ID() {
		t.Fatalf("result %+v", res)
	}
	wantErr := []error{ErrExpired, ErrBadSignature, ErrBadSignature, ErrWrongIdentity, ErrBadSignature, ErrStale, ErrBadSignature, ErrNotFound, nil, ErrProof, ErrProof}
	for i, w := range wantErr {
		if w != nil && !errors.Is(res.Attempts[i].Err(), w) {
			t.Errorf("attempt %d (%s %s): %v, want %v", i, res.Attempts[i].Source, res.Attempts[i].Where, res.Attempts[i].Err(), w)
		}
	}
	// The trace is JSON a script can read: each source, what it gave, why.
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"source":"pkarr"`, `"outcome":"rejected"`, `"gave":{"addrs":["` + impostor + `"]`, `"addr":"` + aliceAddr + `"`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("JSON lacks %s:\n%s", s, b)
		}
	}

	// The valid newer packet raised the rollback floor, persisted.
	again, err := OpenCache(cache.path)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := again.Lookup(alice.ID()); e.PkarrTS != newest.Timestamp() || e.Addr != aliceAddr || e.Source != SourceDNS {
		t.Fatalf("cache entry %+v", e)
	}
}

// When every source fails the error says so, naming each, and no address
// is returned.
func TestResolveAllFail(t *testing.T) {
	alice, mallory := secret(t, "alice"), secret(t, "mallory")
	impostor := startProver(t, mallory)
	now := time.Now()
	r := &Resolver{
		Tokens: []string{mustToken(t, alice, now, impostor).String()},
		Relays: []string{fixedRelay(t, newPacket(t, "alice", now, impostor).Payload())},
		Prover: &ChallengeProver{Timeout: 2 * time.Second},
	}
	res, err := r.Resolve(context.Background(), alice.ID())
	if !errors.Is(err, ErrUnreachable) || res.Addr != "" {
		t.Fatalf("%v %+v", err, res)
	}
	if got := outcomes(res); got != "token:rejected pkarr:rejected" {
		t.Fatalf("attempts %s", got)
	}
	if res.Attempts[1].Candidates[0].Outcome != Skipped {
		t.Fatalf("impostor tried twice: %+v", res.Attempts[1])
	}
	if !strings.Contains(err.Error(), "token #1: rejected") || !strings.Contains(err.Error(), "pkarr http://") {
		t.Fatalf("error does not name the sources: %v", err)
	}
	if _, err := (&Resolver{Prover: &ChallengeProver{}}).Resolve(context.Background(), alice.ID()); !errors.Is(err, ErrUnreachable) ||
		!strings.Contains(err.Error(), "no discovery source") {
		t.Fatalf("no sources: %v", err)
	}
}

// A proven result is cached with its expiry and proved again on use; an
// expired or no-longer-proving entry is dropped.
func TestResolveCache(t *testing.T) {
	ctx := context.Background()
	alice := secret(t, "alice")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ServeProofs(ln, alice)
	addr := ln.Addr().String()
	path := filepath.Join(t.TempDir(), "discovery", "cache.json")
	clock := time.Now()
	now := func() time.Time { return clock }
	cache, err := OpenCache(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &Resolver{Tokens: []string{mustToken(t, alice, clock, addr).String()}, Prover: &ChallengeProver{}, Cache: cache, Now: now, CacheTTL: 10 * time.Minute}
	if res, err := r.Resolve(ctx, alice.ID()); err != nil || !res.Expires.Equal(clock.Add(10*time.Minute).Truncate(0)) && res.Expires.Sub(clock) != 10*time.Minute {
		t.Fatalf("%v %+v", err, res)
	}
	// From the cache alone, in a new process.
	cache2, err := OpenCache(path)
	if err != nil {
		t.Fatal(err)
	}
	r2 := &Resolver{Prover: &ChallengeProver{}, Cache: cache2, Now: now}
	res, err := r2.Resolve(ctx, alice.ID())
	if err != nil || res.Source != SourceCache || res.Where != SourceToken || res.Addr != addr {
		t.Fatalf("cached: %v %+v", err, res)
	}
	// Expired: dropped.
	clock = clock.Add(11 * time.Minute)
	if res, err := r2.Resolve(ctx, alice.ID()); !errors.Is(err, ErrUnreachable) || !errors.Is(res.Attempts[0].Err(), ErrExpired) {
		t.Fatalf("expired cache: %v %+v", err, res)
	}
	if e, _ := cache2.Lookup(alice.ID()); e.Addr != "" {
		t.Fatalf("expired entry kept: %+v", e)
	}
	// A cached address that no longer proves the identity is dropped.
	cache2.Remember(alice.ID(), addr, SourceToken, "", clock, clock.Add(time.Hour))
	ln.Close()
	if _, err := r2.Resolve(ctx, alice.ID()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("dead cache entry: %v", err)
	}
	if e, _ := cache2.Lookup(alice.ID()); e.Addr != "" {
		t.Fatalf("failing entry kept: %+v", e)
	}
	// A damaged cache file is reported, not silently replaced.
	if err := writeFile(path, "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenCache(path); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("damaged cache: %v", err)
	}
}

// The prover sends nothing but a magic string and a fresh nonce to a
// candidate address, and refuses an answer replayed from another session.
func TestProverPrivacyAndReplay(t *testing.T) {
	alice := secret(t, "alice")
	real := startProver(t, alice)
	// A recording impostor: keeps what it receives, answers with a proof
	// alice gave earlier (replay).
	var seen [][]byte
	var replay []byte
	{
		conn, err := net.Dial("tcp", real)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(append([]byte(proofMagic), make([]byte, 32)...))
		replay, _ = io.ReadAll(conn)
		conn.Close()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 40)
			io.ReadFull(c, buf)
			c.Write(replay)
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			rest, _ := io.ReadAll(c)
			got <- append(buf, rest...)
			c.Close()
		}
	}()
	p := &ChallengeProver{Timeout: 2 * time.Second}
	for i := 0; i < 2; i++ {
		err := p.Prove(context.Background(), ln.Addr().String(), alice.ID())
		if !errors.Is(err, ErrProof) {
			t.Fatalf("replayed proof accepted: %v", err)
		}
		seen = append(seen, <-got)
	}
	for _, b := range seen {
		if len(b) != len(proofMagic)+32 || !bytes.HasPrefix(b, []byte(proofMagic)) || bytes.Contains(b, alice.ID().Bytes()) {
			t.Fatalf("prover sent %x", b)
		}
	}
	if bytes.Equal(seen[0], seen[1]) {
		t.Fatal("nonce reused")
	}
	if err := p.Prove(context.Background(), real, alice.ID()); err != nil {
		t.Fatal(err)
	}
	if err := p.Prove(context.Background(), real, secret(t, "bob").ID()); !errors.Is(err, ErrProof) {
		t.Fatalf("wrong identity: %v", err)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
