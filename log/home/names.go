package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sublog/sublog/log/key"
)

// NamesFile is HOME/names.json: this home's petnames for other identities,
//
//	{"laptop2": "ID", ...}
//
// set by `sublog trust ID --name laptop2`. A petname is this home's private
// label: it is never put in a card, so nobody else learns it and no card
// can make this home call someone by a name it did not choose.
const NamesFile = "names.json"

// ErrBadNames: names.json does not parse.
var ErrBadNames = errors.New("home: malformed names.json")

// MaxNames bounds names.json.
const MaxNames = 4096

// Names reads the petnames (empty when the file is absent).
func (h *Home) Names() (map[string]key.ID, error) {
	b, err := os.ReadFile(filepath.Join(h.Dir, NamesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]key.ID{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	var m map[string]key.ID
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadNames, err)
	}
	for n := range m {
		if !nameRE.MatchString(n) {
			return nil, fmt.Errorf("%w: name %q", ErrBadNames, n)
		}
	}
	if m == nil {
		m = map[string]key.ID{}
	}
	return m, nil
}

// ValidName reports whether s can be a petname or an identity name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// SetName gives id the petname name (replacing what the name meant before,
// and any other petname id had). A name of one of the home's own
// identities cannot be reused for another identity.
func (h *Home) SetName(name string, id key.ID) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q (use lowercase letters, digits, '.', '_', '-')", ErrBadName, name)
	}
	if own, err := h.Identities(); err == nil {
		for _, n := range own {
			if n.Name == name && n.ID != id {
				return fmt.Errorf("%w: %q is the name of this home's identity %s", ErrBadName, name, n.ID)
			}
		}
	}
	m, err := h.Names()
	if err != nil {
		return err
	}
	for n, x := range m {
		if x == id {
			delete(m, n)
		}
	}
	m[name] = id
	if len(m) > MaxNames {
		return fmt.Errorf("home: at most %d petnames", MaxNames)
	}
	return h.writeNames(m)
}

// RemoveName forgets a petname (no error when it was not set).
func (h *Home) RemoveName(name string) error {
	m, err := h.Names()
	if err != nil {
		return err
	}
	if _, ok := m[name]; !ok {
		return nil
	}
	delete(m, name)
	return h.writeNames(m)
}

func (h *Home) writeNames(m map[string]key.ID) error {
	b, err := json.MarshalIndent(m, "", "  ") // map keys are sorted: same names, same bytes
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(h.Dir, NamesFile), append(b, '\n'), 0o600, false)
}
