package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/caps"
	lsync "github.com/sublog/sublog/sync"
)

// TestDefaultConfig: the commented default file parses to the documented
// defaults, and every key of Config appears in it.
func TestDefaultConfig(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Listen) != 1 || c.Listen[0] != "127.0.0.1:7411" || len(c.Roles) != 1 || c.Roles[0] != "host" ||
		c.Log.Format != "text" || c.Log.Level != "info" || c.Sync.Open ||
		time.Duration(c.Sync.BackoffMin) != 250*time.Millisecond || time.Duration(c.Sync.BackoffMax) != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	// The limits default to sync's own (those of `sublog serve`).
	if l, d := c.SyncLimits(), lsync.DefaultLimits(); l.MaxConnsPerSource != d.MaxConnsPerSource || l.MaxHalfOpen != d.MaxHalfOpen ||
		l.MaxHalfOpenPerSource != d.MaxHalfOpenPerSource || l.HandshakeTimeout != d.HandshakeTimeout || l.MaxLifetime != d.MaxLifetime ||
		l.BackoffMin != d.BackoffMin || l.BackoffMax != d.BackoffMax || l.MaxConns != 0 ||
		time.Duration(c.Limits.IdleTimeout) != lsync.DefaultTimeout {
		t.Fatalf("limits %+v, sync's defaults %+v", c.Limits, d)
	}
	if time.Duration(c.Blobs.GCInterval) != time.Hour || time.Duration(c.Blobs.GCGrace) != time.Hour {
		t.Fatalf("blobs: %+v", c.Blobs)
	}
	for _, k := range []string{"listen:", "roles:", "identity:", "log:", "format:", "level:", "sync:", "open:", "peers:",
		"backoff_min:", "backoff_max:", "discovery:", "relays:", "dns:", "limits:", "max_conns:", "max_conns_per_source:",
		"max_half_open:", "max_half_open_per_source:", "handshake_timeout:", "idle_timeout:", "max_lifetime:",
		"forged_backoff_min:", "forged_backoff_max:", "blobs:", "gc_interval:", "gc_grace:"} {
		if !strings.Contains(DefaultYAML, k) || !strings.Contains(c.YAML(), k) {
			t.Errorf("key %s missing from the default file or the printed config", k)
		}
	}
	// The printed config reads back as the same config.
	var back Config
	if err := ParseConfig([]byte(c.YAML()), &back); err != nil || back.YAML() != c.YAML() {
		t.Fatalf("round trip: %v\n%s\n%s", err, c.YAML(), back.YAML())
	}
}

// TestConfigRefusals: bad files are refused, naming what is wrong.
func TestConfigRefusals(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"roles: [host, dancer]\n", `unknown role "dancer"`},
		{"roles: [host, host]\n", "listed twice"},
		{"listen: [nowhere]\n", "listen"},
		{"listen: [127.0.0.1:99999]\n", "port must be"},
		{"log: {format: xml}\n", "log.format"},
		{"log: {level: loud}\n", "log.level"},
		{"sync: {backoff_min: 2s, backoff_max: 1s}\n", "backoff"},
		{"sync:\n  peers: [\"nobody@127.0.0.1:1\"]\n", "sync.peers"},
		{"sync: {peers: [sublog1.AAAA]}\n", "sync.peers"},
		{"colour: blue\n", "unknown field"},
		{"limits: {max_conns: -1}\n", "limits.max_conns must not be negative"},
		{"limits: {handshake_timeout: 0s}\n", "limits.handshake_timeout must be positive"},
		{"limits: {forged_backoff_min: 1h, forged_backoff_max: 1m}\n", "forged_backoff_min must be at most"},
		{"limits: {max_lifetime: soon}\n", "bad configuration"},
		{"blobs: {gc_interval: -1s}\n", "blobs.gc_interval"},
		{"roles: {a: 1}\n", "bad configuration"},
		{"listen: [\n", "bad configuration"},
	} {
		c := Default()
		err := ParseConfig([]byte(tc.yaml), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrBadConfig) && !errors.Is(err, ErrBadRole) {
			t.Errorf("%q: %v is not a config error", tc.yaml, err)
		}
	}
}

// TestWriteDefaultConfig: a home with no file gets the commented
// defaults; an existing file is never touched.
func TestWriteDefaultConfig(t *testing.T) {
	dir := t.TempDir()
	if wrote, err := WriteDefaultConfig(dir); err != nil || !wrote {
		t.Fatalf("first write: %v %v", wrote, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil || string(b) != DefaultYAML {
		t.Fatalf("written: %v\n%s", err, b)
	}
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte("roles: []\n"), 0o600)
	if wrote, err := WriteDefaultConfig(dir); err != nil || wrote {
		t.Fatalf("second write: %v %v", wrote, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ConfigFile)); string(b) != "roles: []\n" {
		t.Fatalf("an existing file was changed: %s", b)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadConfig(dir)
	if err != nil || c.YAML() != Default().YAML() {
		t.Fatalf("no file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte("roles: [host, relay]\nlisten: []\n"), 0o600)
	c, err = LoadConfig(dir)
	if err != nil || !c.Has("relay") || len(c.Listen) != 0 || c.Log.Format != "text" {
		t.Fatalf("file: %+v %v", c, err)
	}
}

// TestRoleSpecs: every role has a valid spec with a distinct cap ID, and
// the roles that serve strangers are the ones DESIGN §7 names.
func TestRoleSpecs(t *testing.T) {
	ids := map[string]bool{}
	for _, r := range caps.Roles {
		if err := r.Spec.Validate(); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
		if ids[r.Spec.ID()] {
			t.Errorf("%s: duplicate cap ID", r.Name)
		}
		ids[r.Spec.ID()] = true
		if r.Strangers != (r.Name == "signal" || r.Name == "relay") {
			t.Errorf("%s: strangers %v", r.Name, r.Strangers)
		}
	}
	if got := RoleIDs([]string{"relay", "host"}); len(got) != 2 || got[0] > got[1] {
		t.Fatalf("RoleIDs not sorted: %v", got)
	}
}

func TestBackoff(t *testing.T) {
	min, max := 100*time.Millisecond, 2*time.Second
	for n := range 20 {
		for range 50 {
			d := backoff(min, max, n)
			if d < min/2 || d > max {
				t.Fatalf("attempt %d: %v outside [%v, %v]", n, d, min/2, max)
			}
		}
	}
}
