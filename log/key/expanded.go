package key

import (
	"container/list"
	"sync"

	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// expandedCacheSize bounds the cache of expanded public keys: each entry
// is about 1.5 KiB, so the cache holds at most about 6 MiB.
const expandedCacheSize = 4096

// expandedCache is a least-recently-used cache of expanded public keys
// (the precomputed multiples of -A that make each verification cheaper),
// safe for concurrent use. An expansion is a pure function of the key
// bytes, so a cached entry can never change a verdict, only its cost.
type expandedCache struct {
	mu  sync.Mutex
	max int
	m   map[[IDSize]byte]*list.Element
	lru list.List // front = most recently used; values are *expandedEntry
}

type expandedEntry struct {
	id  [IDSize]byte
	epk *ed25519.ExpandedPublicKey
}

var expanded = newExpandedCache(expandedCacheSize)

func newExpandedCache(max int) *expandedCache {
	return &expandedCache{max: max, m: make(map[[IDSize]byte]*list.Element, max)}
}

// get returns id's expansion, computing it (outside the lock) on a miss.
func (c *expandedCache) get(id [IDSize]byte) (*ed25519.ExpandedPublicKey, error) {
	c.mu.Lock()
	if e, ok := c.m[id]; ok {
		c.lru.MoveToFront(e)
		epk := e.Value.(*expandedEntry).epk
		c.mu.Unlock()
		return epk, nil
	}
	c.mu.Unlock()
	epk, err := ed25519.NewExpandedPublicKey(id[:])
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[id]; ok { // another goroutine expanded it meanwhile
		c.lru.MoveToFront(e)
		return e.Value.(*expandedEntry).epk, nil
	}
	c.m[id] = c.lru.PushFront(&expandedEntry{id: id, epk: epk})
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*expandedEntry).id)
	}
	return epk, nil
}

// len reports the number of cached expansions (for tests).
func (c *expandedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
