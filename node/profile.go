package node

import (
	"slices"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/projections"
)

// publishRoles makes the node's newest profile card name the cap IDs of the
// roles it runs: when the newest profile names other roles, a copy naming
// these is appended. A home with no profile card publishes nothing (the
// profile states capacity, which only the operator knows); the log says so.
// It returns the card ID of the profile that names the roles ("" if none).
func (n *Node) publishRoles() (string, error) {
	var last *card.Card
	err := n.st.Scan(n.sk.ID(), 1, func(c *card.Card) error {
		if c.Kind() == card.KindProfile {
			last = c
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	want := RoleIDs(n.cfg.Roles)
	if last == nil {
		if len(want) > 0 {
			n.log.Warn("roles not published: this identity has no profile card; append one (kind: profile, cpu, memory, disk, gpu) and restart",
				"roles", n.cfg.Roles)
		}
		return "", nil
	}
	var b projections.ProfileBody
	if err := last.DecodeBody(&b); err != nil {
		n.log.Warn("roles not published: the newest profile card does not decode", "card", last.ID().String(), "err", err)
		return "", nil
	}
	if slices.Equal(b.Roles, want) {
		n.log.Info("roles published", "card", last.ID().String(), "roles", n.cfg.Roles)
		return last.ID().String(), nil
	}
	b.Roles = want
	c, err := n.st.Append(n.sk, card.Draft{Kind: card.KindProfile, TS: n.opt.Now().Unix(), Net: n.home.Net(), Body: b})
	if err != nil {
		return "", err
	}
	n.log.Info("roles published in a new profile card", "card", c.ID().String(), "supersedes", last.ID().String(), "roles", n.cfg.Roles)
	return c.ID().String(), nil
}
