package cli

import (
	"errors"
	"fmt"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/discovery"
)

func init() { register(newFetchProfileCmd) }

// newFetchProfileCmd: a stranger checks a discovered host's public profile.
func newFetchProfileCmd(a *App) *cobra.Command {
	var addr, token string
	c := &cobra.Command{
		Use:   "fetch-profile (IDENTITY CARD-ID --addr HOST:PORT | --token TOKEN [--addr HOST:PORT])",
		Short: "Fetch a host's public profile card by its ID and check it against the host's identity",
		Long: `Ask the node at HOST:PORT (its 'sublog serve --public' address) for the profile card
CARD-ID of IDENTITY, as a token or PKARR packet names it, and check it: the bytes must hash
to CARD-ID, verify in full, be signed by IDENTITY, be a profile and be in clear. With --token,
the identity, the card ID and (unless --addr) the address come from the token. Nothing is
stored and nothing about this node is sent but the card ID. Needs no home.`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var who key.ID
			var id card.ID
			var err error
			switch {
			case token != "" && len(args) == 0:
				tok, err := discovery.DecodeToken(token, a.Now())
				if err != nil {
					return rejected(err, "ask the host for a fresh token ('sublog token --profile')")
				}
				who, id = tok.ID(), tok.Profile()
				if id.IsZero() {
					return rejected(errors.New("the token names no profile card"), "ask for one made with 'sublog token --profile'")
				}
				if addr == "" {
					if len(tok.Addrs()) == 0 {
						return usage(errors.New("the token names no address: give --addr"))
					}
					addr = tok.Addrs()[0]
				}
			case token == "" && len(args) == 2:
				if who, err = a.identityArg(args[0], hostID); err != nil {
					return err
				}
				if id, err = card.ParseID(args[1]); err != nil {
					// Not stored here: only the full form names it.
					return usage(fmt.Errorf("%w (the profile card is fetched by its full ID, as a token names it)", err))
				}
				if addr == "" {
					return usage(errors.New("--addr HOST:PORT is required (or --token)"))
				}
			default:
				return usage(errors.New("give IDENTITY and CARD-ID, or --token"))
			}
			set := caps.Builtin()
			if h, err := a.Home(); err == nil {
				if hs, err := h.Caps(); err == nil {
					set = hs
				}
			}
			c, err := discovery.FetchProfile(cmd.Context(), addr, who, id, set)
			if err != nil {
				hint := ""
				if errors.Is(err, discovery.ErrNotFound) {
					hint = "the host does not publish that card: it may have a newer profile (ask for a fresh token)"
				}
				return rejected(err, hint)
			}
			v := viewOf(c, true)
			if a.JSON() {
				return a.PrintJSON(struct {
					Verified bool `json:"verified"`
					cardView
				}{true, v})
			}
			fmt.Fprintf(a.Out(), "profile %s of %s, verified (signed by it, %s)\n", c.ID(), c.Author(), c.Time().Format("2006-01-02T15:04:05Z07:00"))
			if v.Body != nil {
				out, err := yaml.MarshalWithOptions(v.Body, yaml.Indent(2))
				if err == nil {
					fmt.Fprint(a.Out(), indent(string(out), "  "))
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&addr, "addr", "", "the host's public address (its 'sublog serve --public')")
	c.Flags().StringVar(&token, "token", "", "a token from the host (identity, profile card ID, addresses)")
	return c
}
