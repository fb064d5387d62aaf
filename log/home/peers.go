package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/sublog/sublog/log/key"
)

// PeersFile is HOME/peers.json: who this home syncs with.
//
//	{"follow": [ID...], "trust": [ID...]}
//
// follow: identities whose logs this home wants, from any peer.
// trust: peers this home shares its own and followed logs with, and whose
// offered logs it accepts. The home's own identities (and the devices they
// delegate to) are always both, and are not listed here.
const PeersFile = "peers.json"

// ErrBadPeers: peers.json does not parse.
var ErrBadPeers = errors.New("home: malformed peers.json")

// Peers is the content of peers.json.
type Peers struct {
	Follow []key.ID `json:"follow"`
	Trust  []key.ID `json:"trust"`
}

// Peers reads the follow and trust lists (empty when the file is absent).
func (h *Home) Peers() (Peers, error) {
	var p Peers
	b, err := os.ReadFile(filepath.Join(h.Dir, PeersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Peers{Follow: []key.ID{}, Trust: []key.ID{}}, nil
	}
	if err != nil {
		return p, fmt.Errorf("home: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%w: %v", ErrBadPeers, err)
	}
	if p.Follow == nil {
		p.Follow = []key.ID{}
	}
	if p.Trust == nil {
		p.Trust = []key.ID{}
	}
	return p, nil
}

// SetPeers writes the lists (sorted, without duplicates) atomically.
func (h *Home) SetPeers(p Peers) error {
	norm := func(ids []key.ID) []key.ID {
		out := slices.Clone(ids)
		slices.SortFunc(out, func(a, b key.ID) int { return a.Compare(b) })
		out = slices.Compact(out)
		if out == nil {
			out = []key.ID{}
		}
		return out
	}
	p.Follow, p.Trust = norm(p.Follow), norm(p.Trust)
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(h.Dir, PeersFile), append(b, '\n'), 0o600, false)
}

// EditPeers reads the lists, lets edit change them, and writes them back.
func (h *Home) EditPeers(edit func(p *Peers)) (Peers, error) {
	p, err := h.Peers()
	if err != nil {
		return p, err
	}
	edit(&p)
	return p, h.SetPeers(p)
}
