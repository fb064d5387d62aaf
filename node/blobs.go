package node

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/log/key"
	lsync "github.com/sublog/sublog/sync"
)

// Blobs is the node's blob store (HOME/blobs): forwarded commands use it,
// the live links serve it to entitled peers, and the instance collects
// what no stored card names.
func (n *Node) Blobs() *blob.Store { return n.blobs }

// blobServed logs each blob stream a peer opened on a live link.
func (n *Node) blobServed(peer key.ID, ss blob.ServeStats, err error) {
	lg := n.log.With("peer", peer.String(), "blob", ss.Hash.String())
	switch {
	case !ss.Entitled:
		lg.Info("blob refused (not held, or no card naming it is visible to that peer)")
	case err != nil:
		lg.Warn("blob transfer cut", "chunks", ss.Chunks, "err", err)
	default:
		lg.Info("blob served", "chunks", ss.Chunks, "bytes", ss.BytesSent)
	}
}

// CollectBlobs removes every blob and partial that no stored card names
// and that is older than the configured grace (blob.Store.GC with the
// store's references); each removal is logged naming the blob.
func (n *Node) CollectBlobs() ([]blob.Info, error) {
	refs, err := lsync.ReferencedBlobs(n.st)
	if err != nil {
		return nil, err
	}
	gone, err := n.blobs.GC(func(h blob.Hash) bool { return refs[h] }, n.opt.Now(), time.Duration(n.cfg.Blobs.GCGrace))
	for _, in := range gone {
		what := "blob"
		if in.Partial {
			what = "partial blob"
		}
		n.log.Info(what+" collected (no stored card names it)", "blob", in.Hash.String(), "size", in.Size)
	}
	return gone, err
}

// collectBlobs runs CollectBlobs at start and every blobs.gc_interval.
func (n *Node) collectBlobs() {
	defer n.wg.Done()
	every := time.Duration(n.cfg.Blobs.GCInterval)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := n.CollectBlobs(); err != nil {
			n.log.Warn("collecting blobs", "err", err)
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// linkSource is a blob source over a live link.
type linkSource struct {
	l    *lsync.Link
	addr string
}

func (s linkSource) OpenBlobStream(context.Context) (io.ReadWriteCloser, error) {
	return s.l.OpenStream(lsync.StreamBlob)
}

func (s linkSource) String() string {
	if s.addr != "" {
		return fmt.Sprintf("%s at %s (live link)", s.l.Peer().Short(), s.addr)
	}
	return s.l.Peer().Short() + " (live link)"
}

// BlobSources are the live links as blob sources: a command fetching a
// blob through the instance asks the connected peers first (each serves
// only what this home is entitled to), before dialling any address.
func (n *Node) BlobSources() []blob.Opener {
	if n.live == nil {
		return nil
	}
	n.live.mu.Lock()
	defer n.live.mu.Unlock()
	var out []blob.Opener
	for _, ls := range n.live.links {
		for _, s := range ls {
			out = append(out, linkSource{l: s.l, addr: s.addr})
		}
	}
	return out
}
