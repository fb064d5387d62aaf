package cli

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/crdt"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/projections"
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

// intentDraft builds an intent card: the manifest becomes the minimal
// Automerge changes against this identity's current view of the document.
func intentDraft(a *App, d *Doc) (card.Draft, error) {
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
			return card.Draft{}, fmt.Errorf("%w: %s: field %s: %s", ErrInput, where, fe.Field, fe.Msg)
		}
		return card.Draft{}, err
	}
	sk, err := a.Secret()
	if err != nil {
		return card.Draft{}, err
	}
	st, err := a.Store()
	if err != nil {
		return card.Draft{}, err
	}
	ps, err := foldStore(a, st)
	if err != nil {
		return card.Draft{}, err
	}
	me := sk.ID()
	owner := me
	if m.Owner != nil {
		owner = *m.Owner
	} else if o, ok, err := speaksFor(st, me); err != nil {
		return card.Draft{}, err
	} else if ok {
		owner = o
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
		return card.Draft{}, err
	}
	doc := ps.Doc(owner, m.Service)
	if doc == nil {
		doc = crdt.New(owner, m.Service)
	}
	ch, err := doc.Build(me, m, a.Now())
	if err != nil {
		return card.Draft{}, err
	}
	return card.Draft{Body: projections.IntentBody{Service: m.Service, Owner: owner.Bytes(), Changes: ch}}, nil
}

// speaksFor finds the one owner that delegated to id (never revoked it).
func speaksFor(st *sublog.Store, id key.ID) (key.ID, bool, error) {
	owners := map[key.ID]bool{}
	revoked := map[key.ID]bool{}
	err := st.All(func(c *card.Card) error {
		if c.Kind() != card.KindDelegate {
			return nil
		}
		var b projections.DelegateBody
		if c.DecodeBody(&b) != nil || string(b.Device) != string(id.Bytes()) {
			return nil
		}
		if b.Revoked {
			revoked[c.Author()] = true
		} else {
			owners[c.Author()] = true
		}
		return nil
	})
	if err != nil {
		return key.ID{}, false, err
	}
	var list []key.ID
	for o := range owners {
		if !revoked[o] {
			list = append(list, o)
		}
	}
	switch len(list) {
	case 0:
		return key.ID{}, false, nil
	case 1:
		return list[0], true, nil
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Compare(list[j]) < 0 })
	return key.ID{}, false, fmt.Errorf("%w: this identity speaks for %d owners (%s, ...): name one with owner:", ErrInput, len(list), list[0])
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
	c := &cobra.Command{
		Use:   "delegate DEVICE [--services S,...] [--until TIME]",
		Short: "Let a device identity speak for this owner's service intent",
		Long: "Append a delegate card: intent cards from DEVICE count as this identity's, for the listed\n" +
			"services (default all) and, if --until is given, for cards the device dates up to that time.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := a.identityArg(args[0], deviceID)
			if err != nil {
				return err
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
			return a.appendCard(card.KindDelegate, b)
		},
	}
	c.Flags().StringVar(&services, "services", "", "comma-separated services the device may change (default: all)")
	c.Flags().StringVar(&until, "until", "", "the device's intent counts only if dated up to this time (RFC 3339, Unix seconds or a duration)")
	return c
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
