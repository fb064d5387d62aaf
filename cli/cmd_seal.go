package cli

// Encrypted cards on the command line: `sublog append` with visibility: and
// to: fields seals the body (log/capsule), and `sublog show` opens what this
// home may read and says plainly what it may not. Both plug into the hooks
// the append and show commands expose (sealDraft, showHook).

import (
	"errors"
	"fmt"
	"io"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
)

func init() {
	sealDraft = sealFromDoc
	showHook = showSealed
}

// sealFromDoc reads visibility: (public, direct, trustset, group, node) and
// to: (one identity, a list of identities, or the name of a trust set) and
// seals the draft's body. The author reads its own sealed cards through a
// fresh per-card KEK kept in the store, so `sublog revoke --shred` can make
// the payload unreadable here for ever.
func sealFromDoc(a *App, d *Doc, dr *card.Draft) error {
	vis, _ := d.Fields["visibility"].(string)
	if vis == "" {
		if _, ok := d.Fields["visibility"]; ok {
			return d.Errorf("visibility", "must be one of public, direct, trustset, group, node")
		}
		vis = capsule.Direct
	}
	switch vis {
	case capsule.Public, capsule.Direct, capsule.TrustSet, capsule.Group, capsule.Node:
	default:
		return d.Errorf("visibility", "%q is not one of public, direct, trustset, group, node", vis)
	}
	recips, err := recipientsOf(a, d, vis)
	if err != nil {
		return err
	}
	h, err := sealHome(a)
	if err != nil {
		return err
	}
	body := dr.RawBody
	if body == nil {
		if dr.Body == nil {
			dr.Body = map[string]any{}
		}
		if body, err = canon.Marshal(dr.Body); err != nil {
			return d.Errorf("kind", "body cannot be encoded: %v", err)
		}
	}
	rid := make([]byte, card.RIDSize)
	if _, err := io.ReadFull(a.Rand(), rid); err != nil {
		return err
	}
	p := capsule.Params{Net: h.Net(), RID: rid, Visibility: vis, Recipients: recips, Body: body}
	if vis != capsule.Public {
		st, err := a.Store()
		if err != nil {
			return err
		}
		kek, err := capsule.NewKEK(a.Rand())
		if err != nil {
			return err
		}
		if err := st.PutKEK(kek); err != nil {
			return err
		}
		p.KEK = kek
	}
	sealed, err := capsule.Seal(p, a.Rand())
	if err != nil {
		return d.Errorf("visibility", "%v", err)
	}
	*dr = sealed.Draft(*dr)
	dr.RID = rid
	return nil
}

func recipientsOf(a *App, d *Doc, vis string) ([]key.ID, error) {
	raw, has := d.Fields["to"]
	switch vis {
	case capsule.Public, capsule.Node:
		if has {
			return nil, d.Errorf("to", "%s cards have no recipients", vis)
		}
		return nil, nil
	}
	if !has || raw == nil {
		return nil, d.Errorf("to", "%s visibility needs to: (an identity, a list of identities, or a trust set name)", vis)
	}
	var items []string
	switch t := raw.(type) {
	case string:
		items = []string{t}
	case []any:
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, d.Errorf(fmt.Sprintf("to[%d]", i), "must be an identity")
			}
			items = append(items, s)
		}
	default:
		return nil, d.Errorf("to", "must be an identity, a list of identities or a trust set name")
	}
	var out []key.ID
	for i, s := range items {
		if len(s) == key.TextSize {
			id, err := key.ParseID(s)
			if err != nil {
				return nil, d.Errorf(fmt.Sprintf("to[%d]", i), "%v", err)
			}
			out = append(out, id)
			continue
		}
		h, err := sealHome(a)
		if err != nil {
			return nil, err
		}
		set, err := h.TrustSet(s)
		if err != nil {
			return nil, d.Errorf("to", "%q is neither an identity nor a trust set of this home (see 'sublog trustset list')", s)
		}
		out = append(out, set...)
	}
	if vis == capsule.Direct && len(out) != 1 {
		return nil, d.Errorf("to", "direct visibility takes exactly one identity, got %d", len(out))
	}
	return out, nil
}

// sealHome opens the home for sealing; an App without an environment (as in
// parser fuzzing) has none.
func sealHome(a *App) (*home.Home, error) {
	if a.getenv == nil {
		return nil, errors.New("no home to seal with")
	}
	return a.Home()
}

// sealedView is what show prints in place of an encrypted body.
type sealedView struct {
	Encrypted    bool   `json:"encrypted"`
	Visibility   string `json:"visibility"`
	Distribution string `json:"distribution"`
	Readable     bool   `json:"readable"`
	Status       string `json:"status"`
}

// showSealed opens a sealed card with every identity of the home and the
// store's KEKs; it also hides cards their author revoked or listed in a CRL.
func showSealed(a *App, c *card.Card) (any, string, error) {
	st, err := a.Store()
	if err != nil {
		return nil, "", err
	}
	if by, kind, err := revokedBy(st, c); err != nil {
		return nil, "", err
	} else if kind == "crl" {
		return map[string]any{"hidden": "listed in its author's revocation list"},
			fmt.Sprintf("revoked: listed in its author's CRL card %s; honest readers do not show it", by), nil
	} else if kind == "revoke" && !capsule.IsSealed(c) {
		return nil, fmt.Sprintf("revoked by its author in card %s", by), nil
	}
	if !capsule.IsSealed(c) {
		return nil, "", nil
	}
	env, err := capsule.DecodeEnvelope(c.Body())
	if err != nil {
		return nil, "", err
	}
	view := sealedView{Encrypted: env.Capsule.Policy.Visibility != capsule.Public,
		Visibility: env.Capsule.Policy.Visibility, Distribution: env.Capsule.Policy.Distribution}
	h, err := a.Home()
	if err != nil {
		return nil, "", err
	}
	keys := capsule.Keys{KEK: st.KEK}
	named, err := h.Identities()
	if err != nil {
		return nil, "", err
	}
	for _, n := range named {
		sk, err := h.Identity(n.Name)
		if err != nil {
			continue // an unreadable key file is the id command's to report
		}
		keys.Identities = append(keys.Identities, sk)
	}
	o, err := capsule.OpenCard(c, keys)
	switch {
	case err == nil:
		var body any
		if err := canon.Unmarshal(o.Body, &body); err != nil {
			return nil, "", err
		}
		note := "decrypted (" + view.Visibility + ", distribution " + view.Distribution + ")"
		if view.Visibility == capsule.Public {
			note = "public, permanent: no encryption"
		}
		if exp := o.Policy.Exp; exp != 0 && a.Now().Unix() > exp {
			return map[string]any{"hidden": "expired"}, fmt.Sprintf("expired at %d: its author asked readers not to show it after that", exp), nil
		}
		return jsonable(body), note, nil
	case errors.Is(err, capsule.ErrNotRecipient):
		view.Status = "not a recipient"
		return view, "not a recipient: this home holds no key for this " + view.Visibility + " card; the body stays encrypted", nil
	case errors.Is(err, capsule.ErrShredded):
		view.Status = "shredded"
		return view, "shredded: this card's key was deleted here; its payload can never be read here", nil
	case errors.Is(err, capsule.ErrTampered), errors.Is(err, capsule.ErrMalformed):
		return nil, "", rejected(err, "the card verifies but its encrypted content does not match it")
	}
	return nil, "", err
}
