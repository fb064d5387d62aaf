package cli

import (
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

func init() {
	register(newCapsCmd)
	register(newCapspecCmd)
	register(newTrustsetCmd)
}

// capsView is the JSON shape of `sublog caps`: the node-caps/v1 document a
// node serves to authenticated peers (schema, supported IDs), plus entries
// with names for people and, with --all, every known cap.
type capsView struct {
	Schema    string       `json:"schema"`
	Supported []string     `json:"supported"`
	Entries   []caps.Entry `json:"entries"`
	Known     []caps.Entry `json:"known,omitempty"`
}

func newCapsCmd(a *App) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "caps",
		Short: "List the capabilities this node supports (built-in and learned)",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			set, err := h.Caps()
			if err != nil {
				return rejected(err, "")
			}
			list := set.List()
			if all {
				list = set.Known()
			}
			if a.JSON() {
				adv := set.Advertise()
				v := capsView{Schema: adv.Schema, Supported: adv.Supported, Entries: set.List()}
				if all {
					v.Known = set.Known()
				}
				return a.PrintJSON(v)
			}
			w := tabwriter.NewWriter(a.Out(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tID\tKIND\tSTATUS")
			for _, e := range list {
				kind := "atomic"
				if e.Bundle {
					kind = fmt.Sprintf("bundle(%d)", len(e.Members))
				}
				var st []string
				if e.Supported {
					st = append(st, "supported")
				} else {
					st = append(st, "unsupported")
				}
				if e.Deprecated {
					st = append(st, "deprecated")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Name, e.ID, kind, strings.Join(st, ","))
			}
			return w.Flush()
		},
	}
	c.Flags().BoolVar(&all, "all", false, "also list learned capabilities this node does not support")
	return c
}

// parseCapspecFile reads a cap-spec/v1 document: canonical CBOR (as a
// capspec card body, possibly signed) or YAML/JSON with the spec's fields.
func parseCapspecFile(name string, src []byte) (*caps.Doc, error) {
	if len(src) > 0 && src[0]>>5 == 5 { // a CBOR map
		return caps.ParseDoc(src)
	}
	if err := checkInputBounds(name, src); err != nil {
		return nil, err
	}
	var d caps.Doc
	if err := yaml.UnmarshalWithOptions(src, &d.Spec, yaml.DisallowUnknownField()); err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInput, name, oneLine(yaml.FormatError(err, false, false)))
	}
	if d.Schema == "" {
		d.Schema = caps.SchemaV1
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &d, nil
}

func newCapspecCmd(a *App) *cobra.Command {
	c := &cobra.Command{Use: "capspec", Short: "Manage capability specs (cap-spec/v1)"}
	var support, sign, local bool
	add := &cobra.Command{
		Use:   "add FILE|-|CARD-ID",
		Short: "Learn a cap-spec/v1 document and publish it as a capspec card",
		Long: "Learn a cap-spec/v1 document (YAML/JSON fields, or its canonical CBOR, possibly signed),\n" +
			"store it in the home and publish it as a capspec card (unless --local); or learn the spec\n" +
			"of a capspec card already in the store, by its card ID. A bundle is\n" +
			"supported once all its members are; --support declares an atomic cap supported by this\n" +
			"node (for application caps sublog does not interpret). Prints the cap ID.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d *caps.Doc
			cardID, err := card.ParseID(args[0])
			if _, serr := os.Stat(a.Path(args[0])); err != nil && serr != nil && args[0] != "-" {
				// Not a file: a card's short form (prefix, AUTHOR@SEQ)?
				if cid, cerr := a.resolver(nil).Card(args[0]); cerr == nil {
					cardID, err = cid, nil
				}
			}
			if id := cardID; err == nil {
				// a capspec card already in the store (e.g. received by sync)
				st, err := a.Store()
				if err != nil {
					return rejected(err, "")
				}
				c, err := st.GetByID(id)
				if err != nil {
					return rejected(err, "")
				}
				if c.Kind() != card.KindCapspec {
					return rejected(fmt.Errorf("card %s is a %s card, not a capspec card", id, c.Kind()), "")
				}
				if d, err = caps.ParseDoc(c.Body()); err != nil {
					return rejected(err, "")
				}
				local = true // it is published already
			} else {
				src, name, err := a.readInput(args[0])
				if err != nil {
					return rejected(err, "")
				}
				if d, err = parseCapspecFile(name, src); err != nil {
					return rejected(err, "")
				}
			}
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			if sign || !local {
				sk, err := a.Secret()
				if err != nil {
					return rejected(err, "")
				}
				if sign {
					signers, _ := d.Signers()
					mine := false
					for _, s := range signers {
						mine = mine || s == sk.ID()
					}
					if !mine {
						if err := d.Sign(sk); err != nil {
							return rejected(err, "")
						}
					}
				}
				if !local {
					body, err := d.Marshal()
					if err != nil {
						return rejected(err, "")
					}
					st, err := a.Store()
					if err != nil {
						return rejected(err, "")
					}
					if _, err := st.Append(sk, card.Draft{Kind: card.KindCapspec, Net: h.Net(), TS: a.Now().Unix(), RawBody: body}); err != nil {
						return rejected(err, "")
					}
				}
			}
			id, err := h.AddCapSpec(d, support)
			if err != nil {
				return rejected(err, "")
			}
			set, err := h.Caps()
			if err != nil {
				return rejected(err, "")
			}
			supported := set.Require([]string{id})
			if a.JSON() {
				v := map[string]any{"id": id, "name": d.Label(), "supported": supported == nil}
				if supported != nil {
					v["why"] = supported.Error()
				}
				return a.PrintJSON(v)
			}
			fmt.Fprintln(a.Out(), id)
			if supported != nil {
				fmt.Fprintf(a.Err(), "sublog: note: learned %s, but this node does not support it: %v\n", d.Label(), supported)
			}
			return nil
		},
	}
	add.Flags().BoolVar(&support, "support", false, "declare this atomic cap supported by this node")
	add.Flags().BoolVar(&sign, "sign", false, "add this identity's signature to the spec")
	add.Flags().BoolVar(&local, "local", false, "only learn it; do not append a capspec card")
	c.AddCommand(add)

	var replacedBy []string
	var reason string
	dep := &cobra.Command{
		Use:   "deprecate CAP-ID",
		Short: "Sign a deprecation notice for a capability and record it in this home",
		Long: "Sign a cap-deprecation/v1 notice as this identity (--as) and store it. Readers count a\n" +
			"notice when its signer signed the cap's spec or is one of their own identities; a\n" +
			"deprecated cap stays supported and is flagged by 'sublog caps'. Prints the notice as hex.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := caps.ValidID(args[0]); err != nil {
				return rejected(err, "cap IDs are printed by 'sublog caps'")
			}
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			raw, err := caps.SignNotice(sk, caps.Notice{Cap: args[0], ReplacedBy: replacedBy, Reason: reason, TS: a.Now().Unix()})
			if err != nil {
				return rejected(err, "")
			}
			if _, err := h.AddNotice(raw); err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(map[string]any{"cap": args[0], "notice": "0x" + hex.EncodeToString(raw)}) // the contract's other bytes
			}
			fmt.Fprintln(a.Out(), hex.EncodeToString(raw))
			return nil
		},
	}
	dep.Flags().StringSliceVar(&replacedBy, "replaced-by", nil, "cap IDs that replace it")
	dep.Flags().StringVar(&reason, "reason", "", "why")
	c.AddCommand(dep)
	return c
}

func newTrustsetCmd(a *App) *cobra.Command {
	c := &cobra.Command{Use: "trustset", Short: "Named sets of identities for visibility trustset and group"}
	c.AddCommand(&cobra.Command{
		Use:   "set NAME IDENTITY...",
		Short: "Create or replace a trust set",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			var ids []key.ID
			for _, s := range args[1:] {
				id, err := a.identityArg(s, anyID)
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			if err := h.SetTrustSet(args[0], ids); err != nil {
				return rejected(err, "")
			}
			set, err := h.TrustSet(args[0])
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(struct {
					Name    string   `json:"name"`
					Members []key.ID `json:"members"`
				}{args[0], set})
			}
			fmt.Fprintf(a.Out(), "trust set %s: %d members\n", args[0], len(set))
			return nil
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a trust set",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			if err := h.SetTrustSet(args[0], nil); err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(struct {
					Name    string `json:"name"`
					Removed bool   `json:"removed"`
				}{args[0], true})
			}
			fmt.Fprintf(a.Out(), "trust set %s removed\n", args[0])
			return nil
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List trust sets",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.Home()
			if err != nil {
				return rejected(err, "")
			}
			sets, err := h.TrustSets()
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(sets)
			}
			names := make([]string, 0, len(sets))
			for n := range sets {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				for _, id := range sets[n] {
					fmt.Fprintf(a.Out(), "%s\t%s\n", n, id)
				}
			}
			return nil
		},
	})
	return c
}
