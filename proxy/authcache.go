package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"rotor.sh/rotor/vault"
)

// Failed keys are remembered briefly, so a client retrying with a wrong,
// revoked or expired key costs a map lookup, not a storage round trip
// each time (through the plugin, under `rotor serve`). Bounded and short:
//   - keyed by the key's SHA-256, so no presented key is kept;
//   - at most negCacheMax entries; when full, expired ones go, and if none
//     has, the cache starts over: a flood of random keys costs what it did
//     without the cache (one lookup each), never more;
//   - only ErrUnauthenticated is remembered (not storage errors), for
//     negCacheTTL: a key created after it failed here works within that
//     time, and a refused key stays refused, as it would anyway.
const (
	negCacheTTL = 2 * time.Second
	negCacheMax = 4096
)

type negCache struct {
	mu sync.Mutex
	m  map[[32]byte]negEntry
}

type negEntry struct {
	until time.Time
	err   error
}

func (c *negCache) get(sum [32]byte, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[sum]
	if !ok {
		return nil
	}
	if now.After(e.until) {
		delete(c.m, sum)
		return nil
	}
	return e.err
}

func (c *negCache) put(sum [32]byte, err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[32]byte]negEntry)
	}
	if len(c.m) >= negCacheMax {
		for k, e := range c.m {
			if now.After(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= negCacheMax {
			clear(c.m)
		}
	}
	c.m[sum] = negEntry{until: now.Add(negCacheTTL), err: err}
}

// authKey is vault.Authenticate behind the negative cache.
func (p *Proxy) authKey(ctx context.Context, key string) (vault.Actor, error) {
	sum := sha256.Sum256([]byte(key))
	now := time.Now()
	if err := p.neg.get(sum, now); err != nil {
		return vault.Actor{}, err
	}
	a, err := p.vault.Authenticate(ctx, key)
	if err != nil && errors.Is(err, vault.ErrUnauthenticated) {
		p.neg.put(sum, err, now)
	}
	return a, err
}
