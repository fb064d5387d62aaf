package discovery

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestBEP44Signable(t *testing.T) {
	got := BEP44Signable(1700000000000000, []byte("hello"))
	if want := "3:seqi1700000000000000e1:v5:hello"; string(got) != want {
		t.Fatalf("got %q want %q", got, want)
	}
	if got := BEP44Signable(0, nil); string(got) != "3:seqi0e1:v0:" {
		t.Fatalf("got %q", got)
	}
}

func newPacket(t testing.TB, name string, at time.Time, addrs ...string) *SignedPacket {
	t.Helper()
	p, err := NewPacket(secret(t, name), at, Record{Addrs: addrs, Profile: profileID(name), TTL: 300})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPacketRoundTrip(t *testing.T) {
	alice := secret(t, "alice")
	p := newPacket(t, "alice", t0, "127.0.0.1:7000", "[::1]:7001")
	pl := p.Payload()
	if len(pl) > MaxPayload || binary.BigEndian.Uint64(pl[64:72]) != uint64(t0.UnixMicro()) {
		t.Fatalf("payload of %d bytes, ts %d", len(pl), binary.BigEndian.Uint64(pl[64:72]))
	}
	// The signature is over the BEP 44 encoding of (timestamp, packet).
	if err := alice.ID().Verify(BEP44Signable(p.Timestamp(), p.Packet()), pl[:64]); err != nil {
		t.Fatal(err)
	}
	q, err := ParsePayload(alice.ID(), pl)
	if err != nil {
		t.Fatal(err)
	}
	r, err := q.Record()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Addrs, ",") != "127.0.0.1:7000,[::1]:7001" || r.Profile != profileID("alice") || r.TTL != 300 || !q.Time().Equal(t0) {
		t.Fatalf("record %+v at %s", r, q.Time())
	}
	// The DNS packet is a real DNS message a resolver library reads: TXT
	// records at _sublog.<key>.
	m := new(dns.Msg)
	if err := m.Unpack(q.Packet()); err != nil {
		t.Fatal(err)
	}
	if len(m.Answer) != 3 || m.Answer[0].Header().Name != "_sublog."+alice.ID().String()+"." {
		t.Fatalf("answers %v", m.Answer)
	}
}

func TestPacketRejects(t *testing.T) {
	alice, mallory := secret(t, "alice"), secret(t, "mallory")
	good := newPacket(t, "alice", t0, "127.0.0.1:7000").Payload()
	other := newPacket(t, "mallory", t0, "127.0.0.1:6666").Payload()
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-3] ^= 0x20
	newerTS := append([]byte(nil), good...)
	binary.BigEndian.PutUint64(newerTS[64:72], uint64(t0.Add(time.Hour).UnixMicro()))
	// Validly signed, but not a DNS packet.
	notDNS, err := SignPacket(mallory, 1, []byte{1, 2, 3})
	if err == nil {
		t.Fatal("SignPacket accepted a non-DNS packet")
	}
	_ = notDNS
	garbage := append([]byte(nil), make([]byte, 72)...)
	sig := alice.Sign(BEP44Signable(5, []byte{0xff, 0xff, 0xff}))
	copy(garbage, sig)
	binary.BigEndian.PutUint64(garbage[64:], 5)
	garbage = append(garbage, 0xff, 0xff, 0xff)
	huge := make([]byte, MaxPayload+1)
	bigTS := append([]byte(nil), good...)
	binary.BigEndian.PutUint64(bigTS[64:72], 1<<63)

	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"another key's packet", other, ErrBadSignature},
		{"tampered record", tampered, ErrBadSignature},
		{"timestamp changed", newerTS, ErrBadSignature},
		{"bad DNS under a good signature", garbage, ErrMalformed},
		{"too large", huge, ErrTooLarge},
		{"short", good[:71], ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"timestamp over 2^63", bigTS, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := ParsePayload(alice.ID(), c.b)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, %v; want %v", p, err, c.want)
			}
		})
	}
	// A packet larger than 1000 bytes is refused when signing.
	if _, err := SignPacket(alice, 1, make([]byte, MaxDNSPacket+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized packet: %v", err)
	}
}

// A validly signed packet whose _sublog records are malformed is refused as
// a whole (a hint is only used when it parses strictly).
func TestPacketBadRecords(t *testing.T) {
	alice := secret(t, "alice")
	name := "_sublog." + Origin(alice.ID())
	for _, txt := range []string{"addr=nohost", "addr=1.2.3.4:0", "noequals", "profile=sha256:xyz", "addr=" + strings.Repeat("a", 300) + ":1"} {
		m := new(dns.Msg)
		m.Response = true
		m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: SplitTXT(txt)}}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		p, err := SignPacket(alice, 10, b)
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParsePayload(alice.ID(), p.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if r, err := q.Record(); !errors.Is(err, ErrMalformed) {
			t.Errorf("TXT %q: got %+v, %v", clip(txt), r, err)
		}
	}
	// Records at other names and unknown keys are ignored.
	m := new(dns.Msg)
	m.Answer = []dns.RR{
		&dns.TXT{Hdr: dns.RR_Header{Name: "_other." + Origin(alice.ID()), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"addr=nohost"}},
		&dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"future=1"}},
		&dns.TXT{Hdr: dns.RR_Header{Name: strings.ToUpper(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"addr=", "127.0.0.1:9"}},
	}
	b, _ := m.Pack()
	p, err := SignPacket(alice, 10, b)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := p.Record(); err != nil || len(r.Addrs) != 1 || r.Addrs[0] != "127.0.0.1:9" {
		t.Fatalf("got %+v, %v", r, err)
	}
}

func FuzzParsePayload(f *testing.F) {
	alice := secret(f, "alice")
	f.Add(newPacket(f, "alice", t0, "127.0.0.1:7000").Payload())
	f.Add(newPacket(f, "mallory", t0).Payload())
	f.Add(make([]byte, 72))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePayload(alice.ID(), b)
		if err != nil {
			return
		}
		// Anything accepted is alice's, re-encodes to the same bytes and
		// has a record that parses or is refused, never a panic.
		if !bytes.Equal(p.Payload(), b) {
			t.Fatal("payload does not round-trip")
		}
		p.Record()
	})
}

// FuzzDNSPacket feeds arbitrary DNS packets, validly signed, to the record
// parser (the signature does not protect against a malicious key owner).
func FuzzDNSPacket(f *testing.F) {
	alice := secret(f, "alice")
	f.Add(newPacket(f, "alice", t0, "127.0.0.1:7000", "[::1]:1").Packet())
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := SignPacket(alice, 1, b)
		if err != nil {
			return
		}
		q, err := ParsePayload(alice.ID(), p.Payload())
		if err != nil {
			t.Fatalf("signed packet does not parse: %v", err)
		}
		if r, err := q.Record(); err == nil {
			if err := checkAddrs(r.Addrs); err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
		}
	})
}

// startRelay serves a Relay (or any handler) on 127.0.0.1 and returns its URL.
func startRelay(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestRelayServer(t *testing.T) {
	ctx := context.Background()
	alice := secret(t, "alice")
	relay := NewRelay(RelayConfig{MaxKeys: 2, PutRate: 1000, PutBurst: 1000})
	url := startRelay(t, relay)
	c := &RelayClient{}

	if _, err := c.Get(ctx, url, alice.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty relay: %v", err)
	}
	p1 := newPacket(t, "alice", t0, "127.0.0.1:7000")
	if err := c.Put(ctx, url, p1); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, url, alice.ID())
	if err != nil || !bytes.Equal(got.Payload(), p1.Payload()) {
		t.Fatalf("get: %v", err)
	}
	// Idempotent re-put; newer replaces; older refused (409); same time,
	// other content refused.
	if err := c.Put(ctx, url, p1); err != nil {
		t.Fatal(err)
	}
	p2 := newPacket(t, "alice", t0.Add(time.Second), "127.0.0.1:7001")
	if err := c.Put(ctx, url, p2); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, url, p1); !errors.Is(err, ErrStale) {
		t.Fatalf("rollback: %v", err)
	}
	p2b := newPacket(t, "alice", t0.Add(time.Second), "127.0.0.1:7002")
	if err := c.Put(ctx, url, p2b); !errors.Is(err, ErrStale) {
		t.Fatalf("same-time different packet: %v", err)
	}
	if got, _ := c.Get(ctx, url, alice.ID()); got.Timestamp() != p2.Timestamp() {
		t.Fatal("relay rolled back")
	}

	put := func(path string, body []byte, hdr ...string) int {
		req, _ := http.NewRequest(http.MethodPut, url+path, bytes.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	zk := "/" + alice.ID().String()
	p3 := newPacket(t, "alice", t0.Add(2*time.Second), "127.0.0.1:7003")
	for _, c := range []struct {
		name string
		path string
		body []byte
		hdr  []string
		want int
	}{
		{"bad key", "/notakey", p3.Payload(), nil, 400},
		{"another key's packet", zk, newPacket(t, "mallory", t0.Add(time.Hour)).Payload(), nil, 400},
		{"garbage", zk, []byte("hello"), nil, 400},
		{"too large", zk, make([]byte, MaxPayload+1), nil, 413},
		{"CAS mismatch", zk, p3.Payload(), []string{"If-Match", "1"}, 412},
		{"CAS match", zk, p3.Payload(), []string{"If-Match", fmt.Sprint(p2.Timestamp())}, 204},
	} {
		if got := put(c.path, c.body, c.hdr...); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	// Capacity: the oldest key is evicted, never the new one refused.
	for _, n := range []string{"bob", "carol"} {
		if err := c.Put(ctx, url, newPacket(t, n, t0)); err != nil {
			t.Fatal(err)
		}
	}
	if relay.Len() != 2 {
		t.Fatalf("relay holds %d keys", relay.Len())
	}
	if _, err := c.Get(ctx, url, secret(t, "carol").ID()); err != nil {
		t.Fatal(err)
	}
}

// One client cannot flood the relay with PUTs: beyond its budget, 429.
func TestRelayRateLimit(t *testing.T) {
	clock := t0
	url := startRelay(t, NewRelay(RelayConfig{PutRate: 1, PutBurst: 2, Now: func() time.Time { return clock }}))
	c := &RelayClient{}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := c.Put(ctx, url, newPacket(t, "alice", t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	err := c.Put(ctx, url, newPacket(t, "alice", t0.Add(5*time.Second)))
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("third PUT in a burst of 2: %v", err)
	}
	clock = clock.Add(time.Second)
	if err := c.Put(ctx, url, newPacket(t, "alice", t0.Add(6*time.Second))); err != nil {
		t.Fatalf("after a second: %v", err)
	}
}

// A relay that lies: returns another key's packet, a tampered packet, an
// oversized body; the client refuses each.
func TestRelayClientRefusesLies(t *testing.T) {
	alice := secret(t, "alice")
	var body []byte
	url := startRelay(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	c := &RelayClient{}
	good := newPacket(t, "alice", t0, "127.0.0.1:1").Payload()
	tampered := append([]byte(nil), good...)
	tampered[80] ^= 1
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"another key's packet", newPacket(t, "mallory", t0, "127.0.0.1:1").Payload(), ErrBadSignature},
		{"tampered", tampered, ErrBadSignature},
		{"huge", make([]byte, 1<<20), ErrTooLarge},
	} {
		body = tc.b
		if _, err := c.Get(context.Background(), url, alice.ID()); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
