package node

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/key"
	lsync "github.com/sublog/sublog/sync"
	"github.com/sublog/sublog/sync/discovery"
	"github.com/sublog/sublog/ui"
)

// ConfigFile is the instance's settings file in the home.
const ConfigFile = "instance.yaml"

// Errors of the configuration.
var (
	ErrBadConfig = errors.New("node: bad configuration")
	ErrBadRole   = errors.New("node: unknown role")
)

// Config is what `sublog up` runs with: the file HOME/instance.yaml, then
// the flags of `sublog up` over it. Every key, its meaning and its default
// is in DefaultYAML.
type Config struct {
	// Listen are the TCP addresses (host:port) the sync server listens on.
	// Empty: no listener (the instance only dials out).
	Listen []string `yaml:"listen" json:"listen"`
	// Roles switched on: host, service, signal, relay, proxy.
	Roles []string `yaml:"roles" json:"roles"`
	// Identity is the home identity the instance acts as ("" = default).
	Identity string `yaml:"identity" json:"identity"`
	Log      struct {
		Format string `yaml:"format" json:"format"` // text | json
		Level  string `yaml:"level" json:"level"`   // debug | info | warn | error
	} `yaml:"log" json:"log"`
	Sync struct {
		// Open also serves peers that are on none of the home's lists.
		Open bool `yaml:"open" json:"open"`
		// Peers are address hints for identities the instance talks to:
		// "IDENTITY@HOST:PORT" or a sublog1. token.
		Peers []string `yaml:"peers" json:"peers"`
		// BackoffMin and BackoffMax bound the reconnect delay (capped
		// exponential with full jitter).
		BackoffMin Duration `yaml:"backoff_min" json:"backoff_min"`
		BackoffMax Duration `yaml:"backoff_max" json:"backoff_max"`
	} `yaml:"sync" json:"sync"`
	Discovery struct {
		Relays []string `yaml:"relays" json:"relays"` // PKARR relay base URLs
		DNS    []string `yaml:"dns" json:"dns"`       // domains with _sublog TXT hints
	} `yaml:"discovery" json:"discovery"`
	// Limits bound what sync peers may cost the instance: the listener's
	// admission (as `sublog serve`'s flags of the same names), the live
	// links' lifetime and idle rounds, the backoff after a forged card.
	Limits struct {
		MaxConns             int      `yaml:"max_conns" json:"max_conns"` // 0: the fd limit less 48, at most 64
		MaxConnsPerSource    int      `yaml:"max_conns_per_source" json:"max_conns_per_source"`
		MaxHalfOpen          int      `yaml:"max_half_open" json:"max_half_open"`
		MaxHalfOpenPerSource int      `yaml:"max_half_open_per_source" json:"max_half_open_per_source"`
		HandshakeTimeout     Duration `yaml:"handshake_timeout" json:"handshake_timeout"`
		IdleTimeout          Duration `yaml:"idle_timeout" json:"idle_timeout"`
		MaxLifetime          Duration `yaml:"max_lifetime" json:"max_lifetime"`
		ForgedBackoffMin     Duration `yaml:"forged_backoff_min" json:"forged_backoff_min"`
		ForgedBackoffMax     Duration `yaml:"forged_backoff_max" json:"forged_backoff_max"`
	} `yaml:"limits" json:"limits"`
	// Blobs: automatic collection of blobs no stored card names.
	Blobs struct {
		GCInterval Duration `yaml:"gc_interval" json:"gc_interval"`
		GCGrace    Duration `yaml:"gc_grace" json:"gc_grace"`
	} `yaml:"blobs" json:"blobs"`
	UI struct {
		// Listen is the status page's loopback address ("" = off).
		Listen string `yaml:"listen" json:"listen"`
	} `yaml:"ui" json:"ui"`
}

// Duration is a time.Duration written as "500ms", "1m".
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() ([]byte, error) { return []byte(d.String()), nil }

// MarshalText writes the duration as text (JSON too).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "500ms".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// DefaultYAML is the commented default configuration: every key with its
// default. `sublog config --default` prints it, and `sublog up` writes it to
// the home when the home has no configuration file.
const DefaultYAML = `# sublog instance configuration (sublog up). Every key is shown with its
# default; flags of 'sublog up' override the file. 'sublog config' prints the
# effective configuration.

# TCP addresses (host:port) the sync server listens on. [] = dial out only.
listen: [127.0.0.1:7411]

# Roles this instance runs: host (run peers under this home's grants),
# service (reconcile this owner's services), signal (PKARR relay and DHT
# publishing), relay (blind data relay), proxy (local services as peers).
# signal and relay serve strangers and are never on unless listed here.
roles: [host]

# The home identity the instance acts as ("" = the home's default).
identity: ""

log:
  format: text   # text | json (log/slog lines on stderr)
  level: info    # debug | info | warn | error

sync:
  # Also serve peers on none of the home's lists (they see only their own logs).
  open: false
  # Address hints for identities this instance keeps sessions with (trusted,
  # followed, own devices): "IDENTITY@HOST:PORT" or a sublog1. token.
  peers: []
  # Reconnect delay: capped exponential backoff with full jitter.
  backoff_min: 250ms
  backoff_max: 1m0s

discovery:
  relays: []   # PKARR relay base URLs peers are resolved through
  dns: []      # domains with _sublog TXT hints

# What sync peers may cost this instance (the listener admits like
# 'sublog serve'; see ARCHITECTURE.md, Sync, "Bounds").
limits:
  max_conns: 0                  # accepted connections in all; 0 = fd limit less 48, at most 64
  max_conns_per_source: 8       # accepted connections from one source address
  max_half_open: 32             # connections still in the handshake, in all
  max_half_open_per_source: 4   # the same from one source
  handshake_timeout: 10s        # a peer not through the handshake by then is dropped
  idle_timeout: 30s             # a round making no progress this long drops the link
  max_lifetime: 1h0m0s          # a live link this old is closed (the dialling side reconnects)
  forged_backoff_min: 1s        # a peer that sent a forged card is refused this long,
  forged_backoff_max: 10m0s     #   doubling with each one up to this

blobs:
  gc_interval: 1h0m0s   # how often blobs no stored card names are collected (0s = never)
  gc_grace: 1h0m0s      # an unnamed blob younger than this stays (a fetch before its grant)

ui:
  # The status page: a loopback address only (127.0.0.1, [::1] or localhost;
  # port 0 picks a free one); "" = off. 'sublog up' prints its link with a
  # fresh access token, 'sublog ui' prints it again.
  listen: 127.0.0.1:0
`

// Default is the configuration with no file and no flags.
func Default() Config {
	var c Config
	if err := yaml.Unmarshal([]byte(DefaultYAML), &c); err != nil {
		panic("node: DefaultYAML: " + err.Error())
	}
	return c
}

// LoadConfig reads HOME/instance.yaml over the defaults (a missing file is
// the defaults) and validates it.
func LoadConfig(homeDir string) (Config, error) {
	c := Default()
	b, err := os.ReadFile(filepath.Join(homeDir, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return c, c.Validate()
	}
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	if err := ParseConfig(b, &c); err != nil {
		return c, err
	}
	return c, nil
}

// WriteDefaultConfig writes the commented default configuration
// (DefaultYAML) to HOME/instance.yaml if the home has none, and tells
// whether it did. An existing file is never touched.
func WriteDefaultConfig(homeDir string) (bool, error) {
	f, err := os.OpenFile(filepath.Join(homeDir, ConfigFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = f.WriteString(DefaultYAML)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return false, err
	}
	return true, nil
}

// ParseConfig decodes YAML over c strictly (unknown keys are errors) and
// validates the result.
func ParseConfig(b []byte, c *Config) error {
	if len(bytes.TrimSpace(b)) > 0 {
		if err := yaml.NewDecoder(bytes.NewReader(b), yaml.Strict()).Decode(c); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBadConfig, ConfigFile, err)
		}
	}
	return c.Validate()
}

// Validate checks every key.
func (c *Config) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrBadConfig}, a...)...) }
	for _, a := range c.Listen {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return bad("listen: %v", err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return bad("listen: %q: port must be 0..65535 (0 picks a free one)", a)
		}
		_ = host
	}
	seen := map[string]bool{}
	for _, r := range c.Roles {
		if _, ok := RoleSpec(r); !ok {
			return fmt.Errorf("%w %q (roles are %s)", ErrBadRole, r, strings.Join(RoleNames(), ", "))
		}
		if seen[r] {
			return bad("role %q listed twice", r)
		}
		seen[r] = true
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format %q: want text or json", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Sync.BackoffMin <= 0 || c.Sync.BackoffMax < c.Sync.BackoffMin {
		return bad("sync.backoff_min must be positive and at most sync.backoff_max")
	}
	l := c.Limits
	for _, f := range []struct {
		name string
		v    int
	}{{"max_conns", l.MaxConns}, {"max_conns_per_source", l.MaxConnsPerSource},
		{"max_half_open", l.MaxHalfOpen}, {"max_half_open_per_source", l.MaxHalfOpenPerSource}} {
		if f.v < 0 {
			return bad("limits.%s must not be negative", f.name)
		}
	}
	for _, f := range []struct {
		name string
		v    Duration
	}{{"handshake_timeout", l.HandshakeTimeout}, {"idle_timeout", l.IdleTimeout}, {"max_lifetime", l.MaxLifetime},
		{"forged_backoff_min", l.ForgedBackoffMin}, {"forged_backoff_max", l.ForgedBackoffMax}} {
		if f.v <= 0 {
			return bad("limits.%s must be positive", f.name)
		}
	}
	if l.ForgedBackoffMax < l.ForgedBackoffMin {
		return bad("limits.forged_backoff_min must be at most limits.forged_backoff_max")
	}
	if c.Blobs.GCInterval < 0 || c.Blobs.GCGrace < 0 {
		return bad("blobs.gc_interval and blobs.gc_grace must not be negative")
	}
	for _, p := range c.Sync.Peers {
		if _, err := parseHint(p, time.Now()); err != nil {
			return bad("sync.peers: %v", err)
		}
	}
	if c.UI.Listen != "" {
		if err := ui.CheckListen(c.UI.Listen); err != nil {
			return bad("ui.listen: %v", err)
		}
	}
	return nil
}

// hint is one configured address hint.
type hint struct {
	id    key.ID
	addr  string // set for IDENTITY@HOST:PORT
	token string // set for a token
}

func parseHint(s string, now time.Time) (hint, error) {
	if strings.HasPrefix(s, "sublog1.") {
		t, err := discovery.DecodeToken(s, now)
		if err != nil {
			return hint{}, err
		}
		return hint{id: t.ID(), token: s}, nil
	}
	i := strings.IndexByte(s, '@')
	if i < 0 {
		return hint{}, fmt.Errorf("%q: want IDENTITY@HOST:PORT or a sublog1. token", s)
	}
	id, err := key.ParseID(s[:i])
	if err != nil {
		return hint{}, fmt.Errorf("%q: %v", s, err)
	}
	if err := discovery.CheckAddr(s[i+1:]); err != nil {
		return hint{}, fmt.Errorf("%q: %v", s, err)
	}
	return hint{id: id, addr: s[i+1:]}, nil
}

// RoleNames are the known roles, in DESIGN §7's order.
func RoleNames() []string {
	var out []string
	for _, r := range caps.Roles {
		out = append(out, r.Name)
	}
	return out
}

// RoleSpec is a role's cap spec.
func RoleSpec(name string) (caps.Spec, bool) {
	for _, r := range caps.Roles {
		if r.Name == name {
			return r.Spec, true
		}
	}
	return caps.Spec{}, false
}

// RoleIDs are the cap IDs of the roles, sorted.
func RoleIDs(roles []string) []string {
	var out []string
	for _, r := range roles {
		if s, ok := RoleSpec(r); ok {
			out = append(out, s.ID())
		}
	}
	slices.Sort(out)
	return out
}

// SyncLimits are the sync limits the configuration sets.
func (c *Config) SyncLimits() lsync.Limits {
	l := c.Limits
	return lsync.Limits{MaxConns: l.MaxConns, MaxConnsPerSource: l.MaxConnsPerSource, MaxHalfOpen: l.MaxHalfOpen,
		MaxHalfOpenPerSource: l.MaxHalfOpenPerSource, HandshakeTimeout: time.Duration(l.HandshakeTimeout),
		MaxLifetime: time.Duration(l.MaxLifetime), BackoffMin: time.Duration(l.ForgedBackoffMin),
		BackoffMax: time.Duration(l.ForgedBackoffMax)}
}

// Has reports whether role r is on.
func (c *Config) Has(r string) bool { return slices.Contains(c.Roles, r) }

// YAML is the configuration as YAML.
func (c Config) YAML() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Sprintf("# error: %v\n", err)
	}
	return string(b)
}
