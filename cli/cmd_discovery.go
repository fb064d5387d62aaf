package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mdp/qrterminal/v3"
	"github.com/spf13/cobra"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/discovery"
)

func init() {
	register(newTokenCmd)
	register(newResolveCmd)
	register(newPublishCmd)
	register(newRelayCmd)
}

// latestProfile is the card ID of the identity's newest `profile` card.
func latestProfile(a *App, id key.ID) (card.ID, error) {
	st, err := a.Store()
	if err != nil {
		return card.ID{}, rejected(err, "")
	}
	var last card.ID
	err = st.Scan(id, 1, func(c *card.Card) error {
		if c.Kind() == "profile" {
			last = c.ID()
		}
		return nil
	})
	if err != nil {
		return card.ID{}, rejected(err, "")
	}
	if last.IsZero() {
		return card.ID{}, rejected(fmt.Errorf("%s has no profile card", id),
			"append one first: a YAML file with 'kind: profile' and cpu, memory, disk, gpu, then 'sublog append FILE'")
	}
	return last, nil
}

func checkAddrFlags(addrs []string) error {
	for _, ad := range addrs {
		if err := discovery.CheckAddr(ad); err != nil {
			return usage(fmt.Errorf("--addr: %w", err))
		}
	}
	return nil
}

func newTokenCmd(a *App) *cobra.Command {
	var (
		expires time.Duration
		addrs   []string
		profile bool
		qr      bool
	)
	c := &cobra.Command{
		Use:   "token [--expires 24h] [--addr HOST:PORT ...] [--profile] [--qr]",
		Short: "Print an out-of-band token: this identity, address hints, expiry, signed",
		Long: `Print a compact, signed token to hand to a peer by any channel (chat, paper, QR).
It carries exactly: the identity, the --addr hints, the issue and expiry times and, with
--profile, the card ID of the identity's newest capability profile. Whoever has it learns
those and nothing else. A peer checks the signature and expiry, then still requires the
host at the address to prove the identity on connect. The same text, published as a TXT
record at _sublog.<your domain>, is a DNS hint.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if expires <= 0 {
				return usage(fmt.Errorf("--expires must be positive, got %s", expires))
			}
			if err := checkAddrFlags(addrs); err != nil {
				return err
			}
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			d := discovery.TokenDraft{Addrs: addrs, Issued: a.Now(), Expires: a.Now().Add(expires)}
			if profile {
				if d.Profile, err = latestProfile(a, sk.ID()); err != nil {
					return err
				}
			}
			tok, err := discovery.NewToken(sk, d)
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				out := struct {
					Token    string    `json:"token"`
					Identity key.ID    `json:"identity"`
					Addrs    []string  `json:"addrs"`
					Issued   time.Time `json:"issued"`
					Expires  time.Time `json:"expires"`
					Profile  string    `json:"profile,omitempty"`
				}{tok.String(), tok.ID(), tok.Addrs(), tok.Issued().UTC(), tok.Expires().UTC(), ""}
				if !tok.Profile().IsZero() {
					out.Profile = tok.Profile().String()
				}
				if out.Addrs == nil {
					out.Addrs = []string{}
				}
				return a.PrintJSON(out)
			}
			if qr {
				qrterminal.GenerateWithConfig(tok.String(), qrterminal.Config{
					Level: qrterminal.L, Writer: a.Out(), HalfBlocks: true,
					BlackChar: qrterminal.BLACK_BLACK, WhiteChar: qrterminal.WHITE_WHITE,
					BlackWhiteChar: qrterminal.BLACK_WHITE, WhiteBlackChar: qrterminal.WHITE_BLACK, QuietZone: 2,
				})
			}
			fmt.Fprintln(a.Out(), tok.String())
			return nil
		},
	}
	c.Flags().DurationVar(&expires, "expires", 24*time.Hour, "how long the token is valid")
	c.Flags().StringArrayVar(&addrs, "addr", nil, "address hint HOST:PORT (repeatable, at most 8)")
	c.Flags().BoolVar(&profile, "profile", false, "include the card ID of this identity's newest profile card")
	c.Flags().BoolVar(&qr, "qr", false, "also draw the token as a QR code on the terminal")
	return c
}

// discoveryCache opens the home's discovery cache; without a home there is
// no cache (and no rollback memory across runs), which the trace says.
func discoveryCache(a *App) (*discovery.Cache, error) {
	h, err := a.Home()
	if errors.Is(err, home.ErrNoHome) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	dir, err := h.Path("discovery")
	if err != nil {
		return nil, err
	}
	return discovery.OpenCache(filepath.Join(dir, "cache.json"))
}

// startDHT joins the Mainline DHT (the public routers unless boot names
// other nodes) as a client-only node.
func startDHT(ctx context.Context, boot []string) (*discovery.DHT, error) {
	d, err := discovery.NewDHT(discovery.DHTConfig{Bootstrap: boot})
	if err != nil {
		return nil, err
	}
	if err := d.Bootstrap(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("DHT bootstrap: %w", err)
	}
	return d, nil
}

// prover is how `sublog resolve` checks a candidate (--prove):
//   - auto (default): the sync channel handshake (as `sublog serve` answers
//     it) under a throwaway identity, then the discovery challenge protocol
//     (as `sublog relay --prove` answers it); neither reveals anything about
//     this node;
//   - channel, challenge: only that one;
//   - channel-self: the channel handshake as this home's identity, for peers
//     that serve only identities they know; it shows this identity
//     (encrypted) to whoever answers at the candidate address.
func prover(a *App, mode string) (discovery.Prover, error) {
	ch := &discovery.ChannelProver{Rand: a.Rand(), Timeout: 5 * time.Second}
	chal := &discovery.ChallengeProver{Rand: a.Rand(), Timeout: 5 * time.Second}
	switch mode {
	case "auto":
		return discovery.AnyOf{ch, chal}, nil
	case "channel":
		return ch, nil
	case "challenge":
		return chal, nil
	case "channel-self":
		sk, err := a.Secret()
		if err != nil {
			return nil, rejected(err, "")
		}
		ch.Identity = sk
		return ch, nil
	}
	return nil, usage(fmt.Errorf("--prove %q: want auto, channel, challenge or channel-self", mode))
}

func newResolveCmd(a *App) *cobra.Command {
	var (
		tokens, relays, names []string
		dnsServer             string
		noCache               bool
		timeout               time.Duration
		useDHT                bool
		dhtBoot               []string
		proveMode             string
	)
	c := &cobra.Command{
		Use:   "resolve IDENTITY [--token T ...] [--pkarr URL ...] [--dht] [--dns NAME ...] [--json]",
		Short: "Find where an identity can be reached: token, cache, PKARR, DNS; proven on connect",
		Long: `Try, in order: the out-of-band tokens, the cached result, each PKARR relay, the
Mainline DHT (only with --dht), each DNS name (TXT records at _sublog.NAME). Every hint is only a candidate: an address is the answer
only once the peer there has proved the identity: by the sync channel handshake ('sublog
serve') or the discovery challenge ('sublog relay --prove'). Nothing about this node is sent
to a candidate address, unless --prove channel-self (for peers that serve only identities
they know) shows it this identity. --json shows every source tried, what it gave and why it was accepted
or rejected. Results are cached in the home with their expiry; the newest PKARR timestamp
seen is kept so a relay cannot roll an identity back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			want, err := a.identityArg(args[0], hostID)
			if err != nil {
				if isMalformed(err) {
					return usage(fmt.Errorf("IDENTITY: %w", err))
				}
				return err
			}
			for _, u := range relays {
				if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
					return usage(fmt.Errorf("--pkarr %q: want an http:// or https:// relay URL", u))
				}
			}
			pr, err := prover(a, proveMode)
			if err != nil {
				return err
			}
			r := &discovery.Resolver{Tokens: tokens, Relays: relays, DNSNames: names,
				DNS: &discovery.DNSClient{Server: dnsServer}, Prover: pr, Now: a.Now}
			if !noCache {
				if r.Cache, err = discoveryCache(a); err != nil {
					return rejected(err, "")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if useDHT || len(dhtBoot) > 0 {
				d, err := startDHT(ctx, dhtBoot)
				if err != nil {
					return rejected(err, "")
				}
				defer d.Close()
				r.DHT = d
			}
			res, rerr := r.Resolve(ctx, want)
			if res == nil {
				return rejected(rerr, "")
			}
			if a.JSON() {
				res.Expires = res.Expires.UTC() // the JSON contract: times in UTC
				for _, at := range res.Attempts {
					if at.Gave != nil {
						at.Gave.Expires, at.Gave.Timestamp = at.Gave.Expires.UTC(), at.Gave.Timestamp.UTC()
					}
				}
				if err := a.PrintJSON(res); err != nil {
					return err
				}
			} else {
				printResolution(a.Out(), res)
			}
			if rerr != nil {
				return rejected(rerr, "give a fresh token with --token, a relay with --pkarr URL, or a domain with --dns NAME")
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&tokens, "token", nil, "an out-of-band token (repeatable)")
	c.Flags().StringArrayVar(&relays, "pkarr", nil, "a PKARR relay URL (repeatable; none is contacted unless named)")
	c.Flags().StringArrayVar(&names, "dns", nil, "a domain whose _sublog TXT records hold hints (repeatable)")
	c.Flags().StringVar(&dnsServer, "dns-server", "", "DNS server HOST:PORT (default: the system's)")
	c.Flags().BoolVar(&noCache, "no-cache", false, "neither read nor write the home's discovery cache")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	c.Flags().BoolVar(&useDHT, "dht", false, "also look on the Mainline DHT (joins it through the public routers)")
	c.Flags().StringVar(&proveMode, "prove", "auto", "how a candidate proves the identity: auto (channel, then challenge), channel, challenge, or channel-self (shows this identity to the candidate)")
	c.Flags().StringArrayVar(&dhtBoot, "dht-bootstrap", nil, "join the DHT through this node HOST:PORT instead (repeatable; implies --dht)")
	return c
}

func printResolution(w io.Writer, res *discovery.Result) {
	fmt.Fprintf(w, "identity  %s\n", res.ID)
	if res.Addr != "" {
		fmt.Fprintf(w, "addr      %s\n", res.Addr)
		fmt.Fprintf(w, "source    %s %s\n", res.Source, res.Where)
		if res.Profile != "" {
			fmt.Fprintf(w, "profile   %s\n", res.Profile)
		}
		fmt.Fprintf(w, "expires   %s\n", res.Expires.UTC().Format(time.RFC3339))
	}
	for _, at := range res.Attempts {
		fmt.Fprintf(w, "tried     %s %s: %s", at.Source, at.Where, at.Outcome)
		if at.Reason != "" {
			fmt.Fprintf(w, " (%s)", at.Reason)
		}
		fmt.Fprintln(w)
		for _, c := range at.Candidates {
			fmt.Fprintf(w, "            %s: %s (%s)\n", c.Addr, c.Outcome, c.Reason)
		}
	}
}

func newPublishCmd(a *App) *cobra.Command {
	var (
		relays  []string
		addrs   []string
		profile bool
		ttl     time.Duration
		dryRun  bool
		useDHT  bool
		dhtBoot []string
	)
	c := &cobra.Command{
		Use:   "publish --pkarr URL ... [--dht] [--addr HOST:PORT ...] [--profile] [--dry-run]",
		Short: "Publish this identity's address hints as a PKARR packet (opt-in; says what becomes public)",
		Long: `Sign a PKARR packet under this identity's key and PUT it to each named relay (and,
with --dht, store it on the Mainline DHT). This is
the only command that makes anything about this node public; it first prints exactly what
will be readable by anyone who knows the identity: the identity, the --addr hints, the
profile card ID (with --profile), the TTL and the packet's timestamp. Relays and DHT nodes
may keep copies; a newer packet replaces it. --dry-run prints that and sends nothing.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			useDHT = useDHT || len(dhtBoot) > 0
			if len(relays) == 0 && !useDHT {
				return usage(errors.New("name at least one relay with --pkarr URL, or --dht (nothing is contacted unless named)"))
			}
			if err := checkAddrFlags(addrs); err != nil {
				return err
			}
			if ttl < time.Second || ttl > 7*24*time.Hour {
				return usage(fmt.Errorf("--ttl must be between 1s and 168h, got %s", ttl))
			}
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			rec := discovery.Record{Addrs: addrs, TTL: uint32(ttl / time.Second)}
			if profile {
				if rec.Profile, err = latestProfile(a, sk.ID()); err != nil {
					return err
				}
			}
			p, err := discovery.NewPacket(sk, a.Now(), rec)
			if err != nil {
				return rejected(err, "")
			}
			type outcome struct {
				Relay  string `json:"relay"`
				OK     bool   `json:"ok"`
				Reason string `json:"reason,omitempty"`
			}
			report := struct {
				Public struct {
					Identity  key.ID    `json:"identity"`
					Addrs     []string  `json:"addrs"`
					Profile   string    `json:"profile,omitempty"`
					TTL       uint32    `json:"ttl"`
					Timestamp time.Time `json:"timestamp"`
					Bytes     int       `json:"packet_bytes"`
				} `json:"public"`
				DryRun bool      `json:"dry_run"`
				Relays []outcome `json:"relays"`
			}{DryRun: dryRun, Relays: []outcome{}}
			pub := &report.Public
			pub.Identity, pub.Addrs, pub.TTL, pub.Timestamp, pub.Bytes = sk.ID(), addrs, rec.TTL, p.Time().UTC(), len(p.Packet())
			if pub.Addrs == nil {
				pub.Addrs = []string{}
			}
			if !rec.Profile.IsZero() {
				pub.Profile = rec.Profile.String()
			}
			if !a.JSON() {
				w := a.Out()
				fmt.Fprintln(w, "This becomes public, readable by anyone who knows the identity (relays and DHT nodes may keep copies):")
				fmt.Fprintf(w, "  identity   %s\n", pub.Identity)
				if len(addrs) == 0 {
					fmt.Fprintln(w, "  addresses  (none)")
				}
				for _, ad := range addrs {
					fmt.Fprintf(w, "  address    %s\n", ad)
				}
				if pub.Profile != "" {
					fmt.Fprintf(w, "  profile    %s\n", pub.Profile)
				}
				fmt.Fprintf(w, "  ttl        %ds\n  timestamp  %s\nNothing else is published.\n", pub.TTL, pub.Timestamp.Format(time.RFC3339Nano))
			}
			failed := 0
			if !dryRun {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				rc := &discovery.RelayClient{}
				targets := append([]string(nil), relays...)
				if useDHT {
					targets = append(targets, "dht")
				}
				var d *discovery.DHT
				for _, u := range targets {
					o := outcome{Relay: u, OK: true}
					var err error
					if u == "dht" {
						if d, err = startDHT(ctx, dhtBoot); err == nil {
							err = d.Put(ctx, p)
							d.Close()
						}
					} else {
						err = rc.Put(ctx, u, p)
					}
					if err != nil {
						o.OK, o.Reason = false, err.Error()
						failed++
					}
					report.Relays = append(report.Relays, o)
					if !a.JSON() {
						if o.OK {
							fmt.Fprintf(a.Out(), "published to %s\n", u)
						} else {
							fmt.Fprintf(a.Out(), "NOT published to %s: %s\n", u, o.Reason)
						}
					}
				}
			} else if !a.JSON() {
				fmt.Fprintln(a.Out(), "dry run: nothing was sent")
			}
			if a.JSON() {
				if err := a.PrintJSON(report); err != nil {
					return err
				}
			}
			if !dryRun && failed == len(report.Relays) {
				return rejected(fmt.Errorf("no relay accepted the packet"), "check the relay URLs; a 409 means a newer packet is already published")
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&relays, "pkarr", nil, "PKARR relay URL to publish to (repeatable)")
	c.Flags().StringArrayVar(&addrs, "addr", nil, "address hint HOST:PORT (repeatable, at most 8)")
	c.Flags().BoolVar(&profile, "profile", false, "publish the card ID of this identity's newest profile card")
	c.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long resolvers may cache the hints")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what would become public; send nothing")
	c.Flags().BoolVar(&useDHT, "dht", false, "also publish on the Mainline DHT (joins it through the public routers)")
	c.Flags().StringArrayVar(&dhtBoot, "dht-bootstrap", nil, "join the DHT through this node HOST:PORT instead (repeatable; implies --dht)")
	return c
}

func newRelayCmd(a *App) *cobra.Command {
	var (
		listen  string
		prove   string
		maxKeys int
		putRate float64
	)
	c := &cobra.Command{
		Use:   "relay --listen ADDR [--prove ADDR]",
		Short: "Run a PKARR relay (the signaling role) so a group needs no third-party service",
		Long: `Serve the PKARR relay API (PUT and GET /<z-base-32 key>) over HTTP. Every packet is
verified before it is kept; an older packet never replaces a newer one; packets are kept
in memory only. With --prove ADDR it also answers identity proofs for this home's identity
on ADDR (the discovery challenge), so peers that resolved it can check it without this node
running 'sublog serve' (whose channel handshake proves it too).
Runs until interrupted.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if listen == "" {
				return usage(errors.New("--listen ADDR is required"))
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return rejected(err, "")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if prove != "" {
				sk, err := a.Secret()
				if err != nil {
					ln.Close()
					return rejected(err, "")
				}
				pl, err := net.Listen("tcp", prove)
				if err != nil {
					ln.Close()
					return rejected(err, "")
				}
				defer pl.Close()
				go discovery.ServeProofs(pl, sk)
				fmt.Fprintf(a.Out(), "answering identity proofs for %s on %s\n", sk.ID(), pl.Addr())
			}
			srv := &http.Server{Handler: discovery.NewRelay(discovery.RelayConfig{MaxKeys: maxKeys, PutRate: putRate}),
				ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
			fmt.Fprintf(a.Out(), "relay listening on http://%s\n", ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return srv.Shutdown(sctx)
			case err := <-errc:
				if errors.Is(err, http.ErrServerClosed) {
					return nil
				}
				return rejected(err, "")
			}
		},
	}
	c.Flags().StringVar(&listen, "listen", "", "address to serve the relay on, HOST:PORT")
	c.Flags().StringVar(&prove, "prove", "", "also answer identity proofs for this identity on HOST:PORT")
	c.Flags().IntVar(&maxKeys, "max-keys", 100000, "packets kept at most (the least recently stored is dropped)")
	c.Flags().Float64Var(&putRate, "put-rate", 5, "PUTs per second one client IP may make (bursts of 20)")
	return c
}
