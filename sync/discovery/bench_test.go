package discovery

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// bareGet measures a plain HTTP GET of the stored payload on the same relay
// with the same client (no verification): the raw limit the round trips are
// compared with.
func bareGet(b *testing.B, c *http.Client, url string) time.Duration {
	b.Helper()
	const n = 300
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for i := 0; i < 20; i++ { // warm the connection pool
		get()
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		get()
	}
	return time.Since(start) / n
}

func benchRelay(b *testing.B) (string, *RelayClient, *http.Client) {
	url := startRelay(b, NewRelay(RelayConfig{PutRate: 1e9, PutBurst: 1 << 20}))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	return url, &RelayClient{HTTP: hc}, hc
}

// BenchmarkPublish: sign a fresh packet and PUT it, per operation.
func BenchmarkPublish(b *testing.B) {
	url, rc, hc := benchRelay(b)
	sk := secret(b, "alice")
	ctx := context.Background()
	p, _ := NewPacket(sk, time.Now(), Record{Addrs: []string{"127.0.0.1:7000"}})
	if err := rc.Put(ctx, url, p); err != nil {
		b.Fatal(err)
	}
	raw := bareGet(b, hc, url+"/"+sk.ID().String())
	at := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at = at.Add(time.Microsecond)
		p, err := NewPacket(sk, at, Record{Addrs: []string{"127.0.0.1:7000"}, Profile: profileID("p")})
		if err != nil {
			b.Fatal(err)
		}
		if err := rc.Put(ctx, url, p); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(raw), "x-bare-get")
	b.ReportMetric(float64(raw.Microseconds()), "bare-get-µs")
}

// BenchmarkResolvePKARR: GET, verify the signature, parse the records.
func BenchmarkResolvePKARR(b *testing.B) {
	url, rc, hc := benchRelay(b)
	sk := secret(b, "alice")
	ctx := context.Background()
	p, _ := NewPacket(sk, time.Now(), Record{Addrs: []string{"127.0.0.1:7000"}, Profile: profileID("p")})
	if err := rc.Put(ctx, url, p); err != nil {
		b.Fatal(err)
	}
	raw := bareGet(b, hc, url+"/"+sk.ID().String())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q, err := rc.Get(ctx, url, sk.ID())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := q.Record(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(raw), "x-bare-get")
}

// BenchmarkResolveProven: a whole resolution through the relay, including
// the identity proof at the candidate address (a second TCP round trip).
func BenchmarkResolveProven(b *testing.B) {
	url, rc, hc := benchRelay(b)
	sk := secret(b, "alice")
	addr := startProver(b, sk)
	ctx := context.Background()
	p, _ := NewPacket(sk, time.Now(), Record{Addrs: []string{addr}})
	if err := rc.Put(ctx, url, p); err != nil {
		b.Fatal(err)
	}
	raw := bareGet(b, hc, url+"/"+sk.ID().String())
	r := &Resolver{Relays: []string{url}, Relay: rc, Prover: &ChallengeProver{}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Resolve(ctx, sk.ID()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(raw), "x-bare-get")
}

// BenchmarkTokenDecode: decode and verify a token, against a raw Ed25519
// verification measured in the same run.
func BenchmarkTokenDecode(b *testing.B) {
	sk := secret(b, "alice")
	tok := newToken(b, sk, "127.0.0.1:7000", "peer.example.org:7000")
	msg := []byte("raw verify")
	sig := sk.Sign(msg)
	const n = 2000
	start := time.Now()
	for i := 0; i < n; i++ {
		if sk.ID().Verify(msg, sig) != nil {
			b.Fatal("verify")
		}
	}
	raw := time.Since(start) / n
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeToken(tok.String(), t0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N))/float64(raw), "x-raw-verify")
}

// BenchmarkResolveProvenChannel: as BenchmarkResolveProven, with the proof
// by the sync channel's Noise XX handshake (ChannelProver).
func BenchmarkResolveProvenChannel(b *testing.B) {
	url, rc, hc := benchRelay(b)
	sk := secret(b, "alice")
	addr, _ := startChannelServer(b, sk, nil)
	ctx := context.Background()
	p, _ := NewPacket(sk, time.Now(), Record{Addrs: []string{addr}})
	if err := rc.Put(ctx, url, p); err != nil {
		b.Fatal(err)
	}
	raw := bareGet(b, hc, url+"/"+sk.ID().String())
	r := &Resolver{Relays: []string{url}, Relay: rc, Prover: &ChannelProver{}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Resolve(ctx, sk.ID()); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per)/float64(raw), "x-bare-get")
}
