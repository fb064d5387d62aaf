package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/crdt"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/projections"
	lsync "github.com/sublog/sublog/sync"
	"github.com/sublog/sublog/sync/discovery"
)

func init() {
	registerKind(card.KindIntent, intentDraft)
	register(newDelegateCmd)
	register(newUndelegateCmd)
}

// foldStore folds every stored card into the projections.
func foldStore(a *App, st *sublog.Store) (*projections.State, error) {
	ps := projections.New()
	total, _ := st.Count()
	update, finish := a.Progress(int64(total), "folding")
	n := int64(0)
	err := st.All(func(c *card.Card) error {
		n++
		if n%1024 == 0 {
			update(n)
		}
		_ = ps.Add(c) // refused cards are recorded in the state and explained by status
		return nil
	})
	finish()
	if err != nil {
		return nil, rejected(err, "run 'sublog verify' to find damaged cards")
	}
	return ps, nil
}

var listIndex = regexp.MustCompile(`\.(\d+)(\.|$)`)

// yamlPath turns "spec.placement.hosts.0" into the "[0]" form LineOf takes.
func yamlPath(p string) string {
	for listIndex.MatchString(p) {
		p = listIndex.ReplaceAllString(p, "[$1]$2")
	}
	return p
}

// intentPlan is what applying one intent manifest would do: the author,
// the owner it writes for, the author's current view of the document and
// the three-way merge of the manifest into it.
type intentPlan struct {
	m         *crdt.Manifest
	me, owner key.ID
	doc       *crdt.Doc
	delta     crdt.Delta
}

// parseIntent validates an intent document as a manifest.
func parseIntent(d *Doc) (*crdt.Manifest, error) {
	fields := map[string]any{"kind": "intent"}
	for k, v := range d.Fields {
		fields[k] = v
	}
	m, err := crdt.ParseManifest(fields, func(p string) int { return d.LineOf(yamlPath(p)) })
	if err != nil {
		var fe *crdt.FieldError
		if errors.As(err, &fe) {
			where := d.Name
			if fe.Line > 0 {
				where = fmt.Sprintf("%s:%d", d.Name, fe.Line)
			}
			return nil, fmt.Errorf("%w: %s: field %s: %s", ErrInput, where, fe.Field, fe.Msg)
		}
		return nil, err
	}
	return m, nil
}

// planIntent parses an intent document and merges it into this identity's
// current view of the service's document. It says (on stderr) when the
// intent will be owned by an identity that is nobody's device, and refuses
// intent for an owner that has not delegated to this identity unless
// a.force (it would count nowhere).
func (a *App) planIntent(d *Doc) (*intentPlan, error) {
	m, err := parseIntent(d)
	if err != nil {
		return nil, err
	}
	sk, err := a.Secret()
	if err != nil {
		return nil, err
	}
	st, err := a.Store()
	if err != nil {
		return nil, err
	}
	ps, err := foldStore(a, st)
	if err != nil {
		return nil, err
	}
	me := sk.ID()
	owners, err := ownersOf(a, st, me)
	if err != nil {
		return nil, err
	}
	owner := me
	switch {
	case m.Owner != nil:
		owner = *m.Owner
		if owner != me && !slices.Contains(owners, owner) && !a.force {
			return nil, rejected(fmt.Errorf("this identity (%s) is not a device of %s: no live delegation from %s to it is known here, so this intent would count nowhere", me, owner, owner),
				fmt.Sprintf("on %s's home run 'sublog delegate %s' and here 'sublog pair TOKEN' with the token it prints (or --force to write it anyway)", owner.Short(), me))
		}
	case len(owners) == 1:
		owner = owners[0]
	case len(owners) > 1:
		return nil, fmt.Errorf("%w: this identity speaks for %d owners (%s, ...): name one with owner:", ErrInput, len(owners), owners[0])
	}
	// The author's own earlier intent for this service must count, or the
	// new changes would not continue its Automerge sequence.
	if err := st.Scan(me, 1, func(c *card.Card) error {
		if c.Kind() != card.KindIntent {
			return nil
		}
		var b projections.IntentBody
		if c.DecodeBody(&b) != nil || b.Service != m.Service || string(b.Owner) != string(owner.Bytes()) {
			return nil
		}
		if v := ps.Explain(c.ID(), a.Now()); v.Verdict != "applied" {
			return fmt.Errorf("your earlier intent card %s for %s is %s (%s); it must count before you add more",
				c.ID(), m.Service, v.Verdict, v.Reason)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	doc := ps.Doc(owner, m.Service)
	if doc == nil {
		doc = crdt.New(owner, m.Service)
		if owner == me && m.Owner == nil && len(owners) == 0 && !delegatesAny(st, me) {
			fmt.Fprintf(a.Err(), "sublog: note: %s is a new service owned by this identity (%s), which is nobody's device; if this home is a device of another owner, pair it first ('sublog delegate %s' on the owner's home prints the token for 'sublog pair TOKEN' here)\n",
				m.Service, me.Short(), me)
		}
	}
	return &intentPlan{m: m, me: me, owner: owner, doc: doc, delta: doc.Diff(me, m)}, nil
}

// intentDraft builds an intent card: the manifest becomes the minimal
// Automerge changes against this identity's current view of the document.
func intentDraft(a *App, d *Doc) (card.Draft, error) {
	p, err := a.planIntent(d)
	if err != nil {
		return card.Draft{}, err
	}
	ch, err := p.doc.Build(p.me, p.m, a.Now())
	if err != nil {
		return card.Draft{}, err
	}
	return card.Draft{Body: projections.IntentBody{Service: p.m.Service, Owner: p.owner.Bytes(), Changes: ch}}, nil
}

// delegatesAny reports whether id's log holds a delegate card (it is an
// owner of devices).
func delegatesAny(st *sublog.Store, id key.ID) bool {
	found := false
	_ = st.Scan(id, 1, func(c *card.Card) error {
		if c.Kind() == card.KindDelegate {
			found = true
			return io.EOF
		}
		return nil
	})
	return found
}

// ownersOf lists, sorted, the owners that delegate to id and never revoked
// it: from the delegate cards the store holds and the delegations this home
// was handed at pairing (owners.json).
func ownersOf(a *App, st *sublog.Store, id key.ID) ([]key.ID, error) {
	owners := map[key.ID]bool{}
	revoked := map[key.ID]bool{}
	note := func(c *card.Card) {
		if c.Kind() != card.KindDelegate {
			return
		}
		var b projections.DelegateBody
		if c.DecodeBody(&b) != nil || string(b.Device) != string(id.Bytes()) {
			return
		}
		if b.Revoked {
			revoked[c.Author()] = true
		} else {
			owners[c.Author()] = true
		}
	}
	if err := st.All(func(c *card.Card) error { note(c); return nil }); err != nil {
		return nil, err
	}
	if h, err := a.Home(); err == nil {
		paired, err := h.PairedDelegations()
		if err != nil {
			return nil, rejected(err, "fix or remove "+filepath.Join(h.Dir, home.OwnersFile)+" (then pair again)")
		}
		for _, c := range paired {
			note(c)
		}
	}
	var list []key.ID
	for o := range owners {
		if !revoked[o] {
			list = append(list, o)
		}
	}
	slices.SortFunc(list, key.ID.Compare)
	return list, nil
}

func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Time{}.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, 2006-01-02[T15:04], Unix seconds, or a duration like 720h)", s)
}

func (a *App) appendCard(kind string, body any) error {
	sk, err := a.Secret()
	if err != nil {
		return rejected(err, "")
	}
	st, err := a.Store()
	if err != nil {
		return rejected(err, "")
	}
	h, _ := a.Home()
	c, err := st.Append(sk, card.Draft{Kind: kind, Net: h.Net(), TS: a.Now().Unix(), Body: body})
	if err != nil {
		return rejected(err, "")
	}
	if a.JSON() {
		return a.PrintJSON(map[string]any{"author": c.Author(), "seq": c.Seq(), "id": c.ID(), "kind": c.Kind()})
	}
	fmt.Fprintf(a.Out(), "%s@%d %s\n", c.Author(), c.Seq(), c.ID())
	return nil
}

func newDelegateCmd(a *App) *cobra.Command {
	var services, until string
	ttl := 24 * time.Hour
	c := &cobra.Command{
		Use:   "delegate DEVICE [--services S,...] [--until TIME]",
		Short: "Let a device identity speak for this owner, and print the pairing token the device takes once",
		Long: "Append a delegate card: intent cards from DEVICE count as this identity's, for the listed\n" +
			"services (default all) and, if --until is given, for cards the device dates up to that time.\n" +
			"Then print a pairing token (signed by this identity, bound to DEVICE, valid for --token-ttl)\n" +
			"to run on the device once: 'sublog pair TOKEN'. After it each side takes the other's cards,\n" +
			"and the device's intent is written for this owner. Delegating again with the same scope\n" +
			"appends nothing and prints a fresh token.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := a.identityArg(args[0], deviceID)
			if err != nil {
				return err
			}
			if ttl <= 0 {
				return usage(errors.New("--token-ttl must be positive"))
			}
			b := projections.DelegateBody{Device: dev.Bytes()}
			if services != "" {
				for _, s := range strings.Split(services, ",") {
					if s = strings.TrimSpace(s); s != "" {
						b.Services = append(b.Services, s)
					}
				}
				sort.Strings(b.Services)
			}
			if until != "" {
				t, err := parseTime(until)
				if err != nil {
					return usage(err)
				}
				if t.Year() == 1 { // a duration
					t = a.Now().Add(t.Sub(time.Time{}))
				}
				b.Until = t.Unix()
			}
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			if sk.ID() == dev {
				return rejected(errors.New("an identity cannot delegate to itself"), "")
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			c, reused, err := a.delegation(st, sk, b)
			if err != nil {
				return err
			}
			now := a.Now()
			tok, err := discovery.NewPairToken(sk, c, now, now.Add(ttl))
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				return a.PrintJSON(map[string]any{"author": c.Author(), "seq": c.Seq(), "id": c.ID(), "kind": c.Kind(),
					"device": dev, "reused": reused, "pairing_token": tok.String(), "expires": tok.Expires.UTC().Format(time.RFC3339)})
			}
			w := a.Out()
			if reused {
				fmt.Fprintf(w, "%s is already delegated by %s@%d %s (nothing appended)\n", dev, c.Author(), c.Seq(), c.ID())
			} else {
				fmt.Fprintf(w, "%s@%d %s\n", c.Author(), c.Seq(), c.ID())
			}
			fmt.Fprintf(w, "on the device, run once (the token is valid until %s):\n", tok.Expires.Format(time.RFC3339))
			fmt.Fprintf(w, "  sublog pair %s\n", tok)
			return nil
		},
	}
	c.Flags().StringVar(&services, "services", "", "comma-separated services the device may change (default: all)")
	c.Flags().StringVar(&until, "until", "", "the device's intent counts only if dated up to this time (RFC 3339, Unix seconds or a duration)")
	c.Flags().DurationVar(&ttl, "token-ttl", ttl, "how long the printed pairing token stays valid")
	return c
}

// delegation appends the delegate card b, or finds this identity's live one
// with the same scope (reused). A revoked device is refused: a revoked
// identity stays revoked (ARCHITECTURE.md, Delegation).
func (a *App) delegation(st *sublog.Store, sk *key.Secret, b projections.DelegateBody) (*card.Card, bool, error) {
	dev, _ := key.IDFromBytes(b.Device)
	var same *card.Card
	revoked := false
	if err := st.Scan(sk.ID(), 1, func(c *card.Card) error {
		if c.Kind() != card.KindDelegate {
			return nil
		}
		var x projections.DelegateBody
		if c.DecodeBody(&x) != nil || string(x.Device) != string(b.Device) {
			return nil
		}
		if x.Revoked {
			revoked = true
		} else if slices.Equal(x.Services, b.Services) && x.Until == b.Until {
			same = c
		}
		return nil
	}); err != nil {
		return nil, false, rejected(err, "")
	}
	if revoked {
		return nil, false, rejected(fmt.Errorf("%s was revoked by this identity, and a revoked device stays revoked", dev),
			"make a new identity on the device ('sublog init --name NAME' there) and delegate to that")
	}
	if same != nil && slices.Contains(lsync.Devices(st, sk.ID(), a.Now().Unix()), dev) {
		return same, true, nil
	}
	h, _ := a.Home()
	c, err := st.Append(sk, card.Draft{Kind: card.KindDelegate, Net: h.Net(), TS: a.Now().Unix(), Body: b})
	if err != nil {
		return nil, false, rejected(err, "")
	}
	return c, false, nil
}

func newUndelegateCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "undelegate DEVICE",
		Short: "Revoke a device: its intent counts only up to the last of its cards this home has",
		Long: "Append a delegate card with revoked: true naming the device's last card this home holds (its\n" +
			"log position). The device's intent up to and including that card still counts; nothing it\n" +
			"signs after it does, whatever time it claims. Sync the device's log first to keep its latest work.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := a.identityArg(args[0], deviceID)
			if err != nil {
				return err
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			upto := uint64(0)
			if h, ok := st.Head(dev); ok {
				upto = h.Seq
			}
			if !a.JSON() {
				fmt.Fprintf(a.Err(), "sublog: %s's intent counts up to its seq %d\n", dev.Short(), upto)
			}
			return a.appendCard(card.KindDelegate, projections.DelegateBody{Device: dev.Bytes(), Revoked: true, Upto: &upto})
		},
	}
}
