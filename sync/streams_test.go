package sync

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/transport"
)

// countingTransport counts the bytes its dialled connections read.
type countingTransport struct {
	transport.Transport
	in *atomic.Int64
}

type countingConn struct {
	transport.Conn
	in *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (t countingTransport) Dial(ctx context.Context, addr string) (transport.Conn, error) {
	c, err := t.Transport.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, in: t.in}, nil
}

func appendCard(t *testing.T, st Store, sk *key.Secret, d card.Draft) *card.Card {
	t.Helper()
	h, ok := st.Head(sk.ID())
	seq, prev := uint64(1), card.ID{}
	if ok {
		seq, prev = h.Seq+1, h.ID
	}
	d.TS = 1700000000 + int64(seq)
	c, err := card.Sign(sk, seq, prev, d, testCaps)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Import(c.Bytes()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBlobOverSyncConnection: a blob named by the owner's bundle card goes
// to a trusted peer over a blob stream of a sync connection; a peer that is
// not entitled to any card naming it never receives a chunk (counted on the
// bytes it read), even after it wrote a card of its own naming the hash.
func TestBlobOverSyncConnection(t *testing.T) {
	owner, friend, stranger := secret(t, "owner"), secret(t, "friend"), secret(t, "stranger")
	st := newStore()
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*blob.ChunkSize+100)/16)
	h := blob.Sum(data)
	appendCard(t, st, owner, card.Draft{Kind: card.KindBundle, Body: map[string]any{"hash": h[:], "name": "x", "version": "1", "peer": owner.ID().Bytes(), "size": len(data)}})
	// The stranger's own card naming the hash, synced to the owner.
	appendCard(t, st, stranger, card.Draft{Kind: card.KindGrant, Body: map[string]any{"bundle": h[:]}})
	blobs, err := blob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.Put(data); err != nil {
		t.Fatal(err)
	}
	pol := NewLists([]key.ID{owner.ID()}, []key.ID{friend.ID()}, nil)
	type served struct {
		peer key.ID
		ss   blob.ServeStats
	}
	got := make(chan served, 4)
	mem := transport.NewMem()
	ln, err := mem.Listen("owner")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sopt := Options{Secret: owner, Rand: newRand(1), Policy: pol, Timeout: 5 * time.Second,
		Handlers: map[byte]PeerStream{StreamBlob: BlobHandler(st, pol, blobs, func(p key.ID, ss blob.ServeStats, err error) {
			got <- served{p, ss}
		})}}
	sdone := make(chan error, 1)
	go func() { sdone <- Serve(ctx, ln, st, sopt, nil) }()

	fetch := func(sk *key.Secret) (blob.Stats, error, int64, *blob.Store) {
		var in atomic.Int64
		c, err := DialStreams(ctx, countingTransport{mem, &in}, "owner", Options{Secret: sk, Rand: newRand(2), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Peer() != owner.ID() {
			t.Fatalf("connected to %s", c.Peer())
		}
		mine, _ := blob.Open(t.TempDir())
		stats, err := blob.FetchAny(ctx, mine, h, blob.FetchOptions{Size: int64(len(data))}, []blob.Opener{BlobSource{C: c, Addr: "owner"}})
		return stats, err, in.Load(), mine
	}

	stats, err, _, mine := fetch(friend)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := mine.Get(h); err != nil || !bytes.Equal(b, data) || stats.BytesFetched != int64(len(data)) {
		t.Fatalf("friend's copy: %v, %+v", err, stats)
	}
	if s := <-got; s.peer != friend.ID() || !s.ss.Entitled || s.ss.BytesSent != int64(len(data)) {
		t.Fatalf("served %+v", s)
	}

	stats, err, in, mine := fetch(stranger)
	if !errors.Is(err, blob.ErrUnavailable) || mine.Has(h) || stats.BytesFetched != 0 {
		t.Fatalf("stranger: %v, %+v", err, stats)
	}
	// Everything the stranger read (handshake, yamux, the answer) is far
	// less than one chunk: no chunk ever left.
	if in > 4096 {
		t.Fatalf("the stranger read %d bytes", in)
	}
	if s := <-got; s.peer != stranger.ID() || s.ss.Entitled || s.ss.Chunks != 0 {
		t.Fatalf("served the stranger %+v", s)
	}
	cancel()
	<-sdone
}

// TestSyncStillRunsBesideSideStreams: a stream of an unknown kind is closed
// and the sync round on the same connection goes on.
func TestUnknownStreamKindClosed(t *testing.T) {
	a, b := secret(t, "a"), secret(t, "b")
	sa, sb := newStore(), newStore()
	appendN(t, sa, a, 3)
	mem := transport.NewMem()
	ln, _ := mem.Listen("b")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	polB := NewLists([]key.ID{b.ID()}, []key.ID{a.ID()}, nil)
	go Serve(ctx, ln, sb, Options{Secret: b, Rand: newRand(3), Policy: polB, Timeout: 5 * time.Second}, nil)
	c, err := DialStreams(ctx, mem, "b", Options{Secret: a, Rand: newRand(4), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Open(StreamProxy)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	if n, err := s.Read(one[:]); n != 0 || err == nil {
		t.Fatalf("unknown kind answered: %d %v", n, err)
	}
	c.Close()
	polA := NewLists([]key.ID{a.ID()}, []key.ID{b.ID()}, nil)
	if _, err := Dial(ctx, mem, "b", sa, Options{Secret: a, Rand: newRand(5), Policy: polA, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	mustHeadsEqual(t, sa, sb)
}
