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
// default. `sublog config --default` prints it and `sublog init` writes it.
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
