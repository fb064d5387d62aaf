package cli

// Every identity and card argument of every command goes through the one
// resolver of package names (full forms, names, prefixes, AUTHOR@SEQ); this
// file supplies what the home knows and turns resolution errors into
// messages whose hints name the command that shows the right identities.

import (
	"errors"
	"slices"
	"strings"

	"github.com/sublog/sublog/exec"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/names"
)

// idRole says what an identity argument names, for the hint of an error.
type idRole int

const (
	anyID    idRole = iota
	peerID          // a peer (bundle) running on this host: 'sublog peers'
	deviceID        // a device of this owner
	hostID          // a host that receives something
	ownerID         // a service owner
)

func (r idRole) hint() string {
	switch r {
	case peerID:
		return "a peer's identity (and its bundle name) is in 'sublog peers' on the host; give a name, a unique prefix of at least 8 characters, or all 52"
	case deviceID:
		return "the device's identity is what 'sublog id' prints on the device itself; give it in full once (52 characters), then its petname or a prefix of at least 8"
	case hostID:
		return "the host's identity is what 'sublog id' prints on that host (or its petname here, see 'sublog trust'); give all 52 characters for a host this home does not know yet"
	case ownerID:
		return "the owner's identity is the owner field of 'sublog status'; give it in full, by petname, or by a prefix of at least 8 characters"
	}
	return "give an identity in full (52 z-base-32 characters), by name ('sublog id --list', 'sublog trust' list this home's names) or by a unique prefix of at least 8 characters ('sublog log --heads' lists the logs held)"
}

// known lists every identity this home knows, with its names: the home's
// own identities, petnames, the trust and follow lists, the authors of the
// logs held, and extra (a command's own candidates, e.g. the host's peers).
func (a *App) known(extra []names.Known) []names.Known {
	var out []names.Known
	if h, err := a.Home(); err == nil {
		if own, err := h.Identities(); err == nil {
			for _, n := range own {
				out = append(out, names.Known{ID: n.ID, Names: []string{n.Name}, Where: "identity of this home"})
			}
		}
		if pets, err := h.Names(); err == nil {
			for n, id := range pets {
				out = append(out, names.Known{ID: id, Names: []string{n}, Where: "petname"})
			}
		}
		if p, err := h.Peers(); err == nil {
			for _, id := range p.Trust {
				out = append(out, names.Known{ID: id, Where: "trusted"})
			}
			for _, id := range p.Follow {
				out = append(out, names.Known{ID: id, Where: "followed"})
			}
		}
	}
	if st, err := a.Store(); err == nil {
		for _, hd := range st.Heads() {
			out = append(out, names.Known{ID: hd.Author, Where: "log held"})
		}
	}
	out = append(out, extra...)
	slices.SortStableFunc(out, func(x, y names.Known) int { return x.ID.Compare(y.ID) })
	return out
}

func (a *App) resolver(extra []names.Known) *names.Resolver {
	var cached []names.Known
	loaded := false
	return &names.Resolver{
		Identities: func() []names.Known {
			if !loaded {
				cached, loaded = a.known(extra), true
			}
			return cached
		},
		CardPrefix: func(p string, max int) ([]card.ID, error) {
			st, err := a.Store()
			if err != nil {
				return nil, err
			}
			return st.IDsWithPrefix(p, max)
		},
		CardAt: func(author key.ID, seq uint64) (card.ID, error) {
			st, err := a.Store()
			if err != nil {
				return card.ID{}, err
			}
			c, err := st.Get(author, seq)
			if err != nil {
				return card.ID{}, err
			}
			return c.ID(), nil
		},
	}
}

// identityArg resolves an identity argument (the one way every command
// reads one); extra are the command's own candidates.
func (a *App) identityArg(s string, role idRole, extra ...names.Known) (key.ID, error) {
	id, err := a.resolver(extra).Identity(s)
	if err != nil {
		return key.ID{}, nameErr(err, role.hint())
	}
	return id, nil
}

// cardArg resolves a card argument: sha256:..., a prefix, or AUTHOR@SEQ.
func (a *App) cardArg(s string) (card.ID, error) {
	id, err := a.resolver(nil).Card(s)
	if err != nil {
		return card.ID{}, nameErr(err, "a card is sha256:<64 hex digits>, a unique prefix of at least 8 of them (the short IDs of tables), or AUTHOR@SEQ as 'sublog append' prints it; 'sublog log' lists a log's cards")
	}
	return id, nil
}

func nameErr(err error, hint string) error {
	var amb *names.AmbiguousError
	if errors.As(err, &amb) {
		return &exitError{code: ExitRejected, err: err, hint: "give more characters, or the full form", codeName: "ambiguous", candidates: amb.Candidates}
	}
	return rejected(err, hint)
}

// isMalformed reports whether a resolution failed on the form of its text.
func isMalformed(err error) bool { return errors.Is(err, names.ErrMalformed) }

// isCardForm reports whether s has the form of a card argument other than
// a full ID (a hex prefix of at least names.MinPrefix digits, AUTHOR@SEQ),
// for commands that take a file or a card.
func isCardForm(s string) bool {
	if strings.Contains(s, "@") {
		return !strings.ContainsAny(s, "/.")
	}
	h := strings.TrimPrefix(s, "sha256:")
	return len(h) >= names.MinPrefix && len(h) <= 64 && strings.Trim(h, "0123456789abcdef") == ""
}

// peersKnown are the host's peers as resolver candidates, named by their
// bundle's name ('sublog call counter ...').
func peersKnown(host *exec.Host) []names.Known {
	list, err := host.Peers()
	if err != nil {
		return nil
	}
	out := make([]names.Known, 0, len(list))
	for _, s := range list {
		k := names.Known{ID: s.Peer, Where: "peer on this host"}
		if s.Name != "" {
			k.Names = []string{s.Name}
		}
		out = append(out, k)
	}
	return out
}

// namesByID gives the name this home calls each identity by (its own
// identity names, then petnames), for tables.
func (a *App) namesByID() map[key.ID]string {
	out := map[key.ID]string{}
	h, err := a.Home()
	if err != nil {
		return out
	}
	if pets, err := h.Names(); err == nil {
		for n, id := range pets {
			out[id] = n
		}
	}
	if own, err := h.Identities(); err == nil {
		for _, n := range own {
			out[n.ID] = n.Name
		}
	}
	return out
}

// showID is how tables print an identity: its short form, which every
// identity argument takes back.
func showID(id key.ID) string { return names.ShortID(id) }

// showCard is how tables print a card ID: its short form, which every card
// argument takes back.
func showCard(id card.ID) string { return names.ShortCard(id) }

// labelID is an identity in a table without a name column: its short form,
// and the name this home calls it by when it has one.
func labelID(nameOf map[key.ID]string, id key.ID) string {
	if n := nameOf[id]; n != "" {
		return showID(id) + " (" + n + ")"
	}
	return showID(id)
}
