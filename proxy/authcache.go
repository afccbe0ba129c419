package proxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

// authKeyStamped is vault.AuthenticateStamped behind the negative cache.
func (p *Proxy) authKeyStamped(ctx context.Context, key string) (vault.Actor, vault.AuthStamp, error) {
	sum := vault.KeySum(key)
	now := time.Now()
	if err := p.neg.get(sum, now); err != nil {
		return vault.Actor{}, vault.AuthStamp{}, err
	}
	a, stamp, err := p.vault.AuthenticateStamped(ctx, key)
	if err != nil && errors.Is(err, vault.ErrUnauthenticated) {
		p.neg.put(sum, err, now)
	}
	return a, stamp, err
}

// tunnelAuth is an intercepted tunnel's standing authentication: the
// vault's stamp of the key's last successful check. Every request inside
// the tunnel is still checked (a revoked key closes open tunnels), but
// while the stamp holds the check is a clock and a counter read, not two
// SHA-256s of the key, a lock and two map lookups (issue 15); the stamp
// ends when the vault's cached answer would and at once on a revocation
// through this vault (vault.AuthStamp).
type tunnelAuth struct {
	stamp atomic.Pointer[vault.AuthStamp]
}

// recheck authenticates a tunnel's key for one of its requests (a session
// without standing authentication is checked in full each time).
func (p *Proxy) recheck(ctx context.Context, s *session, now time.Time) error {
	if s.auth == nil {
		_, _, err := p.authKeyStamped(ctx, s.key)
		return err
	}
	if st := s.auth.stamp.Load(); st != nil && p.vault.StampValid(*st, now) {
		return nil
	}
	_, stamp, err := p.authKeyStamped(ctx, s.key)
	if err != nil {
		s.auth.stamp.Store(nil)
		return err
	}
	s.auth.stamp.Store(&stamp)
	return nil
}

// connAuth remembers, per lane connection, the last Proxy-Authorization
// that authenticated and the session it gave: a client sends the same
// header on every request of a keep-alive connection, and while the
// vault's stamp of that answer holds (vault.AuthStamp: until the cached
// answer would expire, and not past a revocation through this vault),
// the same header gives the same session without decoding it and hashing
// the key twice (issue 15). Only a key's own answer is kept: the sidecar's
// default workspace and the dispatcher's internal token (whose session
// depends on other headers) are never remembered. Owned by the
// connection's goroutine.
type connAuth struct {
	header string
	sess   session
	stamp  vault.AuthStamp
}
