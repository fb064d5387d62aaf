package discovery

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The DHT path, on a small Mainline DHT of anacrolix/dht nodes that lives
// only on loopback (never the public DHT).
func TestDHTLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var nodes []*DHT
	start := func(serve bool, boot ...string) *DHT {
		d, err := NewDHT(DHTConfig{ListenAddr: "127.0.0.1:0", Bootstrap: boot, Serve: serve, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		return d
	}
	first := start(true, "127.0.0.1:1") // bootstraps from nobody useful; others join it
	nodes = append(nodes, first)
	for i := 0; i < 3; i++ {
		nodes = append(nodes, start(true, first.Addr().String()))
	}
	var boot []string
	for _, n := range nodes {
		boot = append(boot, n.Addr().String())
	}
	for _, n := range nodes {
		n.Bootstrap(ctx)
	}
	publisher, reader := start(false, boot...), start(false, boot...)

	alice := secret(t, "alice")
	p := newPacket(t, "alice", time.Now(), "127.0.0.1:7000")
	if err := publisher.Put(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := reader.Get(ctx, alice.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.Timestamp() != p.Timestamp() || string(got.Payload()) != string(p.Payload()) {
		t.Fatalf("got %d, want %d", got.Timestamp(), p.Timestamp())
	}
	// A newer packet replaces it; the resolver reads it from the DHT.
	p2 := newPacket(t, "alice", time.Now().Add(time.Second), "127.0.0.1:7001")
	if err := publisher.Put(ctx, p2); err != nil {
		t.Fatal(err)
	}
	// anacrolix's get returns once the lookup stalls, with the newest
	// value seen by then; a node the put missed may answer first, so ask
	// again until the newer packet is seen (it must be, and never anything
	// older than the first).
	for i := 0; ; i++ {
		got, err := reader.Get(ctx, alice.ID())
		if err != nil || got.Timestamp() < p.Timestamp() {
			t.Fatalf("newer: %v", err)
		}
		if got.Timestamp() == p2.Timestamp() {
			break
		}
		t.Logf("get %d: older packet %d", i, got.Timestamp())
		if i == 20 {
			t.Fatal("the newer packet was never found")
		}
	}
	// The resolver takes the DHT as a source, after the relays; the
	// rollback floor applies to it too.
	addr := startProver(t, alice)
	p3 := newPacket(t, "alice", time.Now().Add(2*time.Second), addr)
	if err := publisher.Put(ctx, p3); err != nil {
		t.Fatal(err)
	}
	var res *Result
	for i := 0; i < 20; i++ {
		res, err = (&Resolver{DHT: reader, Prover: &ChallengeProver{}}).Resolve(ctx, alice.ID())
		if err == nil {
			break
		}
	}
	if err != nil || res.Addr != addr || res.Source != SourceDHT {
		t.Fatalf("resolve via DHT: %v %+v", err, res)
	}
	cache, _ := OpenCache("")
	cache.SeePacket(alice.ID(), p3.Timestamp()+1)
	res, err = (&Resolver{DHT: reader, Prover: &ChallengeProver{}, Cache: cache}).Resolve(ctx, alice.ID())
	if !errors.Is(err, ErrUnreachable) || !errors.Is(res.Attempts[0].Err(), ErrStale) {
		t.Fatalf("stale DHT packet: %v %+v", err, res)
	}
	// Nothing stored for bob.
	short, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if _, err := reader.Get(short, secret(t, "bob").ID()); err == nil || !errors.Is(err, ErrNotFound) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("bob: %v", err)
	}
}
