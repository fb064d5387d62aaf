package sync

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/bundle"
	"github.com/sublog/sublog/sync/proto"
)

// ExportOptions configure a bundle export.
type ExportOptions struct {
	Secret  *key.Secret // the exporter, who signs the bundle
	Rand    io.Reader   // for encryption
	Created int64       // Unix seconds, recorded in the header
	// For, when set, encrypts the bundle to that identity and exports only
	// the logs Policy lets it see. Without it the bundle is plain and holds
	// every log the store has (the user chose to export their store).
	For    *key.ID
	Policy Policy
	// Since holds the recipient's heads (from `sublog heads`): a log is
	// exported from the card after the recipient's head when that head is
	// the exporter's card at that seq, else whole.
	Since []sublog.Head
	// Progress, when set, is called as cards are written.
	Progress func(Stats)
}

// Export writes a bundle of st's logs to w.
func Export(w io.Writer, st Store, o ExportOptions) (Stats, error) {
	var stats Stats
	if o.Secret == nil {
		return stats, errors.New("sync: export needs the exporter's secret key")
	}
	if o.Policy == nil {
		o.Policy = NewLists([]key.ID{o.Secret.ID()}, nil, nil)
	}
	bw, err := bundle.NewWriter(w, o.Secret, bundle.WriterOptions{Created: o.Created, Recipient: o.For, Rand: o.Rand})
	if err != nil {
		return stats, err
	}
	since := map[key.ID]sublog.Head{}
	for _, h := range o.Since {
		since[h.Author] = h
	}
	leaves := func(a, b *card.Card) bool { return MayLeave(a, o.For, o.Policy) && MayLeave(b, o.For, o.Policy) }
	logs := map[key.ID]bool{}
	for _, h := range st.Heads() {
		if o.For != nil && !o.Policy.Visible(*o.For, h.Author) {
			continue
		}
		from := uint64(1)
		if s, ok := since[h.Author]; ok && s.Seq > 0 {
			if id, ok := idAt(st, h.Author, s.Seq); ok && id == s.ID {
				from = s.Seq + 1
			}
		}
		if h.Forked {
			if p, err := st.ForkProof(h.Author); err == nil && leaves(p.Cards()) {
				if err := bw.Msg(&proto.Msg{T: proto.TFork, Author: h.Author.Bytes(), Proof: p.Encode()}); err != nil {
					return stats, err
				}
			}
		}
		last := uncontested(st, h.Author)
		if from > last {
			continue
		}
		author := h.Author
		b := &batcher{send: func(first uint64, cards [][]byte) error {
			if err := bw.Msg(&proto.Msg{T: proto.TCards, Author: author.Bytes(), From: first, Cards: cards}); err != nil {
				return err
			}
			for _, c := range cards {
				if proto.IsStub(c) {
					stats.StubsOut++
				} else {
					stats.Sent++
				}
			}
			logs[author] = true
			if o.Progress != nil {
				o.Progress(stats)
			}
			return nil
		}}
		err := chain(st, author, from, last,
			func(c *card.Card) bool { return MayLeave(c, o.For, o.Policy) },
			stats.withhold, b.add)
		if err == nil {
			err = b.finish()
		}
		if err != nil {
			return stats, err
		}
	}
	stats.Logs = len(logs)
	return stats, bw.Close()
}

// ImportOptions configure a bundle import.
type ImportOptions struct {
	Secret   *key.Secret // the recipient, for encrypted bundles (may be nil otherwise)
	Policy   Policy      // what to take from the exporter; nil takes every log
	Progress func(Stats)
	// SpoolDir holds the private copy of the bundle between the two passes
	// (os.TempDir() when empty).
	SpoolDir string
}

// KeptRejections is how many refusals Import returns in full; the rest are
// only counted (Stats.Rejected), so a bundle of a million bad records
// costs neither memory nor a flood of messages.
const KeptRejections = 64

// Import reads a bundle from r as a stream, checks it whole (format,
// exporter signature, decryption) and only then stores its cards, each
// verified by the store. It reads r once, verifying as it goes and copying
// the bytes to a private spool file; only when the signature checks does a
// second pass over the spool store the cards. Memory is bounded by one
// bundle record (proto.MaxMessage) and one batch of cards, whatever the
// size of the bundle; junk is refused at its first bytes. A truncated or
// altered bundle imports nothing and returns the reason. Importing the same
// bundle twice is harmless: the second time every card is a duplicate and
// nothing changes. The first KeptRejections refused cards are returned
// with their reasons; Stats.Rejected counts them all.
func Import(r io.Reader, st Store, o ImportOptions) (Stats, []Rejection, error) {
	var stats Stats
	spool, err := os.CreateTemp(o.SpoolDir, ".sublog-import-*")
	if err != nil {
		return stats, nil, err
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	w := bufio.NewWriterSize(spool, 64<<10)
	checked, err := bundle.Scan(io.TeeReader(r, w), o.Secret, nil)
	if err != nil {
		return stats, nil, err
	}
	exporter := checked.Exporter
	stats.Peer = exporter
	if err := w.Flush(); err != nil {
		return stats, nil, err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return stats, nil, err
	}
	var (
		rejected []Rejection
		logs     = map[key.ID]bool{}
	)
	refuse := func(rs ...Rejection) {
		stats.Rejected += len(rs)
		if room := KeptRejections - len(rejected); room > 0 {
			rejected = append(rejected, rs[:min(room, len(rs))]...)
		}
	}
	_, err = bundle.Scan(bufio.NewReaderSize(spool, 64<<10), o.Secret, func(m *proto.Msg) error {
		author, err := key.IDFromBytes(m.Author)
		if err != nil {
			return fmt.Errorf("%w: %v", bundle.ErrMalformed, err)
		}
		if o.Policy != nil && !o.Policy.Accept(exporter, author) {
			why := fmt.Errorf("%w: %s's log from exporter %s", ErrNotTaken, author, exporter)
			if m.T == proto.TFork {
				refuse(reject(author, 0, why))
			}
			for i := range m.Cards {
				refuse(reject(author, m.From+uint64(i), why))
			}
			return nil
		}
		switch m.T {
		case proto.TCards:
			n, f, w, rej := importRun(st, author, m.From, m.Cards)
			stats.Received += n
			stats.StubsIn += w
			stats.Forks += f
			if f > 0 {
				stats.fork(author)
			}
			refuse(rej...)
			if n > 0 {
				logs[author] = true
			}
		case proto.TFork:
			if p, err := st.ImportForkProof(m.Proof); err != nil {
				refuse(reject(author, 0, err))
			} else if p.Author() == author {
				stats.Forks++
				stats.fork(author)
			}
		}
		if o.Progress != nil {
			stats.Logs = len(logs)
			o.Progress(stats)
		}
		return nil
	})
	stats.Logs = len(logs)
	if err != nil {
		return stats, rejected, fmt.Errorf("second pass over the checked bundle: %w", err)
	}
	return stats, rejected, nil
}
