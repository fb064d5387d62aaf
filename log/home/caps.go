package home

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sublog/sublog/log/caps"
)

// Capabilities the home learned: cap-spec/v1 documents in caps/<cap-id>.capspec
// (their canonical, possibly signed CBOR), and in caps/supported.json the IDs
// of atomic caps the operator declares this node supports beyond the
// built-in ones (for application-level caps sublog itself does not
// interpret). Bundles need no declaration: they are supported when their
// members are.

func (h *Home) capsDir() string { return filepath.Join(h.Dir, "caps") }

// Caps returns the built-in set plus every learned spec and declared support.
// A damaged spec file is an error naming it, not silently skipped.
func (h *Home) Caps() (*caps.Set, error) {
	set := caps.Builtin()
	ents, err := os.ReadDir(h.capsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return set, nil
	}
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".capspec") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(h.capsDir(), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("home: %w", err)
		}
		d, err := caps.ParseDoc(b)
		if err != nil {
			return nil, fmt.Errorf("%w: caps/%s: %w", ErrBadConfig, e.Name(), err)
		}
		if d.ID()+".capspec" != e.Name() {
			return nil, fmt.Errorf("%w: caps/%s holds cap %s", ErrBadConfig, e.Name(), d.ID())
		}
		if _, err := set.Learn(d.Spec); err != nil {
			return nil, err
		}
	}
	sup, err := h.declared()
	if err != nil {
		return nil, err
	}
	for _, id := range sup {
		sp, ok := set.Spec(id)
		if !ok {
			return nil, fmt.Errorf("%w: caps/supported.json names %s, whose spec is not in caps/", ErrBadConfig, id)
		}
		set.Add(sp)
	}
	return set, nil
}

func (h *Home) declared() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(h.capsDir(), "supported.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	var ids []string
	if err := json.Unmarshal(b, &ids); err != nil {
		return nil, fmt.Errorf("%w: caps/supported.json: %v", ErrBadConfig, err)
	}
	for _, id := range ids {
		if err := caps.ValidID(id); err != nil {
			return nil, fmt.Errorf("%w: caps/supported.json: %w", ErrBadConfig, err)
		}
	}
	return ids, nil
}

// AddCapSpec stores a verified spec document (from caps.ParseDoc); with
// support it also declares the (atomic) cap supported by this node. It
// returns the cap ID.
func (h *Home) AddCapSpec(d *caps.Doc, support bool) (string, error) {
	b, err := d.Marshal()
	if err != nil {
		return "", err
	}
	if support && d.IsBundle() {
		return "", fmt.Errorf("%w: a bundle is supported when its members are; declare the members", caps.ErrBadSpec)
	}
	if err := os.MkdirAll(h.capsDir(), 0o700); err != nil {
		return "", fmt.Errorf("home: %w", err)
	}
	id := d.ID()
	if err := writeFileAtomic(filepath.Join(h.capsDir(), id+".capspec"), b, 0o600, false); err != nil {
		return "", err
	}
	if !support {
		return id, nil
	}
	ids, err := h.declared()
	if err != nil {
		return "", err
	}
	for _, x := range ids {
		if x == id {
			return id, nil
		}
	}
	ids = append(ids, id)
	sort.Strings(ids)
	out, _ := json.MarshalIndent(ids, "", "  ")
	return id, writeFileAtomic(filepath.Join(h.capsDir(), "supported.json"), append(out, '\n'), 0o600, false)
}
