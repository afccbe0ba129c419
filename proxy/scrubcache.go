package proxy

import (
	"slices"
	"sync"
	"sync/atomic"
)

// scrubCacheMax bounds the scrubbers kept (a distinct set of resolved
// values each); past it one is dropped per insertion.
const scrubCacheMax = 512

// scrubKeyLen is the most secrets a cached scrubber covers; requests
// resolving more build theirs (rare, and then the build is the lesser
// cost).
const scrubKeyLen = 4

// scrubKey is the vault CacheIDs of a request's resolved values, in the
// order they were resolved (the order sets which reference replaces a
// form two values share). Unused slots are 0, which no cached value has.
type scrubKey [scrubKeyLen]uint64

// scrubCache keeps the scrubber (every form of each value and the
// automaton over them) of each set of resolved values, so a request
// resolving the same secrets as an earlier one builds nothing. It holds
// plaintext in derived forms, so an entry lives no longer than the vault's
// cached copy of each of its values: the vault reports every value that
// leaves its cache (expiry, rotation, deletion, keyring change) and the
// entries using it are dropped at once; an entry is stored only if all its
// values are still cached, checked under the lock the drop takes, so a
// value dropped during a build is never stored.
//
// Entries are dropped, not zeroed: a request in flight may still be
// scanning with one, as it may still hold the plaintext itself (the vault
// does not zero its dropped copies either).
type scrubCache struct {
	mu      sync.Mutex
	entries map[scrubKey]*scrubEntry
	// byID lists the keys using each value.
	byID map[uint64][]scrubKey
	// last is the entry get found last (nil: none, or it was removed):
	// read without the lock, so the usual case, requests resolving the
	// same secrets one after the other, takes neither the mutex (shared by
	// every request, on every core) nor a map look-up. Set and cleared only
	// under mu, and only to an entry in entries, so it never outlives its
	// entry's removal: a get that loaded it just before a drop is one that
	// took the lock just before it.
	last atomic.Pointer[scrubEntry]
}

// scrubEntry is a cached scrubber and its key (for last).
type scrubEntry struct {
	k  scrubKey
	sc *scrubber
}

func newScrubCache() *scrubCache {
	return &scrubCache{entries: map[scrubKey]*scrubEntry{}, byID: map[uint64][]scrubKey{}}
}

func (c *scrubCache) get(k scrubKey) *scrubber {
	if e := c.last.Load(); e != nil && e.k == k {
		return e.sc
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		return nil
	}
	c.last.Store(e)
	return e.sc
}

// put stores sc under k if live (called under c.mu) still holds.
func (c *scrubCache) put(k scrubKey, sc *scrubber, live func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; ok || !live() {
		return
	}
	if len(c.entries) >= scrubCacheMax {
		for old := range c.entries {
			c.remove(old)
			break
		}
	}
	c.entries[k] = &scrubEntry{k, sc}
	for _, id := range k {
		if id != 0 {
			c.byID[id] = append(c.byID[id], k)
		}
	}
}

// drop removes every entry using the value id (vault.OnCacheDrop).
func (c *scrubCache) drop(id uint64) {
	c.mu.Lock()
	for len(c.byID[id]) > 0 {
		c.remove(c.byID[id][0])
	}
	delete(c.byID, id)
	c.mu.Unlock()
}

// remove deletes k and its back references (called under c.mu).
func (c *scrubCache) remove(k scrubKey) {
	delete(c.entries, k)
	if e := c.last.Load(); e != nil && e.k == k {
		c.last.Store(nil)
	}
	for _, id := range k {
		if id == 0 {
			continue
		}
		keys := slices.DeleteFunc(c.byID[id], func(x scrubKey) bool { return x == k })
		if len(keys) == 0 {
			delete(c.byID, id)
		} else {
			c.byID[id] = keys
		}
	}
}

func (c *scrubCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
