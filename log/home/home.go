// Package home owns a sublog home on disk: the directory (mode 0700), the
// secret key files of its named identities (mode 0600), its config, and the
// store inside it. Layout:
//
//	HOME/config.json        {"net": ..., "default": NAME}
//	HOME/keys/NAME.key      "sublog-secret-key-v1 <64 hex digits of the Ed25519 seed>\n"
//	HOME/store/             the Pebble log store
//	HOME/<subsystem>/       state of later subsystems (Path)
package home

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Errors of the home.
var (
	ErrNoHome    = errors.New("home: not initialised")
	ErrExists    = errors.New("home: identity already exists")
	ErrNoID      = errors.New("home: no such identity")
	ErrBadName   = errors.New("home: bad identity name")
	ErrKeyFile   = errors.New("home: malformed key file")
	ErrKeyPerms  = errors.New("home: key file is readable by others")
	ErrBadConfig = errors.New("home: malformed config.json")
)

// DefaultName is the name of the identity `sublog init` creates.
const DefaultName = "default"

const keyHeader = "sublog-secret-key-v1 "

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Config is the home's settings file.
type Config struct {
	Net     string `json:"net"`
	Default string `json:"default"`
}

// Home is an opened home directory.
type Home struct {
	Dir string
	cfg Config
}

// Locate picks the home directory: flag, else $SUBLOG_HOME, else
// $XDG_DATA_HOME/sublog, else ~/.local/share/sublog.
func Locate(flag string, getenv func(string) string) (string, error) {
	switch {
	case flag != "":
		return filepath.Abs(flag)
	case getenv("SUBLOG_HOME") != "":
		return filepath.Abs(getenv("SUBLOG_HOME"))
	case getenv("XDG_DATA_HOME") != "":
		return filepath.Join(getenv("XDG_DATA_HOME"), "sublog"), nil
	}
	h := getenv("HOME")
	if h == "" {
		return "", fmt.Errorf("home: cannot locate a home: set --home or $SUBLOG_HOME")
	}
	return filepath.Join(h, ".local", "share", "sublog"), nil
}

// Open opens an initialised home.
func Open(dir string) (*Home, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoHome, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	h := &Home{Dir: dir}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h.cfg); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	if h.cfg.Net == "" || !nameRE.MatchString(h.cfg.Default) {
		return nil, fmt.Errorf("%w: net and default must be set", ErrBadConfig)
	}
	return h, nil
}

// Init creates the home if needed and a new identity called name (the
// default identity if the home is new). It refuses to overwrite an identity.
func Init(dir, name string, rand io.Reader) (*Home, *key.Secret, error) {
	if name == "" {
		name = DefaultName
	}
	if !nameRE.MatchString(name) {
		return nil, nil, fmt.Errorf("%w: %q (use lowercase letters, digits, '.', '_', '-')", ErrBadName, name)
	}
	h, err := Open(dir)
	if errors.Is(err, ErrNoHome) {
		if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
			return nil, nil, fmt.Errorf("home: %w", err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("home: %w", err)
		}
		h = &Home{Dir: dir, cfg: Config{Net: card.DefaultNet, Default: name}}
		sk, err := h.CreateIdentity(name, rand)
		if err != nil {
			return nil, nil, err
		}
		if err := h.writeConfig(); err != nil {
			return nil, nil, err
		}
		return h, sk, nil
	}
	if err != nil {
		return nil, nil, err
	}
	sk, err := h.CreateIdentity(name, rand)
	return h, sk, err
}

func (h *Home) writeConfig() error {
	b, _ := json.MarshalIndent(h.cfg, "", "  ")
	return writeFileAtomic(filepath.Join(h.Dir, "config.json"), append(b, '\n'), 0o600, false)
}

// Net is the network identifier cards from this home carry.
func (h *Home) Net() string { return h.cfg.Net }

// DefaultIdentity is the name of the default identity.
func (h *Home) DefaultIdentity() string { return h.cfg.Default }

// Path returns HOME/sub, creating it (0700) for a subsystem's own state.
func (h *Home) Path(sub string) (string, error) {
	p := filepath.Join(h.Dir, sub)
	return p, os.MkdirAll(p, 0o700)
}

func (h *Home) keyPath(name string) string { return filepath.Join(h.Dir, "keys", name+".key") }

// CreateIdentity makes a new named identity.
func (h *Home) CreateIdentity(name string, rand io.Reader) (*key.Secret, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: %q (use lowercase letters, digits, '.', '_', '-')", ErrBadName, name)
	}
	sk, err := key.Generate(rand)
	if err != nil {
		return nil, err
	}
	content := keyHeader + hex.EncodeToString(sk.Seed()) + "\n"
	if err := writeFileAtomic(h.keyPath(name), []byte(content), 0o600, true); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %q", ErrExists, name)
		}
		return nil, err
	}
	return sk, nil
}

// Identity loads a named identity ("" is the default).
func (h *Home) Identity(name string) (*key.Secret, error) {
	if name == "" {
		name = h.cfg.Default
	}
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("%w: %q", ErrBadName, name)
	}
	p := h.keyPath(name)
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrNoID, name)
	}
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v", ErrKeyPerms, p, st.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	return ParseKeyFile(b)
}

// ParseKeyFile parses a key file strictly: the header, exactly 64 lowercase
// hex digits and one newline.
func ParseKeyFile(b []byte) (*key.Secret, error) {
	s := string(b)
	hexPart, ok := strings.CutPrefix(s, keyHeader)
	if !ok || !strings.HasSuffix(hexPart, "\n") {
		return nil, fmt.Errorf("%w: expected %q header and one line", ErrKeyFile, strings.TrimSpace(keyHeader))
	}
	hexPart = strings.TrimSuffix(hexPart, "\n")
	if len(hexPart) != 2*key.SeedSize || strings.ToLower(hexPart) != hexPart {
		return nil, fmt.Errorf("%w: seed must be %d lowercase hex digits", ErrKeyFile, 2*key.SeedSize)
	}
	seed, err := hex.DecodeString(hexPart)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return key.FromSeed(seed)
}

// Named is one identity of the home.
type Named struct {
	Name    string `json:"name"`
	ID      key.ID `json:"id"`
	Default bool   `json:"default"`
}

// Identities lists the home's identities by name.
func (h *Home) Identities() ([]Named, error) {
	ents, err := os.ReadDir(filepath.Join(h.Dir, "keys"))
	if err != nil {
		return nil, fmt.Errorf("home: %w", err)
	}
	var out []Named
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".key")
		if !ok || !nameRE.MatchString(name) {
			continue
		}
		sk, err := h.Identity(name)
		if err != nil {
			return nil, err
		}
		out = append(out, Named{Name: name, ID: sk.ID(), Default: name == h.cfg.Default})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// OpenStore opens the home's log store.
func (h *Home) OpenStore(o sublog.Options) (*sublog.Store, error) {
	if o.Caps == nil { // the home's capabilities: built-in plus learned (caps.go)
		set, err := h.Caps()
		if err != nil {
			return nil, err
		}
		o.Caps = set
	}
	return sublog.Open(filepath.Join(h.Dir, "store"), o)
}

// writeFileAtomic writes via a temporary file, syncs, and renames into
// place; with exclusive it refuses to replace an existing file.
func writeFileAtomic(path string, data []byte, mode os.FileMode, exclusive bool) error {
	if exclusive {
		if _, err := os.Lstat(path); err == nil {
			return fs.ErrExist
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("home: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("home: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("home: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("home: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	if exclusive {
		// Link fails if the name exists, so two inits cannot both win.
		if err := os.Link(tmp.Name(), path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fs.ErrExist
			}
			return fmt.Errorf("home: %w", err)
		}
		return syncDir(filepath.Dir(path))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("home: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("home: %w", err)
	}
	defer d.Close()
	_ = d.Sync() // best effort: some file systems refuse directory sync
	return nil
}
