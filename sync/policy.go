package sync

import "github.com/sublog/sublog/log/key"

// Policy decides who syncs what. Visible says whether peer may learn that
// this side holds author's log (and receive it); Accept whether this side
// takes author's cards from peer. A session shows a peer only the logs
// Visible allows: heads, fingerprints, range bounds and cards are all drawn
// from that filtered set, so a peer learns nothing of the others.
type Policy interface {
	Visible(peer, author key.ID) bool
	Accept(peer, author key.ID) bool
}

// Lists is the default policy, from the lists a home keeps:
//   - Self: this user's own identities and devices. They see every log and
//     everything they offer is accepted.
//   - Trusted: peers this user shares with. They see this user's own logs
//     and the logs it follows; what they offer is accepted (they vouch for it).
//   - Follow: identities whose logs this user wants, from any peer.
//
// Any other authenticated peer sees only its own log, and is taken from only
// for logs this user follows. Cards are verified whatever their source; the
// lists decide disclosure and storage, not validity.
type Lists struct {
	Self, Trusted, Follow map[key.ID]bool
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

// Accept implements Policy.
func (l *Lists) Accept(peer, author key.ID) bool {
	return l.Self[peer] || l.Trusted[peer] || l.Self[author] || l.Follow[author]
}

// Everyone shares every log with every authenticated peer and accepts all
// (for tests and closed groups).
type Everyone struct{}

func (Everyone) Visible(_, _ key.ID) bool { return true }
func (Everyone) Accept(_, _ key.ID) bool  { return true }

// Known reports whether peer is on any list (a server may refuse others
// before it reveals its own identity).
func (l *Lists) Known(peer key.ID) bool { return l.Self[peer] || l.Trusted[peer] || l.Follow[peer] }
