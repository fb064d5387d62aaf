package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// OwnersFile is HOME/owners.json: the owners this home's identities were
// paired with as devices (`sublog pair TOKEN`), each with the delegate card
// the owner signed for the device, kept as its exact bytes:
//
//	[{"owner": ID, "device": ID, "delegation": base64 card bytes, "paired": unix seconds}, ...]
//
// The card is what makes the owner this device's own user before the
// owner's log is stored here (sync.TrustFor); it is re-verified whenever it
// is read.
const OwnersFile = "owners.json"

// ErrBadOwners: owners.json does not parse, or holds a card that does not verify.
var ErrBadOwners = errors.New("home: malformed owners.json")

// Pairing is one entry of owners.json.
type Pairing struct {
	Owner      key.ID `json:"owner"`
	Device     key.ID `json:"device"`
	Delegation []byte `json:"delegation"`
	Paired     int64  `json:"paired"`
}

// Pairings reads owners.json (empty when absent).
func (h *Home) Pairings() ([]Pairing, error) {
	b, err := os.ReadFile(filepath.Join(h.Dir, OwnersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	var p []Pairing
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadOwners, err)
	}
	return p, nil
}

// PairedDelegations returns the delegate cards of owners.json, each verified
// (signature and form) and checked to be by the owner its entry names.
func (h *Home) PairedDelegations() ([]*card.Card, error) {
	ps, err := h.Pairings()
	if err != nil {
		return nil, err
	}
	out := make([]*card.Card, 0, len(ps))
	for _, p := range ps {
		c, err := card.DecodeAnyCaps(p.Delegation)
		if err != nil {
			return nil, fmt.Errorf("%w: the delegation of %s: %v", ErrBadOwners, p.Owner, err)
		}
		if c.Author() != p.Owner || c.Kind() != card.KindDelegate {
			return nil, fmt.Errorf("%w: the delegation of %s is a %s card of %s", ErrBadOwners, p.Owner, c.Kind(), c.Author())
		}
		out = append(out, c)
	}
	return out, nil
}

// AddPairing records a pairing, replacing an earlier one of the same owner
// and device; entries are kept sorted by owner, then device.
func (h *Home) AddPairing(p Pairing) error {
	ps, err := h.Pairings()
	if err != nil {
		return err
	}
	ps = slices.DeleteFunc(ps, func(q Pairing) bool { return q.Owner == p.Owner && q.Device == p.Device })
	ps = append(ps, p)
	slices.SortFunc(ps, func(a, b Pairing) int {
		if c := a.Owner.Compare(b.Owner); c != 0 {
			return c
		}
		return a.Device.Compare(b.Device)
	})
	b, err := json.MarshalIndent(ps, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(h.Dir, OwnersFile), append(b, '\n'), 0o600, false)
}
