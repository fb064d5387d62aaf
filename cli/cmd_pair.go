package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/discovery"
)

func init() { register(newPairCmd) }

func newPairCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "pair [TOKEN]",
		Short: "On a device: accept the pairing token its owner's 'sublog delegate' printed (no argument: list owners)",
		Long: `Check the token (signed by the owner, for one of this home's identities, not expired,
carrying the owner's delegation card for it) and keep the owner's delegation in the home
(owners.json). From then on the owner and its other devices are this home's own user (the
trust rule): their cards are taken in every sync, this device's logs are shared with them,
and intent this device appends is written for the owner. Done once per device; sync with
the owner afterwards to fetch its cards.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			if len(args) == 0 {
				ps, err := h.Pairings()
				if err != nil {
					return rejected(err, "")
				}
				if a.JSON() {
					type entry struct {
						Owner      key.ID `json:"owner"`
						Device     key.ID `json:"device"`
						Delegation string `json:"delegation"`
						Paired     string `json:"paired"`
					}
					out := []entry{}
					cards, err := h.PairedDelegations()
					if err != nil {
						return rejected(err, "")
					}
					for i, p := range ps {
						out = append(out, entry{p.Owner, p.Device, cards[i].ID().String(), time.Unix(p.Paired, 0).UTC().Format(time.RFC3339)})
					}
					return a.PrintJSON(out)
				}
				for _, p := range ps {
					fmt.Fprintf(a.Out(), "%s is a device of %s\n", p.Device, p.Owner)
				}
				return nil
			}
			named, err := h.Identities()
			if err != nil {
				return rejected(err, "")
			}
			mine := func(id key.ID) bool {
				for _, n := range named {
					if n.ID == id {
						return true
					}
				}
				return false
			}
			tok, err := discovery.OpenPairToken(args[0], a.Now(), mine)
			if err != nil {
				hint := "ask the owner for a fresh token: 'sublog delegate DEVICE' on its home prints one"
				if errors.Is(err, discovery.ErrPairDevice) {
					hint = "run 'sublog pair' in the home of the device the token names ('sublog id --list' shows this home's identities)"
				}
				return rejected(fmt.Errorf("pairing token refused: %w", err), hint)
			}
			ps, err := h.Pairings()
			if err != nil {
				return rejected(err, "")
			}
			again := false
			for _, p := range ps {
				again = again || (p.Owner == tok.Owner && p.Device == tok.Device && string(p.Delegation) == string(tok.Delegation.Bytes()))
			}
			if !again {
				if err := h.AddPairing(home.Pairing{Owner: tok.Owner, Device: tok.Device, Delegation: tok.Delegation.Bytes(), Paired: a.Now().Unix()}); err != nil {
					return rejected(err, "")
				}
			}
			if a.JSON() {
				return a.PrintJSON(map[string]any{"owner": tok.Owner, "device": tok.Device, "delegation": tok.Delegation.ID(), "already": again})
			}
			w := a.Out()
			if again {
				fmt.Fprintf(w, "already paired: %s is a device of %s\n", tok.Device, tok.Owner)
				return nil
			}
			fmt.Fprintf(w, "paired: %s is a device of %s (delegation %s)\n", tok.Device, tok.Owner, tok.Delegation.ID())
			fmt.Fprintf(w, "%s and its devices are this home's own user now: their cards are taken in every sync and intent appended here is written for %s\n", tok.Owner.Short(), tok.Owner.Short())
			fmt.Fprintln(w, "next: sync with the owner once to fetch its cards ('sublog sync ADDR', or 'sublog sync --command \"ssh HOST sublog sync --stdio\"')")
			return nil
		},
	}
}
