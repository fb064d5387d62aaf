package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	stdsync "sync"
	"time"

	"github.com/sublog/sublog/log/key"
)

// CacheVersion is the version of the cache file format.
const CacheVersion = 1

// Cache keeps resolution results with their expiry, and for each identity
// the newest PKARR timestamp ever verified (kept after the result expires,
// so a relay can never roll an identity back to an older packet). It is a
// JSON file in the home, written atomically with mode 0600. A nil *Cache
// caches nothing.
type Cache struct {
	path string
	mu   stdsync.Mutex
	f    cacheFile
}

type cacheFile struct {
	Version int                    `json:"version"`
	Entries map[string]*CacheEntry `json:"entries"`
}

// CacheEntry is what the cache holds for one identity.
type CacheEntry struct {
	Addr    string    `json:"addr,omitempty"`    // the address that last proved the identity
	Source  string    `json:"source,omitempty"`  // where the hint came from
	Profile string    `json:"profile,omitempty"` // capability profile card ID, if the hint named one
	Proven  time.Time `json:"proven,omitzero"`   // when the address proved the identity
	Expires time.Time `json:"expires,omitzero"`  // after this the result is not used
	PkarrTS uint64    `json:"pkarr_ts,omitempty"`
}

// OpenCache loads the cache at path (an absent file is an empty cache). A
// damaged file is reported, not silently replaced.
func OpenCache(path string) (*Cache, error) {
	c := &Cache{path: path, f: cacheFile{Version: CacheVersion, Entries: map[string]*CacheEntry{}}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery cache: %w", err)
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != CacheVersion || f.Entries == nil {
		return nil, fmt.Errorf("discovery cache %s is damaged (version %d): %v; remove it to start afresh", path, f.Version, err)
	}
	for k := range f.Entries {
		if _, err := key.ParseID(k); err != nil {
			return nil, fmt.Errorf("discovery cache %s is damaged: %v", path, err)
		}
	}
	c.f = f
	return c, nil
}

// Lookup returns a copy of the entry for id ("ok" false when absent).
func (c *Cache) Lookup(id key.ID) (CacheEntry, bool) {
	if c == nil {
		return CacheEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.f.Entries[id.String()]
	if e == nil {
		return CacheEntry{}, false
	}
	return *e, true
}

func (c *Cache) entry(id key.ID) *CacheEntry {
	e := c.f.Entries[id.String()]
	if e == nil {
		e = &CacheEntry{}
		c.f.Entries[id.String()] = e
	}
	return e
}

// SeePacket records a verified PKARR timestamp for id, keeping the newest.
func (c *Cache) SeePacket(id key.ID, ts uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entry(id); ts > e.PkarrTS {
		e.PkarrTS = ts
	}
}

// Remember stores a proven result.
func (c *Cache) Remember(id key.ID, addr, source, profile string, proven, expires time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(id)
	e.Addr, e.Source, e.Profile, e.Proven, e.Expires = addr, source, profile, proven.UTC(), expires.UTC()
}

// Forget drops a result (keeping the PKARR timestamp).
func (c *Cache) Forget(id key.ID) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.f.Entries[id.String()]; e != nil {
		*e = CacheEntry{PkarrTS: e.PkarrTS}
	}
}

// Save writes the cache atomically (temporary file, fsync, rename).
func (c *Cache) Save() error {
	if c == nil || c.path == "" {
		return nil
	}
	c.mu.Lock()
	b, err := json.MarshalIndent(c.f, "", "  ")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("discovery cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".cache-*.tmp")
	if err != nil {
		return fmt.Errorf("discovery cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err != nil {
		return fmt.Errorf("discovery cache: %w", err)
	}
	return nil
}
