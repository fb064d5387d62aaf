package cli

// Blobs: content-addressed bytes kept in the home (bundle files, moved
// peers' encrypted state), fetched by hash from peers over a sync
// connection, collected when no stored card names them.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/blob"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	lsync "github.com/sublog/sublog/sync"
	"github.com/sublog/sublog/sync/transport"
)

func init() { register(newBlobCmd) }

// openBlobs opens the home's blob store (HOME/blobs); through an instance,
// the instance's own.
func openBlobs(a *App) (*blob.Store, error) {
	if a.node != nil && a.node.Blobs() != nil {
		return a.node.Blobs(), nil
	}
	h, err := a.Home()
	if err != nil {
		return nil, rejected(err, "create a home with: sublog init")
	}
	dir, err := h.Path("blobs")
	if err != nil {
		return nil, rejected(err, "")
	}
	s, err := blob.Open(dir)
	if err != nil {
		return nil, rejected(err, "")
	}
	return s, nil
}

// blobSize is the size a bundle card in the store gives blob h, or 0.
func blobSize(st *sublog.Store, h blob.Hash) int64 {
	var size int64
	for _, head := range st.Heads() {
		st.Scan(head.Author, 1, func(c *card.Card) error {
			if c.Kind() != card.KindBundle {
				return nil
			}
			var b struct {
				Hash []byte `cbor:"hash"`
				Size uint64 `cbor:"size"`
			}
			if c.DecodeBody(&b) == nil && string(b.Hash) == string(h[:]) && b.Size > 0 && b.Size <= blob.MaxSize {
				size = int64(b.Size)
			}
			return nil
		})
		if size > 0 {
			break
		}
	}
	return size
}

// blobAddrs are where to ask for a blob: the --from addresses, then the
// last proven address of each trusted peer in the discovery cache.
func blobAddrs(a *App, env *syncEnv, from []string) []string {
	addrs := append([]string{}, from...)
	peers, err := env.home.Peers()
	if err != nil {
		return addrs
	}
	cache, err := discoveryCache(a)
	if err != nil || cache == nil {
		return addrs
	}
	for _, id := range peers.Trust {
		if e, ok := cache.Lookup(id); ok && e.Addr != "" && (e.Expires.IsZero() || e.Expires.After(a.Now())) {
			addrs = append(addrs, e.Addr)
		}
	}
	return addrs
}

type fetchJSON struct {
	Hash string `json:"hash"`
	blob.Stats
	From string `json:"from,omitempty"`
}

// fetchBlob makes blob h present in the home's blob store, asking the peers
// at from (and trusted peers at their cached addresses) in turn. Each
// attempt resumes what the previous ones left.
func fetchBlob(a *App, h blob.Hash, from []string) (blob.Stats, error) {
	blobs, err := openBlobs(a)
	if err != nil {
		return blob.Stats{}, err
	}
	if blobs.Has(h) {
		return blob.Stats{Hash: h, AlreadyStored: true}, nil
	}
	env, err := a.syncEnv()
	if err != nil {
		return blob.Stats{}, err
	}
	addrs := blobAddrs(a, env, from)
	// Through an instance, the peers it is connected to are asked first,
	// over their live links: a blob reaches this home by its hash alone.
	var links []blob.Opener
	if a.node != nil && len(from) == 0 {
		links = a.node.BlobSources()
	}
	if len(addrs) == 0 && len(links) == 0 {
		return blob.Stats{}, rejected(fmt.Errorf("%w: %s is not held here and no peer to ask", blob.ErrNotFound, h),
			"name a peer that has it: --from HOST:PORT")
	}
	ctx := context.Background()
	opt := lsync.Options{Secret: env.sk, Rand: a.Rand(), Timeout: 30 * time.Second}
	fo := blob.FetchOptions{Size: blobSize(env.st, h)}
	total := blob.Stats{Hash: h}
	var errs []error
	if len(links) > 0 {
		st, err := blob.FetchAny(ctx, blobs, h, fo, links)
		total = st
		if err == nil {
			fmt.Fprintf(a.Err(), "sublog: fetched %s from a connected peer: %d of %d chunks (%d bytes, %d already here, %d refused and fetched again)\n",
				h, st.Fetched, st.Chunks, st.BytesFetched, st.Reused, st.Refused)
			return total, nil
		}
		errs = append(errs, err)
	}
	for _, addr := range addrs {
		c, err := lsync.DialStreams(ctx, transport.TCP{}, addr, opt)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		st, err := blob.FetchAny(ctx, blobs, h, fo, []blob.Opener{lsync.BlobSource{C: c, Addr: addr}})
		c.Close()
		total.Size, total.Chunks = max(total.Size, st.Size), max(total.Chunks, st.Chunks)
		if total.Reused == 0 {
			total.Reused, total.Damaged = st.Reused, st.Damaged
		}
		total.Fetched += st.Fetched
		total.Refused += st.Refused
		total.BytesFetched += st.BytesFetched
		if err == nil {
			fmt.Fprintf(a.Err(), "sublog: fetched %s from %s: %d of %d chunks (%d bytes, %d already here, %d refused and fetched again)\n",
				h, addr, st.Fetched, st.Chunks, st.BytesFetched, st.Reused, st.Refused)
			return total, nil
		}
		errs = append(errs, err)
	}
	return total, rejected(fmt.Errorf("fetching %s: %w", h, errors.Join(errs...)),
		"the chunks verified so far are kept: run the command again to resume")
}

func newBlobCmd(a *App) *cobra.Command {
	c := &cobra.Command{Use: "blob", Short: "Content-addressed blobs in this home: list, add, fetch from peers, collect"}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the blobs (and partly fetched blobs) in this home",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			blobs, err := openBlobs(a)
			if err != nil {
				return err
			}
			list, err := blobs.List()
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				type row struct {
					Hash    string `json:"hash"`
					Size    int64  `json:"size"`
					Partial bool   `json:"partial"`
				}
				out := []row{}
				for _, in := range list {
					out = append(out, row{in.Hash.String(), in.Size, in.Partial})
				}
				return a.PrintJSON(out)
			}
			for _, in := range list {
				state := "complete"
				if in.Partial {
					state = "partial"
				}
				fmt.Fprintf(a.Out(), "%s %d %s\n", in.Hash, in.Size, state)
			}
			return nil
		},
	}
	put := &cobra.Command{
		Use:   "put FILE",
		Short: "Add a file to this home's blobs and print its hash",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			blobs, err := openBlobs(a)
			if err != nil {
				return err
			}
			fi, err := os.Stat(a.Path(args[0]))
			if err != nil {
				return rejected(err, "")
			}
			if fi.Size() > blob.MaxSize {
				return rejected(fmt.Errorf("%w: %d bytes (at most %d)", blob.ErrTooLarge, fi.Size(), blob.MaxSize), "")
			}
			b, err := os.ReadFile(a.Path(args[0]))
			if err != nil {
				return rejected(err, "")
			}
			h, err := blobs.Put(b)
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(struct {
					Hash string `json:"hash"`
					Size int    `json:"size"`
				}{h.String(), len(b)})
			}
			fmt.Fprintln(a.Out(), h)
			return nil
		},
	}
	var from []string
	fetch := &cobra.Command{
		Use:   "fetch HASH [--from HOST:PORT]...",
		Short: "Fetch a blob by hash from peers (resuming a cut transfer); each chunk is checked",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := blob.ParseHash(args[0])
			if err != nil {
				return usage(err)
			}
			st, err := fetchBlob(a, h, from)
			if err != nil {
				return err
			}
			if a.JSON() {
				return a.PrintJSON(fetchJSON{Hash: h.String(), Stats: st})
			}
			fmt.Fprintln(a.Out(), h)
			return nil
		},
	}
	fetch.Flags().StringSliceVar(&from, "from", nil, "a peer's sync address to ask (repeatable)")
	var grace time.Duration
	var dry bool
	gc := &cobra.Command{
		Use:   "gc [--grace 1h] [--dry-run]",
		Short: "Delete blobs no stored card names (bundle, grant, observe, placement, handoff cards, content_hash)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			blobs, err := openBlobs(a)
			if err != nil {
				return err
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			refs, err := lsync.ReferencedBlobs(st)
			if err != nil {
				return rejected(err, "")
			}
			keep := func(h blob.Hash) bool { return refs[h] }
			var gone []blob.Info
			if dry {
				list, err := blobs.List()
				if err != nil {
					return rejected(err, "")
				}
				for _, in := range list {
					if !keep(in.Hash) && a.Now().Sub(in.Modified) >= grace {
						gone = append(gone, in)
					}
				}
			} else if gone, err = blobs.GC(keep, a.Now(), grace); err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				out := []string{}
				for _, in := range gone {
					out = append(out, in.Hash.String())
				}
				return a.PrintJSON(struct {
					Removed []string `json:"removed"`
					DryRun  bool     `json:"dry_run,omitempty"`
				}{out, dry})
			}
			var n int64
			for _, in := range gone {
				n += in.Size
				fmt.Fprintf(a.Out(), "removed %s\n", in.Hash)
			}
			verb := "removed"
			if dry {
				verb = "would remove"
			}
			fmt.Fprintf(a.Err(), "sublog: %s %d blobs (%d bytes)\n", verb, len(gone), n)
			return nil
		},
	}
	gc.Flags().DurationVar(&grace, "grace", time.Hour, "keep blobs stored or touched more recently than this")
	gc.Flags().BoolVar(&dry, "dry-run", false, "list what would be removed, remove nothing")
	c.AddCommand(ls, put, fetch, gc)
	return c
}
