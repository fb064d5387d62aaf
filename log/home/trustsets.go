package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/sublog/sublog/log/key"
)

// Named sets of identities: trust sets (`visibility: trustset`) and groups
// (`visibility: group`) that `to:` may name. They live in trustsets.json:
// {"name": ["identity", ...]}, each list sorted and free of duplicates.

// ErrNoSet: no trust set of that name.
var ErrNoSet = errors.New("home: no such trust set")

// MaxSetMembers bounds a trust set (the capsule carries at most 256 wraps).
const MaxSetMembers = 256

func (h *Home) setsPath() string { return filepath.Join(h.Dir, "trustsets.json") }

// TrustSets reads every named set.
func (h *Home) TrustSets() (map[string][]key.ID, error) {
	b, err := os.ReadFile(h.setsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]key.ID{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	var raw map[string][]key.ID
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: trustsets.json: %v", ErrBadConfig, err)
	}
	for name := range raw {
		if !nameRE.MatchString(name) {
			return nil, fmt.Errorf("%w: trustsets.json: set name %q", ErrBadConfig, name)
		}
	}
	if raw == nil {
		raw = map[string][]key.ID{}
	}
	return raw, nil
}

// TrustSet returns one named set.
func (h *Home) TrustSet(name string) ([]key.ID, error) {
	all, err := h.TrustSets()
	if err != nil {
		return nil, err
	}
	m, ok := all[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoSet, name)
	}
	return m, nil
}

// SetTrustSet creates or replaces a named set; an empty member list deletes it.
func (h *Home) SetTrustSet(name string, members []key.ID) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q (use lowercase letters, digits, '.', '_', '-')", ErrBadName, name)
	}
	if len(members) > MaxSetMembers {
		return fmt.Errorf("home: trust set %q has %d members, at most %d", name, len(members), MaxSetMembers)
	}
	all, err := h.TrustSets()
	if err != nil {
		return err
	}
	if len(members) == 0 {
		if _, ok := all[name]; !ok {
			return fmt.Errorf("%w: %q", ErrNoSet, name)
		}
		delete(all, name)
	} else {
		m := append([]key.ID(nil), members...)
		sort.Slice(m, func(i, j int) bool { return m[i].Compare(m[j]) < 0 })
		out := m[:0]
		for i, id := range m {
			if i == 0 || id != m[i-1] {
				out = append(out, id)
			}
		}
		all[name] = out
	}
	b, _ := json.MarshalIndent(all, "", "  ")
	return writeFileAtomic(h.setsPath(), append(b, '\n'), 0o600, false)
}
