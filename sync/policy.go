package sync

import (
	"fmt"
	"maps"

	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// Policy decides who syncs what. Visible says whether peer may learn that
// this side holds author's log (and receive it); Accept whether this side
// takes author's cards from peer. A session shows a peer only the logs
// Visible allows: heads, fingerprints, range bounds and cards are all drawn
// from that filtered set, so a peer learns nothing of the others.
//
// Shares says whether peer is close enough to receive cards whose capsule
// limits their distribution to trusted nodes or to recipients (see MayLeave).
type Policy interface {
	Visible(peer, author key.ID) bool
	Accept(peer, author key.ID) bool
	Shares(peer key.ID) bool
}

// MayLeave reports whether card c may be sent to peer (nil: to anyone, as
// an unaddressed bundle may travel) under the distribution in its policy
// capsule: cards without a capsule and "public" ones go wherever their log
// goes; "trusted_nodes" and "to_recipients_only" go only to peers the policy
// Shares with (capsule wraps are anonymous, so recipients cannot be told
// apart from other trusted peers); "this_node_only", an unknown mode or an
// unreadable capsule never leave the node. A card that may not leave goes
// as a stub (its ID only), so the later cards of its log still go.
func MayLeave(c *card.Card, peer *key.ID, pol Policy) bool {
	p, sealed, err := capsule.PolicyOf(c)
	switch {
	case !sealed:
		return true
	case err != nil:
		return false
	}
	switch p.Distribution {
	case capsule.DistPublic:
		return true
	case capsule.TrustedNodes, capsule.ToRecipientsOnly:
		return peer != nil && pol.Shares(*peer)
	}
	return false
}

// Withheld says that a card may not leave for this peer: it was sent (or
// exported) as a stub, its ID only, and the later cards of its log went on
// (a stub keeps the chain; see log/stub.go).
type Withheld struct {
	Author key.ID  `json:"author"`
	Seq    uint64  `json:"seq"`
	ID     card.ID `json:"id"`
	Reason string  `json:"reason"`
}

func withheld(c *card.Card) Withheld {
	reason := "its capsule cannot be read"
	if p, _, err := capsule.PolicyOf(c); err == nil {
		reason = fmt.Sprintf("distribution %s (visibility %s)", p.Distribution, p.Visibility)
	}
	return Withheld{Author: c.Author(), Seq: c.Seq(), ID: c.ID(), Reason: reason}
}

// Lists is the default policy, from the lists a home keeps:
//   - Self: this user's own identities and devices. They see every log and
//     everything they offer is accepted.
//   - Trusted: peers this user shares with. They see this user's own logs
//     and the logs it follows; what they offer is accepted (they vouch for it).
//   - Follow: identities whose logs this user wants, from any peer.
//
// Any other authenticated peer sees only its own log, and is taken from only
// for logs this user follows (never this user's own logs). Cards are verified whatever their source; the
// lists decide disclosure and storage, not validity.
type Lists struct {
	Self, Trusted, Follow map[key.ID]bool
}

// TrustFor applies the trust rule (ARCHITECTURE.md, "The trust rule") to a
// home's lists and the delegations its store holds, as of now:
//
//   - Self: the home's own identities; every identity on its lists that
//     delegates to one of them (the owner of this device: a device speaks for
//     its owner, so they are one user); and every device the own identities
//     and those owners delegate to.
//   - Trusted: the trust list and every device a trusted identity delegates
//     to (trust follows delegation).
//   - Follow: the follow list and every device a followed identity
//     delegates to (an owner's intent is written by its devices).
//
// Delegations are read from the store, so they are what the owners signed,
// never what a peer claims; only live ones count (see Devices).
//
// paired are the delegate cards this home was handed when it paired with
// its owners (`sublog pair`, HOME/owners.json; verified cards): each one's
// author counts as on the lists, and the card counts as if it were in the
// author's stored log, so a device knows its owner before it has ever
// stored the owner's log. A revocation in the owner's stored log still
// wins (a revoked device stays revoked).
func TrustFor(st Store, own, trust, follow []key.ID, now int64, paired ...*card.Card) *Lists {
	l := NewLists(own, nil, nil)
	mine := l.Self
	handed := map[key.ID][]*card.Card{}
	var owners []key.ID
	for _, c := range paired {
		if c.Kind() == card.KindDelegate {
			if handed[c.Author()] == nil {
				owners = append(owners, c.Author())
			}
			handed[c.Author()] = append(handed[c.Author()], c)
		}
	}
	devs := map[key.ID][]key.ID{}
	devices := func(o key.ID) []key.ID {
		d, ok := devs[o]
		if !ok {
			d = devicesWith(st, o, now, handed[o])
			devs[o] = d
		}
		return d
	}
	for _, x := range append(append(append([]key.ID(nil), trust...), follow...), owners...) {
		for _, d := range devices(x) {
			if mine[d] {
				l.Self[x] = true // x is this device's owner
			}
		}
	}
	for x := range maps.Clone(l.Self) {
		for _, d := range devices(x) {
			l.Self[d] = true
		}
	}
	for _, x := range trust {
		l.Trusted[x] = true
		for _, d := range devices(x) {
			l.Trusted[d] = true
		}
	}
	for _, x := range follow {
		l.Follow[x] = true
		for _, d := range devices(x) {
			l.Follow[d] = true
		}
	}
	return l
}

// Devices lists the devices owner's stored log delegates to, live at now: a
// delegate card of owner names the device, its until (if any) is after now,
// and neither a later delegate card revoking the device (a revoked device
// stays revoked) nor a revoke or crl card of owner naming the delegation
// withdrew it. Cards that do not decode are ignored. Sorted, no repeats.
func Devices(st Store, owner key.ID, now int64) []key.ID { return devicesWith(st, owner, now, nil) }

// devicesWith is Devices with extra delegate cards of owner counted as if
// they were in its log (the ones handed over at pairing).
func devicesWith(st Store, owner key.ID, now int64, extra []*card.Card) []key.ID {
	var d kinds.Delegations
	for _, c := range extra {
		var b kinds.DelegateBody
		if c.Author() == owner && c.Kind() == card.KindDelegate && c.DecodeBody(&b) == nil {
			d.Delegate(c.ID(), b)
		}
	}
	_ = st.Scan(owner, 1, func(c *card.Card) error {
		switch c.Kind() {
		case card.KindDelegate:
			var b kinds.DelegateBody
			if c.DecodeBody(&b) == nil {
				d.Delegate(c.ID(), b)
			}
		case card.KindRevoke:
			var b kinds.RevokeBody
			if c.DecodeBody(&b) == nil {
				if id, err := card.IDFromBytes(b.Card); err == nil {
					d.Withdraw(id)
				}
			}
		case card.KindCRL:
			var b kinds.CRLBody
			if c.DecodeBody(&b) == nil {
				for _, r := range b.Revoked {
					if id, err := card.IDFromBytes(r); err == nil {
						d.Withdraw(id)
					}
				}
			}
		}
		return nil
	})
	return d.Live(owner, now)
}

// NewLists builds a Lists policy.
func NewLists(self, trusted, follow []key.ID) *Lists {
	set := func(ids []key.ID) map[key.ID]bool {
		m := make(map[key.ID]bool, len(ids))
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	return &Lists{Self: set(self), Trusted: set(trusted), Follow: set(follow)}
}

// Visible implements Policy.
func (l *Lists) Visible(peer, author key.ID) bool {
	switch {
	case l.Self[peer], author == peer:
		return true
	case l.Trusted[peer]:
		return l.Self[author] || l.Follow[author]
	}
	return false
}

// Accept implements Policy. This user's own logs are taken only from its
// own identities, devices and trusted peers (which may hold copies to give
// back): any other peer has no reason to send them, so such cards are
// dropped before any signature work, as are logs nobody here wants.
func (l *Lists) Accept(peer, author key.ID) bool {
	switch {
	case l.Self[peer] || l.Trusted[peer]:
		return true
	case l.Self[author]:
		return false
	}
	return l.Follow[author]
}

// Everyone shares every log with every authenticated peer and accepts all
// (for tests and closed groups).
type Everyone struct{}

func (Everyone) Visible(_, _ key.ID) bool { return true }
func (Everyone) Accept(_, _ key.ID) bool  { return true }
func (Everyone) Shares(key.ID) bool       { return true }

// Shares implements Policy: own identities and devices, and trusted peers.
func (l *Lists) Shares(peer key.ID) bool { return l.Self[peer] || l.Trusted[peer] }

// Known reports whether peer is on any list (a server may refuse others
// before it reveals its own identity).
func (l *Lists) Known(peer key.ID) bool { return l.Self[peer] || l.Trusted[peer] || l.Follow[peer] }
