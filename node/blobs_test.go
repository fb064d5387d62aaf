package node

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/log/card"
)

// TestBlobGCInInstance: the running instance collects by itself every blob
// no stored card names, and keeps the one a card names.
func TestBlobGCInInstance(t *testing.T) {
	h, sk := newHome(t, t.TempDir())
	cfg := quickConfig()
	cfg.Listen = nil
	cfg.Blobs.GCInterval = Duration(50 * time.Millisecond)
	cfg.Blobs.GCGrace = 0
	n := start(t, h, cfg)
	kept := []byte("named by a card")
	kh := blob.Sum(kept)
	// The card first: a blob put before the card naming it could be
	// collected in between (that is what the grace is for).
	if _, err := n.Store().Append(sk, card.Draft{Kind: card.KindNote, TS: time.Now().Unix(), ContentHash: kh[:], Body: map[string]any{"t": "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Blobs().Put(kept); err != nil {
		t.Fatal(err)
	}
	junk, err := n.Blobs().Put([]byte("named by nothing"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.Blobs().Has(junk) {
		if time.Now().After(deadline) {
			t.Fatal("the unnamed blob was not collected within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !n.Blobs().Has(kh) {
		t.Fatal("the blob a card names was collected")
	}
}

// TestBlobGCGrace: a blob younger than the grace stays, named or not.
func TestBlobGCGrace(t *testing.T) {
	h, _ := newHome(t, t.TempDir())
	cfg := quickConfig()
	cfg.Listen = nil
	cfg.Blobs.GCInterval = 0 // never by itself
	n := start(t, h, cfg)
	fresh, err := n.Blobs().Put([]byte("just fetched"))
	if err != nil {
		t.Fatal(err)
	}
	gone, err := n.CollectBlobs()
	if err != nil || len(gone) != 0 || !n.Blobs().Has(fresh) {
		t.Fatalf("collected %v (%v) within the grace", gone, err)
	}
}

// TestBlobOverLiveLink: a blob named by a card of a reaches b over the live
// link the two instances keep; a blob that only b's own card names is not
// given to b (entitlement), and b receives none of it.
func TestBlobOverLiveLink(t *testing.T) {
	a, b := pair(t)
	data := bytes.Repeat([]byte("live link blob "), 3*blob.ChunkSize/15)
	h, err := a.Blobs().Put(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store().Append(a.sk, card.Draft{Kind: card.KindNote, TS: time.Now().Unix(), ContentHash: h[:], Body: map[string]any{"t": "x"}}); err != nil {
		t.Fatal(err)
	}
	secret := []byte("a's, named only by b")
	sh, err := a.Blobs().Put(secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store().Append(b.sk, card.Draft{Kind: card.KindNote, TS: time.Now().Unix(), ContentHash: sh[:], Body: map[string]any{"t": "y"}}); err != nil {
		t.Fatal(err)
	}
	waitSeq(t, b.Node, a.sk.ID(), 1, 10*time.Second)
	waitSeq(t, a.Node, b.sk.ID(), 1, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src := b.BlobSources()
	if len(src) != 1 {
		t.Fatalf("b's blob sources: %v", src)
	}
	st, err := blob.FetchAny(ctx, b.Blobs(), h, blob.FetchOptions{}, src)
	if err != nil || st.BytesFetched != int64(len(data)) {
		t.Fatalf("fetch over the link: %+v %v", st, err)
	}
	if got, err := b.Blobs().Get(h); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("b's copy: %v", err)
	}
	st, err = blob.FetchAny(ctx, b.Blobs(), sh, blob.FetchOptions{}, src)
	if !errors.Is(err, blob.ErrUnavailable) || st.BytesFetched != 0 || b.Blobs().Has(sh) {
		t.Fatalf("a blob only b names: %+v %v", st, err)
	}
}
