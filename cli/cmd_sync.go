package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/blob"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/units"
	lsync "github.com/sublog/sublog/sync"
	"github.com/sublog/sublog/sync/bundle"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/discovery"
	"github.com/sublog/sublog/sync/transport"
)

func init() {
	register(newServeCmd)
	register(newSyncCmd)
	register(newExportCmd)
	register(newImportCmd)
	register(newHeadsCmd)
	register(newFollowCmd)
	register(newUnfollowCmd)
	register(newTrustCmd)
}

// syncEnv is what every sync command needs: the store, the identity, and
// the policy built from the home's lists.
type syncEnv struct {
	home *home.Home
	st   *sublog.Store
	sk   *key.Secret
	pol  *lsync.Lists
}

func (a *App) syncEnv() (*syncEnv, error) {
	h, err := a.Home()
	if err != nil {
		return nil, rejected(err, "")
	}
	sk, err := a.Secret()
	if err != nil {
		return nil, rejected(err, "")
	}
	st, err := a.Store()
	if err != nil {
		return nil, rejected(err, "")
	}
	named, err := h.Identities()
	if err != nil {
		return nil, rejected(err, "")
	}
	var self []key.ID
	for _, n := range named {
		self = append(self, n.ID)
	}
	peers, err := h.Peers()
	if err != nil {
		return nil, rejected(err, "fix or remove "+filepath.Join(h.Dir, home.PeersFile))
	}
	paired, err := h.PairedDelegations()
	if err != nil {
		return nil, rejected(err, "fix or remove "+filepath.Join(h.Dir, home.OwnersFile)+" (then pair again)")
	}
	pol := lsync.TrustFor(st, self, peers.Trust, peers.Follow, a.Now().Unix(), paired...)
	return &syncEnv{home: h, st: st, sk: sk, pol: pol}, nil
}

// progress draws a bar of cards moved, on a terminal only.
func (a *App) syncProgress(desc string) (func(lsync.Stats), func()) {
	update, finish := a.Progress(-1, desc)
	return func(s lsync.Stats) { update(int64(s.Received + s.Sent)) }, finish
}

// tellRefusals says on stderr which received cards were refused and why,
// and which authors were found forked, whatever the output format: a fork
// is news a user must not miss in a one-line summary.
func (a *App) tellRefusals(s lsync.Stats) {
	for _, r := range s.Refused {
		fmt.Fprintf(a.Err(), "sublog: rejected %s\n", r)
	}
	a.tellWithheld(s, false)
	if more := s.Rejected - len(s.Refused); len(s.Refused) > 0 && more > 0 {
		fmt.Fprintf(a.Err(), "sublog: ... and %d more rejected\n", more)
	}
	a.tellDropped(s)
	a.tellForks(s)
}

// tellDropped says on stderr how many received cards were not taken
// (the trust rule), whose, and why: a sync never drops cards silently.
func (a *App) tellDropped(s lsync.Stats) {
	if s.Dropped == 0 {
		return
	}
	who := "the peer"
	if !s.Peer.IsZero() {
		who = s.Peer.String()
	}
	items := make([]string, 0, len(s.DroppedLogs))
	for _, d := range s.DroppedLogs {
		items = append(items, fmt.Sprintf("%s: %d cards, %s", d.Author, d.Cards, d.Reason))
	}
	summarizeN(a.Err(), fmt.Sprintf("sublog: dropped %d cards of %d logs from %s unread (the trust rule does not take them from it):", s.Dropped, len(s.DroppedLogs), who), items, len(items))
	fmt.Fprintf(a.Err(), "sublog: hint: if %s is this device's owner, pair once ('sublog delegate %s' on its home prints the token for 'sublog pair TOKEN' here); 'sublog trust %s' takes what it vouches for; 'sublog follow AUTHOR' takes one log from anyone\n",
		who, a.selfID(), who)
}

// selfID is this command's identity as text ("ID" when there is none).
func (a *App) selfID() string {
	if sk, err := a.Secret(); err == nil {
		return sk.ID().String()
	}
	return "ID"
}

// tellWithheld says on stderr which cards went as stubs because they may
// not leave, and how many came as stubs, so a peer is always told what it
// does not receive.
func (a *App) tellWithheld(s lsync.Stats, unaddressed bool) {
	for _, w := range s.Withheld {
		fmt.Fprintf(a.Err(), "sublog: withheld %s@%d: that card may not leave (%s); it went as a stub (its ID only) and the later cards of its log went on\n", w.Author, w.Seq, w.Reason)
	}
	if relayed := s.StubsOut - len(s.Withheld); relayed > 0 {
		fmt.Fprintf(a.Err(), "sublog: withheld %d cards this home holds only as stubs: passed on as stubs\n", relayed)
	}
	if unaddressed && len(s.Withheld) > 0 {
		fmt.Fprintln(a.Err(), "sublog: hint: an unaddressed bundle carries in full only what may go to anyone; 'sublog export --for ID' carries what that identity may receive")
	}
	if s.StubsIn > 0 {
		fmt.Fprintf(a.Err(), "sublog: withheld %d: the sender may not pass those cards on; they came as stubs (their IDs only, proven by the next card's prev) and the later cards came in full\n", s.StubsIn)
	}
}

func (a *App) tellForks(s lsync.Stats) {
	for _, id := range s.Forked {
		fmt.Fprintf(a.Err(), "sublog: fork: %s signed two different cards at one position; the proof is kept and its log is not extended past it ('sublog log --heads' shows it)\n", id)
	}
}

func (a *App) report(w io.Writer, s lsync.Stats) error {
	if a.JSON() {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	line := s.String()
	if s.Dropped > 0 {
		line += fmt.Sprintf(", dropped %d (not taken from this peer, see above)", s.Dropped)
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

func newServeCmd(a *App) *cobra.Command {
	var listen, public, blobRate string
	var open bool
	var lim lsync.Limits
	var idle time.Duration
	q := lsync.DefaultQuota()
	var qBytes, wBytes string
	c := &cobra.Command{
		Use:   "serve --listen ADDR [--public ADDR]",
		Short: "Accept sync sessions on a TCP address until interrupted",
		Long: `Accept sync sessions on ADDR (host:port). Peers prove their identity first;
unless --open, a peer that is not one of this home's identities or devices,
trusted or followed is refused before this side reveals anything.

Every peer is bounded (ARCHITECTURE.md, Sync, lists each bound): connections
in all (by default derived from the file descriptor limit) and per source
address, connections still in the handshake, the handshake's duration, idle
time and lifetime of a session, and what one peer may push (new logs, cards,
card bytes) per session and per window. A peer over a quota, or one that
sent a card with a bad signature, is told why before the session ends; the
latter is then refused for a while (1 s, doubling).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := a.syncEnv()
			if err != nil {
				return err
			}
			var perr error
			parseBytes := func(name, v string, into *int64) {
				n, err := units.ParseBytes(v)
				if err != nil && perr == nil {
					perr = usage(fmt.Errorf("--%s: %w", name, err))
				}
				*into = int64(n)
			}
			parseBytes("quota-bytes", qBytes, &q.SessionBytes)
			parseBytes("window-bytes", wBytes, &q.WindowBytes)
			if perr != nil {
				return perr
			}
			l, err := transport.TCP{}.Listen(listen)
			if err != nil {
				return rejected(err, "pick a free port, e.g. --listen 127.0.0.1:7411")
			}
			defer l.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if public != "" {
				pl, err := net.Listen("tcp", public)
				if err != nil {
					return rejected(err, "pick a free port for --public")
				}
				defer pl.Close()
				go discovery.ServePublic(pl, env.sk, publishedProfiles(env.st, env.sk.ID()))
				fmt.Fprintf(a.Err(), "sublog: answering identity proofs and public profile requests for %s on %s\n", env.sk.ID(), pl.Addr())
			}
			opt := a.sessionOptions(env, open)
			blobs, err := openBlobs(a)
			if err != nil {
				return err
			}
			var rate uint64
			if blobRate != "" {
				if rate, err = units.ParseBytes(blobRate); err != nil || rate == 0 {
					return usage(fmt.Errorf("--blob-rate: %q is not a positive size per second (e.g. 10Mi)", blobRate))
				}
			}
			blobHandler := lsync.BlobHandler(env.st, env.pol, blobs,
				func(p key.ID, ss blob.ServeStats, err error) {
					switch {
					case !ss.Entitled:
						fmt.Fprintf(a.Err(), "sublog: %s: blob %s refused (not held, or no card naming it is visible to that peer)\n", p, ss.Hash)
					case err != nil:
						fmt.Fprintf(a.Err(), "sublog: %s: blob %s: %d chunks sent, then: %v\n", p, ss.Hash, ss.Chunks, err)
					default:
						fmt.Fprintf(a.Err(), "sublog: %s: blob %s: %d chunks sent (%d bytes)\n", p, ss.Hash, ss.Chunks, ss.BytesSent)
					}
				})
			opt.Handlers = map[byte]lsync.PeerStream{lsync.StreamBlob: func(ctx context.Context, p key.ID, s io.ReadWriteCloser) {
				if rate > 0 {
					s = &rateLimited{ReadWriteCloser: s, rate: rate, start: time.Now()}
				}
				blobHandler(ctx, p, s)
			}}
			opt.Limits = lim
			opt.Timeout = idle
			opt.Quota = &q
			eff := lim
			if eff.MaxConns == 0 {
				eff.MaxConns = lsync.DefaultLimits().MaxConns
			}
			fmt.Fprintf(a.Err(), "sublog: serving on %s\n", l.Addr())
			fmt.Fprintf(a.Err(), "sublog: at most %d connections (%d per source), quota per peer and session %d new logs, %d cards\n",
				eff.MaxConns, orDefault(lim.MaxConnsPerSource, lsync.DefaultMaxConnsPerSource), q.SessionLogs, q.SessionCards)
			ev := lsync.ServeEvents{AcceptError: func(err error, wait time.Duration) {
				fmt.Fprintf(a.Err(), "sublog: accept: %v (waiting %v, then accepting again)\n", err, wait)
			}}
			return lsync.ServeWith(ctx, l, env.st, opt, func(s lsync.Stats, err error) {
				who := "peer"
				if !s.Peer.IsZero() {
					who = s.Peer.String()
				}
				a.tellRefusals(s)
				if err != nil {
					fmt.Fprintf(a.Err(), "sublog: session with %s failed: %v (%s; checked %d, dropped %d)\n", who, err, s, s.Checked, s.Dropped)
					return
				}
				fmt.Fprintf(a.Err(), "sublog: %s: %s; checked %d, dropped %d\n", who, s, s.Checked, s.Dropped)
			}, ev)
		},
	}
	f := c.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:7411", "address to listen on (host:port)")
	f.BoolVar(&open, "open", false, "also serve peers that are on no list (they see only their own logs)")
	f.IntVar(&lim.MaxConns, "max-conns", 0, "connections in all (0: the file descriptor limit less a reserve of 48, at most 64)")
	f.IntVar(&lim.MaxConnsPerSource, "max-conns-per-source", lsync.DefaultMaxConnsPerSource, "connections from one source address")
	f.IntVar(&lim.MaxHalfOpen, "max-half-open", lsync.DefaultMaxHalfOpen, "connections still in the handshake, in all")
	f.IntVar(&lim.MaxHalfOpenPerSource, "max-half-open-per-source", lsync.DefaultMaxHalfOpenPerSource, "connections still in the handshake from one source")
	f.DurationVar(&lim.HandshakeTimeout, "handshake-timeout", lsync.DefaultHandshakeTimeout, "drop a peer that has not finished the handshake in this time")
	f.DurationVar(&idle, "idle-timeout", lsync.DefaultTimeout, "drop a session that makes no progress for this long")
	f.DurationVar(&lim.MaxLifetime, "max-lifetime", lsync.DefaultMaxLifetime, "end a session this old")
	f.DurationVar(&lim.BackoffMin, "backoff-min", lsync.DefaultBackoffMin, "refuse a peer that sent a forged card for this long, doubling with each one")
	f.DurationVar(&lim.BackoffMax, "backoff-max", lsync.DefaultBackoffMax, "longest such refusal")
	f.IntVar(&q.SessionLogs, "quota-logs", q.SessionLogs, "new logs one peer may push in a session (0: no limit)")
	f.IntVar(&q.SessionCards, "quota-cards", q.SessionCards, "cards one peer may push in a session (0: no limit)")
	f.StringVar(&qBytes, "quota-bytes", "64Mi", "card bytes one peer may push in a session (0: no limit)")
	f.DurationVar(&q.Window, "quota-window", q.Window, "window of the per-peer quotas below (0: none)")
	f.IntVar(&q.WindowLogs, "window-logs", q.WindowLogs, "new logs one peer may push per window")
	f.IntVar(&q.WindowCards, "window-cards", q.WindowCards, "cards one peer may push per window")
	f.StringVar(&wBytes, "window-bytes", "256Mi", "card bytes one peer may push per window")
	f.StringVar(&public, "public", "", "also answer identity proofs and requests for this identity's public profile cards, from anyone, on HOST:PORT ('sublog fetch-profile')")
	f.StringVar(&blobRate, "blob-rate", "", "cap each blob transfer at this many bytes per second (10Mi); default no cap")
	return c
}

// publishedProfiles is what 'serve --public' hands a stranger by card ID:
// only the serving identity's own profile cards, and only unsealed ones
// (the cards a token or PKARR packet names); nothing else is ever served.
func publishedProfiles(st *sublog.Store, self key.ID) discovery.Profiles {
	return func(id card.ID) ([]byte, bool) {
		c, err := st.GetByID(id)
		if err != nil || c.Author() != self || c.Kind() != card.KindProfile || c.PolicyRef() != nil {
			return nil, false
		}
		return bytes.Clone(c.Bytes()), true
	}
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// rateLimited paces a stream's writes to rate bytes per second on average.
type rateLimited struct {
	io.ReadWriteCloser
	rate    uint64
	start   time.Time
	written uint64
}

func (r *rateLimited) Write(p []byte) (int, error) {
	n, err := r.ReadWriteCloser.Write(p)
	r.written += uint64(n)
	due := r.start.Add(time.Duration(float64(r.written) / float64(r.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
	return n, err
}

func (r *rateLimited) SetDeadline(t time.Time) error {
	if d, ok := r.ReadWriteCloser.(interface{ SetDeadline(time.Time) error }); ok {
		return d.SetDeadline(t)
	}
	return nil
}

func (a *App) sessionOptions(env *syncEnv, open bool) lsync.Options {
	opt := lsync.Options{Secret: env.sk, Rand: a.Rand(), Policy: env.pol}
	if !open {
		opt.Accept = func(p key.ID) error {
			if !env.pol.Known(p) {
				return errors.New("not one of this home's identities, devices, trusted or followed peers")
			}
			return nil
		}
	}
	return opt
}

func newSyncCmd(a *App) *cobra.Command {
	var stdio, open bool
	var command string
	var rf reachFlags
	c := &cobra.Command{
		Use:   "sync ADDR | IDENTITY[@HOST:PORT] | --token TOKEN | --stdio | --command CMD",
		Short: "Sync logs with a peer, both ways, in one session",
		Long: `Sync with the peer at ADDR (host:port, as given to 'sublog serve'), or with the
peer IDENTITY wherever it is found: at HOST:PORT when given, then by its
tokens (--token; a token alone names the identity), the home's discovery
cache, PKARR relays (--pkarr) and DNS hints (--dns). Every address is only a
hint: the session goes on only with a peer that proves IDENTITY in the
channel, and an address that answers as anyone else is refused. Or sync over
this process's stdin and stdout (--stdio, the answering side: for example
'sublog sync --command "ssh laptop sublog sync --stdio"'), or over the pipes
of a command this one starts (--command). Prints a one-line summary.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			modes := 0
			for _, b := range []bool{len(args) == 1 || len(rf.tokens) > 0, stdio, command != ""} {
				if b {
					modes++
				}
			}
			if modes != 1 {
				return usage(errors.New("give exactly one of ADDR, IDENTITY (or --token), --stdio or --command"))
			}
			byID := len(rf.tokens) > 0 || (len(args) == 1 && !isAddrArg(args[0]))
			var target reachTarget
			if byID {
				arg := ""
				if len(args) == 1 {
					arg = args[0]
				}
				t, err := a.parseReach(arg, &rf)
				if err != nil {
					return err
				}
				target = t
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The peer command starts first, so that its start (a process,
			// a store to open) overlaps this side's.
			var peer *peerCommand
			if command != "" {
				p, err := a.startCommand(ctx, command)
				if err != nil {
					return rejected(fmt.Errorf("sync: starting %s: %w", command, err), "")
				}
				peer = p
				defer peer.abandon()
			}
			env, err := a.syncEnv()
			if err != nil {
				return err
			}
			opt := a.sessionOptions(env, open || !stdio)
			out := a.Out()
			var stats lsync.Stats
			switch {
			case stdio:
				out = a.Err() // stdout carries the session
				stats, err = lsync.Run(ctx, transport.Stdio(a.In(), a.RawOut()), false, env.st, opt)
			case command != "":
				stats, err = a.syncCommand(ctx, peer, env, opt)
			case byID:
				stats, err = a.syncIdentity(ctx, env, opt, target, &rf)
				if err != nil && stats.Peer.IsZero() {
					return err
				}
			default:
				update, finish := a.syncProgress("syncing")
				opt.Progress = update
				stats, err = lsync.Dial(ctx, transport.TCP{}, args[0], env.st, opt)
				finish()
			}
			a.tellRefusals(stats)
			if err != nil {
				hint := "cards received before the failure are kept; run the sync again to resume"
				if errors.Is(err, lsync.ErrPeerRefused) {
					hint = "the peer ended the session and said why (above); what it stored before stays stored"
				} else if stdio && errors.Is(err, channel.ErrRefused) {
					hint = "the peer is on none of this home's lists: 'sublog trust' or 'sublog follow' it, or answer with --open"
				} else if stats.Peer.IsZero() && !stdio {
					hint = "no identity was proven: check the address, and that the other side knows yours ('sublog trust " + env.sk.ID().String() + "' there)"
				}
				return rejected(fmt.Errorf("sync: %w (%s)", err, stats), hint)
			}
			if err := a.report(out, stats); err != nil {
				return err
			}
			if stats.Rejected > 0 {
				return rejected(fmt.Errorf("%d cards from %s were refused", stats.Rejected, stats.Peer), "")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&stdio, "stdio", false, "answer a session on stdin/stdout")
	c.Flags().StringVar(&command, "command", "", "run CMD (through sh -c) and sync over its stdin/stdout")
	c.Flags().BoolVar(&open, "open", false, "with --stdio: also answer peers that are on no list")
	rf.add(c)
	return c
}

// syncIdentity runs one session with the peer t.id, found by reach: each
// candidate address is dialled and the session runs there only if the
// peer proves t.id in the handshake (pinned). A session that started (the
// identity was proven) is the answer, whatever its outcome; with no proven
// peer the error says what each address and source gave.
func (a *App) syncIdentity(ctx context.Context, env *syncEnv, opt lsync.Options, t reachTarget, rf *reachFlags) (lsync.Stats, error) {
	var stats lsync.Stats
	var serr error
	update, finish := a.syncProgress("syncing")
	defer finish()
	opt.Progress = update
	_, err := a.reach(ctx, t, rf, func(ctx context.Context, addr string, want key.ID) error {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := transport.TCP{}.Dial(dctx, addr)
		cancel()
		if err != nil {
			return err
		}
		o := opt
		o.Accept = pinned(want, addr)
		st, err := lsync.Run(ctx, c, true, env.st, o)
		if st.Peer.IsZero() {
			if err == nil {
				err = errors.New("no identity was proven")
			}
			return err
		}
		stats, serr = st, err
		return nil
	})
	if err != nil && stats.Peer.IsZero() {
		return stats, err
	}
	return stats, serr
}

// peerCommand is the command a sync --command runs, with its pipes.
type peerCommand struct {
	p       *exec.Cmd
	command string
	in      io.WriteCloser
	out     io.ReadCloser
	waited  bool
}

func (a *App) startCommand(ctx context.Context, command string) (*peerCommand, error) {
	p := exec.CommandContext(ctx, "sh", "-c", command)
	p.Stderr = a.Err()
	p.Dir = a.cwd
	if a.node != nil {
		p.Env = a.environ()
	}
	in, err := p.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := p.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	return &peerCommand{p: p, command: command, in: in, out: outp}, nil
}

// abandon ends a command whose session never ran (this side failed first).
func (c *peerCommand) abandon() {
	if !c.waited {
		c.p.Process.Kill()
		c.p.Wait()
	}
}

func (a *App) syncCommand(ctx context.Context, c *peerCommand, env *syncEnv, opt lsync.Options) (lsync.Stats, error) {
	update, finish := a.syncProgress("syncing")
	opt.Progress = update
	stats, err := lsync.Run(ctx, transport.Stdio(c.out, c.in), true, env.st, opt)
	finish()
	werr := c.p.Wait()
	c.waited = true
	if err == nil && werr != nil {
		err = fmt.Errorf("%s: %w", c.command, werr)
	}
	return stats, err
}

func newExportCmd(a *App) *cobra.Command {
	var outPath, forID, since string
	c := &cobra.Command{
		Use:   "export --out FILE|- [--for IDENTITY] [--since HEADS-FILE]",
		Short: "Write a signed bundle of logs to a file (store and forward)",
		Long: `Write the logs to FILE as a bundle signed by this identity. With --for, the
bundle is encrypted to IDENTITY and holds only the logs it may see. With
--since, only cards after the heads in HEADS-FILE (from 'sublog heads' on the
receiving side) are written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if outPath == "" {
				return usage(errors.New("--out FILE is required"))
			}
			env, err := a.syncEnv()
			if err != nil {
				return err
			}
			opt := lsync.ExportOptions{Secret: env.sk, Rand: a.Rand(), Created: a.Now().Unix(), Policy: env.pol}
			if forID != "" {
				id, err := a.identityArg(forID, hostID)
				if err != nil {
					return err
				}
				opt.For = &id
				// Naming a recipient trusts it for this bundle: it gets what
				// a trusted peer would (own and followed logs, and its own).
				pol := *env.pol
				pol.Trusted = map[key.ID]bool{id: true}
				opt.Policy = &pol
			}
			if since != "" {
				b, err := os.ReadFile(a.Path(since))
				if err != nil {
					return rejected(err, "")
				}
				if err := json.Unmarshal(b, &opt.Since); err != nil {
					return rejected(fmt.Errorf("%s: not a heads file: %w", since, err), "make one with 'sublog heads --out FILE' on the receiving side")
				}
			}
			update, finish := a.syncProgress("exporting")
			opt.Progress = update
			var stats lsync.Stats
			say := a.Out()
			if outPath == "-" {
				// The bundle on stdout; what is said goes to stderr.
				say = a.Err()
				stats, err = lsync.Export(a.RawOut(), env.st, opt)
				finish()
			} else {
				tmp, terr := os.CreateTemp(filepath.Dir(a.Path(outPath)), ".sublog-export-*")
				if terr != nil {
					finish()
					return rejected(terr, "")
				}
				defer os.Remove(tmp.Name())
				stats, err = lsync.Export(tmp, env.st, opt)
				finish()
				if err == nil {
					err = tmp.Sync()
				}
				if cerr := tmp.Close(); err == nil {
					err = cerr
				}
				if err == nil {
					err = os.Rename(tmp.Name(), a.Path(outPath))
				}
			}
			if err != nil {
				return rejected(err, "")
			}
			a.tellWithheld(stats, forID == "")
			if stats.Sent == 0 && forID == "" {
				a.tellEmptyExport(env, since, stats)
			}
			if a.JSON() {
				out := map[string]any{"file": outPath, "cards": stats.Sent, "logs": stats.Logs}
				if len(stats.Withheld) > 0 {
					out["withheld"] = stats.Withheld
				}
				if stats.StubsOut > 0 {
					out["stubs"] = stats.StubsOut
				}
				return printJSONTo(say, out)
			}
			if stats.StubsOut > 0 {
				fmt.Fprintf(say, "exported %d cards in %d logs to %s, and %d withheld cards as stubs (IDs only)\n", stats.Sent, stats.Logs, outPath, stats.StubsOut)
				return nil
			}
			fmt.Fprintf(say, "exported %d cards in %d logs to %s\n", stats.Sent, stats.Logs, outPath)
			return nil
		},
	}
	c.Flags().StringVar(&outPath, "out", "", "bundle file to write (- for standard output)")
	c.Flags().StringVar(&forID, "for", "", "encrypt to this identity and export only what it may see")
	c.Flags().StringVar(&since, "since", "", "heads file of the receiver: export only what it lacks")
	return c
}

// tellEmptyExport says why an export without --for holds no card, and what
// to do (withheld logs have been named already).
func (a *App) tellEmptyExport(env *syncEnv, since string, s lsync.Stats) {
	switch {
	case len(s.Withheld) > 0:
		// tellWithheld named each log and the hint.
	case len(env.st.Heads()) == 0:
		fmt.Fprintln(a.Err(), "sublog: the bundle holds no cards: this home's store is empty")
		fmt.Fprintln(a.Err(), "sublog: hint: append cards ('sublog append FILE') or sync with a peer first, then export")
	case since != "":
		fmt.Fprintf(a.Err(), "sublog: the bundle holds no cards: the heads in %s already cover every log this home holds, so the receiver lacks nothing\n", since)
		fmt.Fprintln(a.Err(), "sublog: hint: export without --since to send everything again, or take fresh heads from the receiver ('sublog heads --out FILE' there)")
	default:
		fmt.Fprintln(a.Err(), "sublog: the bundle holds no cards: every log here is forked or starts at a card that cannot be read")
		fmt.Fprintln(a.Err(), "sublog: hint: 'sublog verify' names damaged cards; 'sublog log --heads' shows forked logs")
	}
}

func newImportCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Import a bundle file; every card is verified, a damaged bundle imports nothing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := a.syncEnv()
			if err != nil {
				return err
			}
			// Read as a stream (a bundle may be far larger than memory);
			// "-" is stdin.
			var in io.Reader = a.In()
			name := "<stdin>"
			if args[0] != "-" {
				f, err := os.Open(a.Path(args[0]))
				if err != nil {
					return rejected(err, "")
				}
				defer f.Close()
				in, name = f, args[0]
			}
			br := bufio.NewReaderSize(in, 64<<10)
			// An encrypted bundle names its recipient: use the home's
			// identity it was made for.
			sk := env.sk
			if data, _ := br.Peek(len(bundle.MagicEncrypted) + key.IDSize); len(data) == len(bundle.MagicEncrypted)+key.IDSize {
				if named, err := env.home.Identities(); err == nil {
					for _, n := range named {
						if string(data[len(bundle.MagicEncrypted):]) == string(n.ID.Bytes()) {
							if s, err := env.home.Identity(n.Name); err == nil {
								sk = s
							}
						}
					}
				}
			}
			update, finish := a.syncProgress("importing")
			// The trust rule decides which logs of the bundle are stored,
			// exactly as for a sync with the exporter.
			stats, rej, err := lsync.Import(br, env.st, lsync.ImportOptions{Secret: sk, Policy: env.pol, Progress: update, SpoolDir: env.home.Dir})
			finish()
			if err != nil {
				hint := "the file is damaged or altered: ask the sender for a fresh copy"
				switch {
				case errors.Is(err, bundle.ErrNotForYou):
					hint = "the bundle is encrypted to another identity: import it in the home that holds that identity"
				case errors.Is(err, bundle.ErrFormat):
					hint = "the file is not a sublog bundle"
				}
				return rejected(fmt.Errorf("%s: %w; nothing imported", name, err), hint)
			}
			if stats.Rejected > 0 {
				items := make([]string, 0, len(rej)+1)
				for _, r := range rej {
					items = append(items, "rejected "+r.String())
				}
				summarizeN(a.Err(), fmt.Sprintf("sublog: %d cards in %s were refused:", stats.Rejected, name), items, stats.Rejected)
			}
			a.tellWithheld(stats, false)
			a.tellForks(stats)
			if err := a.report(a.Out(), stats); err != nil {
				return err
			}
			if stats.Rejected > 0 {
				hint := ""
				for _, r := range rej {
					if errors.Is(r.Err, lsync.ErrNotTaken) {
						hint = fmt.Sprintf("%s is not trusted here: 'sublog trust %s' takes what it vouches for, 'sublog follow AUTHOR' takes one log from anyone", stats.Peer, stats.Peer)
						break
					}
				}
				return rejected(fmt.Errorf("%d cards in %s were refused (the first listed above)", stats.Rejected, name), hint)
			}
			return nil
		},
	}
}

func newHeadsCmd(a *App) *cobra.Command {
	var outPath string
	c := &cobra.Command{
		Use:   "heads [--out FILE]",
		Short: "Print the head of every log as JSON (for 'sublog export --since')",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			heads := st.Heads()
			b, err := json.MarshalIndent(heads, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if outPath != "" && outPath != "-" {
				if err := os.WriteFile(a.Path(outPath), b, 0o600); err != nil {
					return rejected(err, "")
				}
				return nil
			}
			_, err = a.Out().Write(b)
			return err
		},
	}
	c.Flags().StringVar(&outPath, "out", "", "write to FILE instead of stdout (- is stdout)")
	return c
}

// listEntry is one identity of the trust or follow list, as --json prints
// it, with its petname here (if any).
type listEntry struct {
	ID   key.ID `json:"id"`
	Name string `json:"name,omitempty"`
}

// editList adds id to (or, with remove, takes it off) the trust or follow
// list, gives it a petname when name is set, and says what it did; with no
// id it lists the list.
func editList(a *App, id string, follow, remove bool, name string) error {
	h, err := a.Home()
	if err != nil {
		return rejected(err, "")
	}
	p, err := h.Peers()
	if err != nil {
		return rejected(err, "")
	}
	pets, err := h.Names()
	if err != nil {
		return rejected(err, "fix or remove "+filepath.Join(h.Dir, home.NamesFile))
	}
	petOf := map[key.ID]string{}
	for n, x := range pets {
		petOf[x] = n
	}
	listName := "trust"
	list := p.Trust
	if follow {
		listName, list = "follow", p.Follow
	}
	if id == "" {
		out := make([]listEntry, 0, len(list))
		for _, x := range list {
			out = append(out, listEntry{ID: x, Name: petOf[x]})
		}
		if a.JSON() {
			return a.PrintJSON(out)
		}
		for _, e := range out {
			if e.Name != "" {
				fmt.Fprintf(a.Out(), "%s  %s\n", e.ID, e.Name)
			} else {
				fmt.Fprintln(a.Out(), e.ID)
			}
		}
		return nil
	}
	x, err := a.identityArg(id, anyID)
	if err != nil {
		return err
	}
	if name != "" {
		if err := h.SetName(name, x); err != nil {
			return rejected(err, "")
		}
		petOf[x] = name
	}
	was := slices.Contains(list, x)
	_, err = h.EditPeers(func(p *home.Peers) {
		l := &p.Trust
		if follow {
			l = &p.Follow
		}
		out := (*l)[:0]
		for _, y := range *l {
			if y != x {
				out = append(out, y)
			}
		}
		if !remove {
			out = append(out, x)
		}
		*l = out
	})
	if err != nil {
		return rejected(err, "")
	}
	who := x.String()
	if n := petOf[x]; n != "" {
		who += " (" + n + ")"
	}
	var msg string
	switch {
	case remove && !was:
		msg = fmt.Sprintf("%s was not on the %s list; nothing changed", who, listName)
	case remove && follow:
		msg = fmt.Sprintf("no longer following %s (its cards already stored stay)", who)
	case remove:
		msg = fmt.Sprintf("no longer trusting %s: it no longer sees this home's logs, and what it offers is no longer accepted (cards already stored stay)", who)
	case was && name != "":
		msg = fmt.Sprintf("already %s %s; named it %s", map[bool]string{true: "following", false: "trusting"}[follow], x, name)
	case was:
		msg = fmt.Sprintf("already %s %s; nothing changed", map[bool]string{true: "following", false: "trusting"}[follow], who)
	case follow:
		msg = fmt.Sprintf("following %s: its log is wanted from any peer (sync to fetch it)", who)
	default:
		msg = fmt.Sprintf("trusting %s: it may see this home's own and followed logs, and the logs it offers are accepted (sync to exchange them)", who)
	}
	if a.JSON() {
		return a.PrintJSON(struct {
			ID      key.ID `json:"id"`
			Name    string `json:"name,omitempty"`
			List    string `json:"list"`
			Listed  bool   `json:"listed"`
			Changed bool   `json:"changed"`
		}{x, petOf[x], listName, !remove, was == remove || name != ""})
	}
	fmt.Fprintln(a.Out(), msg)
	return nil
}

func newFollowCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "follow [IDENTITY]",
		Short: "Want IDENTITY's log from any peer (no argument: list followed identities)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			return editList(a, id, true, false, "")
		},
	}
}

func newUnfollowCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "unfollow IDENTITY",
		Short: "Stop wanting IDENTITY's log (cards already stored stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return editList(a, args[0], true, true, "")
		},
	}
}

func newTrustCmd(a *App) *cobra.Command {
	var remove bool
	var name string
	c := &cobra.Command{
		Use:   "trust [IDENTITY [--name NAME] | IDENTITY --remove]",
		Short: "Share your own and followed logs with IDENTITY and accept what it vouches for (no argument: list)",
		Long: `Trust a peer: it may see this home's own logs and the logs it follows, and the
logs it offers are accepted. Your own identities and the devices they delegate
to are always trusted. --remove takes a peer off the list. --name gives the
peer a petname: every command then takes the name wherever it takes an
identity. Petnames live in this home (names.json), never in a signed card.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			} else if remove || name != "" {
				return usage(errors.New("--remove and --name need an IDENTITY"))
			}
			if remove && name != "" {
				return usage(errors.New("--remove takes no --name"))
			}
			return editList(a, id, false, remove, name)
		},
	}
	c.Flags().BoolVar(&remove, "remove", false, "stop trusting IDENTITY")
	c.Flags().StringVar(&name, "name", "", "also call IDENTITY by this petname here (kept in this home only, never in a card)")
	return c
}
