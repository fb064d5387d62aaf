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
	signers := map[string][]string{}
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
		ids, _ := d.Signers() // verified by ParseDoc
		for _, id := range ids {
			signers[d.ID()] = append(signers[d.ID()], id.String())
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
	if err := h.loadNotices(set, signers); err != nil {
		return nil, err
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

// Deprecation notices live in caps/deprecated/<cap-id>.notice (the signed
// COSE_Sign1 bytes). A notice counts when its signer signed the deprecated
// cap's spec or is an identity of this home.

func (h *Home) noticesDir() string { return filepath.Join(h.capsDir(), "deprecated") }

// AddNotice stores a verified deprecation notice (from caps.ParseNotice).
func (h *Home) AddNotice(raw []byte) (caps.Notice, error) {
	n, err := caps.ParseNotice(raw)
	if err != nil {
		return n, err
	}
	if err := os.MkdirAll(h.noticesDir(), 0o700); err != nil {
		return n, fmt.Errorf("home: %w", err)
	}
	return n, writeFileAtomic(filepath.Join(h.noticesDir(), n.Cap+".notice"), raw, 0o600, false)
}

// loadNotices applies the stored notices to set.
func (h *Home) loadNotices(set *caps.Set, signers map[string][]string) error {
	ents, err := os.ReadDir(h.noticesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("home: %w", err)
	}
	mine := map[string]bool{}
	if named, err := h.Identities(); err == nil {
		for _, n := range named {
			mine[n.ID.String()] = true
		}
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".notice") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(h.noticesDir(), e.Name()))
		if err != nil {
			return fmt.Errorf("home: %w", err)
		}
		n, err := caps.ParseNotice(raw)
		if err != nil {
			return fmt.Errorf("%w: caps/deprecated/%s: %w", ErrBadConfig, e.Name(), err)
		}
		trusted := mine[n.Signer.String()]
		for _, s := range signers[n.Cap] {
			trusted = trusted || s == n.Signer.String()
		}
		if trusted {
			set.Deprecate(n, nil)
		}
	}
	return nil
}
