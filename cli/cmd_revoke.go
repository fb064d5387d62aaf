package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func init() {
	register(newRevokeCmd)
	register(newCRLCmd)
}

// revokedBy looks for later revoke or crl cards of c's author naming c (see
// capsule.Revoked: only the author's own cards count, a crl entry wins).
func revokedBy(st *sublog.Store, c *card.Card) (card.ID, string, error) {
	var later []*card.Card
	err := st.Scan(c.Author(), c.Seq()+1, func(x *card.Card) error {
		if x.Kind() == card.KindRevoke || x.Kind() == card.KindCRL {
			later = append(later, x)
		}
		return nil
	})
	if err != nil {
		return card.ID{}, "", err
	}
	by, kind := capsule.Revoked(c, later)
	return by, kind, nil
}

func newRevokeCmd(a *App) *cobra.Command {
	var reason string
	var shred bool
	c := &cobra.Command{
		Use:   "revoke CARD-ID",
		Short: "Withdraw one of this identity's cards (a revoke card); --shred also deletes its key here",
		Long: "Append a revoke card {card, reason} withdrawing one of this identity's earlier cards\n" +
			"(typically a grant or a delegation). With --shred, also delete the card's key-encryption\n" +
			"key from this home's store so its payload can never be decrypted here again; the card\n" +
			"itself stays and still verifies. Permanent public cards cannot be shredded.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := a.cardArg(args[0])
			if err != nil {
				return err
			}
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			target, err := st.GetByID(id)
			if err != nil {
				return rejected(err, "")
			}
			if target.Author() != sk.ID() {
				return rejected(fmt.Errorf("card %s is by %s, not by %s: only its author can revoke it", id, target.Author(), sk.ID()),
					"use --as NAME to act as the card's author")
			}
			var kekID []byte
			if shred {
				if !capsule.IsSealed(target) {
					return rejected(fmt.Errorf("card %s is not encrypted: there is no key to shred", id), "")
				}
				env, err := capsule.DecodeEnvelope(target.Body())
				if err != nil {
					return rejected(err, "")
				}
				if env.Capsule.KEK == nil {
					return rejected(fmt.Errorf("card %s has no KEK wrap (a permanent public card is irrevocable)", id), "")
				}
				kekID = env.Capsule.KEK.ID
			}
			h, _ := a.Home()
			rc, err := st.Append(sk, card.Draft{Kind: card.KindRevoke, Net: h.Net(), TS: a.Now().Unix(),
				Body: capsule.RevokeBody{Card: id[:], Reason: reason}})
			if err != nil {
				return rejected(err, "")
			}
			shredded := false
			if kekID != nil {
				if err := st.Shred(kekID); err != nil && !errors.Is(err, capsule.ErrNoKEK) {
					return rejected(fmt.Errorf("revoked in %s, but shredding failed: %w", rc.ID(), err), "run 'sublog revoke --shred' again")
				} else if err == nil {
					shredded = true
				}
			}
			if a.JSON() {
				return a.PrintJSON(map[string]any{"author": rc.Author(), "seq": rc.Seq(), "id": rc.ID(), "kind": rc.Kind(), "revoked": id, "shredded": shredded})
			}
			fmt.Fprintf(a.Out(), "%s@%d %s\n", rc.Author(), rc.Seq(), rc.ID())
			if shred && !shredded {
				fmt.Fprintf(a.Err(), "sublog: note: this store held no key for %s; nothing to shred here\n", id)
			}
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why the card is withdrawn")
	c.Flags().BoolVar(&shred, "shred", false, "also delete the card's key here (crypto-shred)")
	return c
}

// crlEntry is one revoked card ID as listed by a crl card.
type crlEntry struct {
	Author  string  `json:"author"`
	Revoked card.ID `json:"revoked"`
	By      card.ID `json:"crl"`
}

func newCRLCmd(a *App) *cobra.Command {
	c := &cobra.Command{
		Use:   "crl",
		Short: "List the card revocation lists in the store (crl add: append one)",
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			var out []crlEntry
			err = st.All(func(x *card.Card) error {
				if x.Kind() != card.KindCRL {
					return nil
				}
				b, err := capsule.DecodeCRL(x)
				if err != nil {
					return nil // a malformed crl is ignored by honest readers
				}
				for _, r := range b.Revoked {
					if rid, err := card.IDFromBytes(r); err == nil {
						out = append(out, crlEntry{Author: x.Author().String(), Revoked: rid, By: x.ID()})
					}
				}
				return nil
			})
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				if out == nil {
					out = []crlEntry{}
				}
				return a.PrintJSON(out)
			}
			w := tabwriter.NewWriter(a.Out(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "AUTHOR\tREVOKED\tBY CRL")
			nameOf := a.namesByID()
			for _, e := range out {
				author := e.Author
				if id, err := key.ParseID(e.Author); err == nil {
					author = labelID(nameOf, id)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", author, showCard(e.Revoked), showCard(e.By))
			}
			return w.Flush()
		},
	}
	c.AddCommand(&cobra.Command{
		Use:   "add CARD-ID...",
		Short: "Append a crl card asking honest readers to stop showing these cards of yours",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > capsule.MaxCRL {
				return usage(fmt.Errorf("at most %d card IDs per crl card", capsule.MaxCRL))
			}
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			var ids []card.ID
			seen := map[card.ID]bool{}
			for _, s := range args {
				id, err := a.cardArg(s)
				if err != nil {
					return err
				}
				x, err := st.GetByID(id)
				if err != nil {
					return rejected(fmt.Errorf("%s: %w", id, err), "a crl lists cards of your own log")
				}
				if x.Author() != sk.ID() {
					return rejected(fmt.Errorf("card %s is by %s, not by %s", id, x.Author(), sk.ID()), "a crl lists cards of your own log")
				}
				if !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
			}
			body, err := capsule.MarshalCRL(ids)
			if err != nil {
				return rejected(err, "")
			}
			h, _ := a.Home()
			rc, err := st.Append(sk, card.Draft{Kind: card.KindCRL, Net: h.Net(), TS: a.Now().Unix(), RawBody: body})
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(map[string]any{"author": rc.Author(), "seq": rc.Seq(), "id": rc.ID(), "kind": rc.Kind(), "revoked": ids})
			}
			fmt.Fprintf(a.Out(), "%s@%d %s\n", rc.Author(), rc.Seq(), rc.ID())
			return nil
		},
	})
	return c
}
