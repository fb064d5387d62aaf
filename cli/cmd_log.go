package cli

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func init() {
	register(newLogCmd)
	register(newShowCmd)
}

// cardView is the JSON shape of a card (stable: scripts rely on it).
type cardView struct {
	ID          card.ID  `json:"id,omitzero"` // zero only for a stub whose ID is unproven
	Author      key.ID   `json:"author"`
	Seq         uint64   `json:"seq"`
	Prev        *card.ID `json:"prev,omitempty"`
	Kind        string   `json:"kind"`
	Time        string   `json:"time,omitempty"` // the author's claimed time (the card's ts), RFC 3339 UTC; "" only for a stub
	Net         string   `json:"net,omitempty"`  // "" only for a stub
	RID         string   `json:"rid,omitempty"`
	Reqs        []string `json:"reqs,omitempty"`
	Prov        []string `json:"prov,omitempty"`
	PolicyRef   string   `json:"policy_ref,omitempty"`
	ContentURI  string   `json:"content_uri,omitempty"`
	ContentHash string   `json:"content_hash,omitempty"`
	DistTag     string   `json:"dist_tag,omitempty"`
	Size        int      `json:"size"`
	Body        any      `json:"body,omitempty"`
	CRL         *card.ID `json:"crl,omitempty"` // with --all: the author's CRL card listing this one
	// Withheld marks a stub: a card the home it came from withheld, of
	// which this home holds only the position and (when proven) the ID.
	// Kind is then "withheld" and no other card field is set.
	Withheld bool `json:"withheld,omitempty"`
	Proven   bool `json:"proven,omitempty"` // with withheld: the next card's signed prev proves the ID
}

// stubView is how a stub is listed: withheld, never as a card.
func stubView(st sublog.Stub) cardView {
	return cardView{ID: st.ID, Author: st.Author, Seq: st.Seq, Kind: "withheld", Withheld: true, Proven: st.Proven}
}

func viewOf(c *card.Card, withBody bool) cardView {
	v := cardView{ID: c.ID(), Author: c.Author(), Seq: c.Seq(), Kind: c.Kind(),
		Time: unixTime(c.TS()), Net: c.Net(), RID: hex.EncodeToString(c.RID()),
		Reqs: c.Reqs(), ContentURI: c.ContentURI(), Size: len(c.Bytes())}
	if p, ok := c.Prev(); ok {
		v.Prev = &p
	}
	if len(c.Prov()) > 0 && c.Prov()[0] != "" && fmt.Sprint(c.Prov()) != fmt.Sprint(c.Reqs()) {
		v.Prov = c.Prov()
	}
	if b := c.PolicyRef(); b != nil {
		v.PolicyRef = "sha256:" + hex.EncodeToString(b)
	}
	if b := c.ContentHash(); b != nil {
		v.ContentHash = "sha256:" + hex.EncodeToString(b)
	}
	if b := c.DistTag(); b != nil {
		v.DistTag = hex.EncodeToString(b)
	}
	if withBody && c.Body() != nil {
		var body any
		if err := canon.Unmarshal(c.Body(), &body); err == nil {
			v.Body = jsonable(body)
		}
	}
	return v
}

// jsonable turns a decoded CBOR body into values JSON and YAML can print,
// by the JSON contract (docs/json.md): maps get string keys; a 32-byte byte
// string under a field that names an identity is its z-base-32 form, under
// one that names a card or a content hash sha256:<hex>; a time field is
// RFC 3339 UTC; any other byte string is 0x<hex>.
func jsonable(v any) any { return jsonField("", v) }

// Body fields by what they hold (the kinds of ARCHITECTURE.md, Bodies).
var (
	identityFields = map[string]bool{"peer": true, "owner": true, "device": true, "to": true, "host": true, "author": true}
	hashFields     = map[string]bool{"bundle": true, "card": true, "grant": true, "hash": true, "state": true,
		"policy": true, "revoked": true, "content_hash": true, "policy_ref": true, "prev": true}
	timeFields = map[string]bool{"until": true, "expires": true}
)

func jsonField(name string, v any) any {
	switch t := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			ks := fmt.Sprint(jsonField("", k))
			m[ks] = jsonField(ks, e)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = jsonField(k, e)
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonField(name, e) // list elements hold what their field holds (crl revoked: [card IDs])
		}
		return out
	case []byte:
		if len(t) == 32 {
			if identityFields[name] {
				if id, err := key.IDFromBytes(t); err == nil {
					return id.String()
				}
			}
			if hashFields[name] {
				return "sha256:" + hex.EncodeToString(t)
			}
		}
		return "0x" + hex.EncodeToString(t)
	case int64, uint64, int:
		if timeFields[name] {
			var n int64
			switch x := t.(type) {
			case int64:
				n = x
			case uint64:
				n = int64(x)
			case int:
				n = int64(x)
			}
			return unixTime(n)
		}
	}
	return v
}

func newLogCmd(a *App) *cobra.Command {
	var heads, all bool
	c := &cobra.Command{
		Use:   "log [IDENTITY] [--all] | log --heads",
		Short: "List the cards of a log (default: your own), or the heads of all logs",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			if heads {
				hs := st.Heads()
				if a.JSON() {
					return a.PrintJSON(hs)
				}
				tw := tabwriter.NewWriter(a.Out(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "AUTHOR\tSEQ\tHEAD\tSTATE\tNAME")
				nameOf := a.namesByID()
				for _, h := range hs {
					state, id := "ok", showCard(h.ID)
					if h.Forked {
						state = "FORKED"
					}
					if h.Seq == 0 {
						state, id = "FORKED (proof only, no cards)", "-"
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", showID(h.Author), h.Seq, id, state, orDash(nameOf[h.Author]))
				}
				return tw.Flush()
			}
			var who key.ID
			if len(args) == 1 {
				if who, err = a.identityArg(args[0], anyID); err != nil {
					return err
				}
			} else {
				sk, err := a.Secret()
				if err != nil {
					return rejected(err, "")
				}
				who = sk.ID()
			}
			var cards []*card.Card
			err = st.Scan(who, 1, func(c *card.Card) error {
				cards = append(cards, c)
				return nil
			})
			if err != nil {
				return rejected(err, "")
			}
			stubs, err := st.Stubs(who, 1)
			if err != nil {
				return rejected(err, "")
			}
			// Honest readers stop showing a card its author lists in a later
			// crl card (capsule.Revoked's rule); --all shows them, marked.
			listed := map[card.ID]card.ID{}
			var views []cardView
			hidden := 0
			for i := len(cards) - 1; i >= 0; i-- {
				c := cards[i]
				if by, ok := listed[c.ID()]; ok {
					if !all {
						hidden++
						continue
					}
					v := viewOf(c, a.JSON())
					v.CRL = &by
					views = append(views, v)
				} else {
					views = append(views, viewOf(c, a.JSON()))
				}
				if c.Kind() == card.KindCRL {
					if b, err := capsule.DecodeCRL(c); err == nil {
						for _, r := range b.Revoked {
							if id, err := card.IDFromBytes(r); err == nil {
								listed[id] = c.ID()
							}
						}
					}
				}
			}
			slices.Reverse(views)
			// Stubs in their place in the chain, shown as withheld.
			for _, stub := range stubs {
				i, _ := slices.BinarySearchFunc(views, stub.Seq, func(v cardView, seq uint64) int { return cmp.Compare(v.Seq, seq) })
				views = slices.Insert(views, i, stubView(stub))
			}
			if a.JSON() {
				if views == nil {
					views = []cardView{}
				}
				return a.PrintJSON(views)
			}
			tw := tabwriter.NewWriter(a.Out(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tID")
			for _, v := range views {
				mark := ""
				if v.CRL != nil {
					mark = "\t(revoked by CRL " + showCard(*v.CRL) + ")"
				}
				if v.Withheld {
					id := "(ID unproven)"
					if v.Proven {
						id = showCard(v.ID)
					}
					fmt.Fprintf(tw, "%d\t-\twithheld\t%s\t(a stub: the home it came from may not pass this card on)\n", v.Seq, id)
					continue
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s%s\n", v.Seq, v.Time, v.Kind, showCard(v.ID), mark)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if hidden > 0 {
				fmt.Fprintf(a.Err(), "sublog: %d cards not shown: their author revoked them in a CRL (--all shows them)\n", hidden)
			}
			if len(stubs) > 0 {
				fmt.Fprintf(a.Err(), "sublog: %d cards of this log are withheld: the homes they came from may not pass them on; only their place in the chain is held\n", len(stubs))
			}
			if len(views) == 0 && hidden == 0 {
				fmt.Fprintf(a.Err(), "sublog: no cards in the log of %s\n", who)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&heads, "heads", false, "list the head of every log in the store")
	c.Flags().BoolVar(&all, "all", false, "also list cards their author revoked in a CRL (marked)")
	return c
}

// showHook, when set (by the encryption feature), explains or decrypts a
// card's protected content for `show`; it returns the body to display.
var showHook func(a *App, c *card.Card) (body any, note string, err error)

func newShowCmd(a *App) *cobra.Command {
	var asHex bool
	c := &cobra.Command{
		Use:   "show CARD-ID",
		Short: "Show one card",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := a.cardArg(args[0])
			if err != nil {
				return err
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			c, err := st.GetByID(id)
			if errors.Is(err, sublog.ErrNotFound) {
				if stub, ok, serr := st.StubByID(id); serr == nil && ok {
					if a.JSON() {
						if err := a.PrintJSON(stubView(stub)); err != nil {
							return err
						}
					}
					return rejected(fmt.Errorf("%s is withheld: this home holds only its ID, %s@%d (proven by the next card's prev), not the card", id, stub.Author, stub.Seq),
						"the home it came from may not pass it on; it comes in full once that home may share it with you")
				}
			}
			if err != nil {
				return rejected(err, "")
			}
			if asHex {
				fmt.Fprintln(a.Out(), hex.EncodeToString(c.Bytes()))
				return nil
			}
			v := viewOf(c, true)
			note := ""
			if showHook != nil {
				body, n, err := showHook(a, c)
				if err != nil {
					return rejected(err, "")
				}
				if body != nil {
					v.Body = body
				}
				note = n
			}
			if a.JSON() {
				return a.PrintJSON(v)
			}
			w := tabwriter.NewWriter(a.Out(), 0, 4, 2, ' ', 0)
			row := func(k string, val any) { fmt.Fprintf(w, "%s\t%v\n", k, val) }
			row("card", v.ID)
			row("author", v.Author)
			row("seq", v.Seq)
			if v.Prev != nil {
				row("prev", *v.Prev)
			}
			row("kind", v.Kind)
			row("time", v.Time)
			row("net", v.Net)
			row("rid", v.RID)
			for _, r := range v.Reqs {
				row("requires", r)
			}
			if v.ContentHash != "" {
				row("content", v.ContentHash)
			}
			row("size", fmt.Sprintf("%d bytes", v.Size))
			if note != "" {
				row("note", note)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if v.Body != nil {
				out, err := yaml.MarshalWithOptions(v.Body, yaml.Indent(2))
				if err != nil {
					return rejected(err, "")
				}
				fmt.Fprintf(a.Out(), "body:\n%s", indent(string(out), "  "))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asHex, "hex", false, "print the card's exact bytes as hex")
	return c
}

func indent(s, pfx string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		b.WriteString(pfx + l + "\n")
	}
	return b.String()
}
