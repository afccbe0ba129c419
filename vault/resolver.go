package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"rotor.sh/rotor/internal/jsonx"
	"rotor.sh/rotor/storage"
)

// ResolveRequest asks for one secret's plaintext on behalf of an outgoing
// request. It is a struct because callers add context over time (job ids,
// attempts) that ends up in the audit row.
type ResolveRequest struct {
	WorkspaceID string
	Name        string
	// ActorID is the API key id on whose behalf the value is resolved.
	ActorID string
	// Host is the destination host (no port). A secret with allowed_hosts
	// resolves only for a matching host; an empty Host matches none of them.
	Host string
	// Scheme ("http", "https") and Port of the destination; Port 0 is the
	// scheme's default. allowed_hosts entries without a port match the
	// default ports only (see NormalizeAllowedHosts).
	Scheme string
	Port   int
	// RequireAllowedHosts refuses secrets that have no allowed_hosts (an
	// egress gateway's policy).
	RequireAllowedHosts bool
	// RequestID ties the audit row to the request's log line.
	RequestID string
	// Extra audit input fields (job id, attempt, ...). Never values. The
	// audit writer reads it after Resolve returns: do not modify it then.
	Extra map[string]string
}

// Resolved is a resolved secret.
type Resolved struct {
	Name    string
	Version int64
	Value   Plaintext
	// CacheID names the vault's cached copy of Value (0: the value was not
	// cached). IDs are never reused; OnCacheDrop reports when the copy
	// leaves the cache (expiry, rotation, deletion, a keyring change), so
	// a caller may keep values derived from the plaintext exactly as long
	// as the vault keeps the plaintext itself.
	CacheID uint64
}

// Resolve returns a secret's current plaintext. Opened values are cached in
// memory, so the hot path costs neither a storage call nor a decryption; a
// rotation or deletion through this Vault invalidates the entry before it
// returns, so the next Resolve sees the change. Every call writes a
// secret.accessed (or secret.access_denied) audit event through the group
// committer, without waiting for it.
func (v *Vault) Resolve(ctx context.Context, req ResolveRequest) (Resolved, error) {
	if isReserved(req.Name) {
		return Resolved{}, fmt.Errorf("%w: %s", ErrNotFound, secretRef(req.Name))
	}
	if req.ActorID == "" || req.WorkspaceID == "" {
		// Every access row names who asked; no actor, no plaintext.
		return Resolved{}, fmt.Errorf("%w: resolve needs a workspace and an actor", ErrInvalidArgument)
	}
	// One clock read serves the cache's expiry check and, on a hit, the
	// row's time (the clock showed in a cached resolve's profile).
	now := v.now()
	e, hit := v.cache.getAt(req.WorkspaceID, req.Name, now)
	if !hit {
		var err error
		if e, err = v.load(ctx, req.WorkspaceID, req.Name); err != nil {
			if errors.Is(err, ErrNotFound) {
				v.metrics.resolutions.WithLabelValues(resultNotFound).Inc()
			} else {
				v.metrics.resolutions.WithLabelValues(resultError).Inc()
			}
			return Resolved{}, err
		}
		now = v.now() // after the read: the access is now
	}
	// The row is queued as fields; the writer encodes it (accessRecord).
	rec := accessRecord{
		at: now.UTC(), ws: req.WorkspaceID, actor: req.ActorID, eventType: EventSecretAccessed,
		name: req.Name, host: req.Host, requestID: req.RequestID, version: e.version, hasVersion: true, extra: req.Extra,
		hit: hit, // counted by the writer (accessRecord.hit)
	}
	if denial := deny(e, req); denial != "" {
		v.metrics.resolutions.WithLabelValues(resultDenied).Inc()
		rec.eventType, rec.reason, rec.hit = EventSecretAccessDenied, denial, false
		if err := v.audit.record(ctx, &rec); err != nil {
			return Resolved{}, err
		}
		if denial == denyNoAllowedHosts {
			return Resolved{}, fmt.Errorf("%w: %s has no allowed_hosts, and this proxy requires them", ErrHostNotAllowed, req.Name)
		}
		return Resolved{}, fmt.Errorf("%w: %s may not be sent to %q", ErrHostNotAllowed, req.Name, truncate(req.Host, 100))
	}
	if err := v.audit.record(ctx, &rec); err != nil {
		// No audit row, no plaintext.
		return Resolved{}, err
	}
	if !hit {
		v.metrics.resolvedMiss.Inc()
	}
	return Resolved{Name: req.Name, Version: e.version, Value: e.value, CacheID: e.id}, nil
}

// accessInputIn is the input of an access row, built on buf without
// reflection: this runs on every proxied secret.
func accessInputIn(buf []byte, host, requestID string, extra map[string]string) jsonx.Object {
	in := jsonx.Reuse(buf)
	in.Str("host", host)
	if requestID != "" {
		in.Str("request_id", requestID)
	}
	if len(extra) == 0 {
		return in // the proxy's rows: slices.Sorted(maps.Keys) allocated even for none
	}
	var kbuf [8]string // dispatch's rows have two keys
	keys := kbuf[:0]
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		in.Str(k, extra[k])
	}
	return in
}

// Reasons for secret.access_denied rows.
const (
	denyHost           = "host_not_allowed"
	denyNoAllowedHosts = "allowed_hosts_required"
	// DenyDestinationBlocked: the proxy resolved the request's secrets, then
	// refused to connect (the SSRF guard), so nothing was sent.
	DenyDestinationBlocked = "destination_blocked"
)

// DeniedDelivery says resolved secrets were not sent after all.
type DeniedDelivery struct {
	WorkspaceID string
	ActorID     string
	Names       []string
	Host        string
	RequestID   string
	Reason      string
	Extra       map[string]string
}

// RecordDenied writes one secret.access_denied row per name: the value
// was resolved (its secret.accessed row stands) but the request carrying
// it was refused before it left, for d.Reason.
func (v *Vault) RecordDenied(ctx context.Context, d DeniedDelivery) error {
	at := v.now().UTC()
	for _, name := range d.Names {
		rec := accessRecord{at: at, ws: d.WorkspaceID, actor: d.ActorID, eventType: EventSecretAccessDenied, name: name, host: d.Host, requestID: d.RequestID, reason: d.Reason, extra: d.Extra}
		if err := v.audit.record(ctx, &rec); err != nil {
			return err
		}
	}
	return nil
}

func deny(e cacheEntry, req ResolveRequest) string {
	switch {
	case req.RequireAllowedHosts && len(e.allowedHosts) == 0:
		return denyNoAllowedHosts
	case len(e.allowedHosts) > 0 && !destinationMatches(e.hosts, Destination{Scheme: req.Scheme, Host: req.Host, Port: req.Port}):
		return denyHost
	}
	return ""
}

// load reads and opens a secret, caching it unless it was invalidated while
// the read was in flight.
//
// Concurrent loads of one secret share a read (single flight): a batch of
// leased jobs meeting a cold or expired cache made one storage read and one
// decryption per job (issue 16). A load joins one in flight only if no
// invalidation came between their starts (same generation), so what it
// returns is what a read of its own would have; a joiner whose leader was
// canceled reads again under its own context.
func (v *Vault) load(ctx context.Context, ws, name string) (cacheEntry, error) {
	k := cacheKey{ws, name}
	for {
		gen := v.cache.generation()
		c := &v.cache.loads
		c.mu.Lock()
		if l, ok := c.m[k]; ok && l.gen == gen {
			c.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				return cacheEntry{}, ctx.Err()
			}
			if l.err != nil && (errors.Is(l.err, context.Canceled) || errors.Is(l.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue // the leader's context ended, not ours
			}
			return l.e, l.err
		}
		l := &loadCall{gen: gen, done: make(chan struct{})}
		if c.m == nil {
			c.m = map[cacheKey]*loadCall{}
		}
		c.m[k] = l
		c.mu.Unlock()
		l.e, l.err = v.loadOnce(ctx, ws, name, gen)
		c.mu.Lock()
		if c.m[k] == l {
			delete(c.m, k)
		}
		c.mu.Unlock()
		close(l.done)
		return l.e, l.err
	}
}

// loadCall is one load in flight (load).
type loadCall struct {
	gen  uint64
	done chan struct{}
	e    cacheEntry
	err  error
}

// loadOnce reads and opens a secret as of generation gen.
func (v *Vault) loadOnce(ctx context.Context, ws, name string, gen uint64) (cacheEntry, error) {
	rec, err := v.store.GetSecret(ctx, ws, name)
	if err != nil {
		return cacheEntry{}, mapStoreErr(err, secretRef(name))
	}
	pt, err := openValue(v.keys.lookup(ctx), binding{ws, name, rec.Version}, rec.Sealed)
	if err != nil {
		v.log.Error("secret failed to open", "workspace_id", ws, "secret", name, "version", rec.Version, "err", err)
		return cacheEntry{}, fmt.Errorf("secret %s: %w", name, err)
	}
	e := cacheEntry{version: rec.Version, value: pt, allowedHosts: rec.AllowedHosts, hosts: parseHostEntries(rec.AllowedHosts)}
	e.id = v.cache.putIfCurrent(ws, name, e, gen)
	return e, nil
}

// Invalidate drops a cached secret, for changes made elsewhere (another node).
func (v *Vault) Invalidate(workspaceID, name string) { v.cache.invalidate(workspaceID, name) }

// OnCacheDrop registers fn, called with the CacheID of every value that
// leaves the cache, after it has left (so CacheLive already reports it
// gone). fn runs on the goroutine that dropped it, with no vault lock
// held; it must not block.
func (v *Vault) OnCacheDrop(fn func(id uint64)) {
	v.cache.mu.Lock()
	v.cache.onDrop = append(v.cache.onDrop, fn)
	v.cache.mu.Unlock()
}

// CacheLive reports whether the value with this CacheID is still cached
// for ws and name (and not expired). A caller that stores something
// derived from the value checks it while holding the lock its OnCacheDrop
// function takes, so a drop is never missed.
func (v *Vault) CacheLive(ws, name string, id uint64) bool {
	e, ok := v.cache.get(ws, name)
	return ok && id != 0 && e.id == id
}

type cacheKey struct{ ws, name string }

type cacheEntry struct {
	// id is the entry's CacheID (never reused).
	id           uint64
	version      int64
	value        Plaintext
	allowedHosts []string
	// hosts is allowedHosts parsed (parseHostEntries), for deny.
	hosts []hostEntry
	// expires ends the entry's use (checked on the vault's clock); drop
	// removes it from memory at the same time, resolved again or not.
	expires time.Time
	drop    *time.Timer
}

// DefaultCacheTTL bounds how long an opened secret stays in memory: a
// change this node is not told about (another node, a lost notification) is
// seen within it, and a value nobody resolves leaves the heap's live set.
const DefaultCacheTTL = 5 * time.Minute

// cache holds opened secrets for ttl. Every invalidation bumps gen, and a
// load only stores its result if gen did not move while it read, so a value
// read before a rotation committed can never be cached after it.
type cache struct {
	mu      sync.RWMutex
	gen     uint64
	entries map[cacheKey]cacheEntry
	ttl     time.Duration
	now     func() time.Time
	lastID  uint64
	// onDrop are told the id of every entry removed (OnCacheDrop).
	onDrop []func(uint64)
	// loads are the loads in flight (Vault.load).
	loads struct {
		mu sync.Mutex
		m  map[cacheKey]*loadCall
	}
}

func newCache(ttl time.Duration, now func() time.Time) *cache {
	return &cache{entries: map[cacheKey]cacheEntry{}, ttl: ttl, now: now}
}

func (c *cache) get(ws, name string) (cacheEntry, bool) { return c.getAt(ws, name, c.now()) }

// getAt is get with the clock already read (now, from the cache's clock).
func (c *cache) getAt(ws, name string, now time.Time) (cacheEntry, bool) {
	c.mu.RLock()
	e, ok := c.entries[cacheKey{ws, name}]
	c.mu.RUnlock()
	if ok && !now.Before(e.expires) {
		return cacheEntry{}, false
	}
	return e, ok
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

func (c *cache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// putIfCurrent caches e unless the cache was invalidated since gen, and
// returns the entry's id (0: not cached).
func (c *cache) putIfCurrent(ws, name string, e cacheEntry, gen uint64) uint64 {
	c.mu.Lock()
	if c.gen != gen {
		c.mu.Unlock()
		return 0
	}
	k := cacheKey{ws, name}
	var dropped uint64
	if old, ok := c.entries[k]; ok {
		old.drop.Stop()
		dropped = old.id
	}
	c.lastID++
	e.id = c.lastID
	e.expires = c.now().Add(c.ttl)
	e.drop = time.AfterFunc(c.ttl, func() { c.expire(k, e.expires) })
	c.entries[k] = e
	fns := c.onDrop
	c.mu.Unlock()
	notifyDrop(fns, dropped)
	return e.id
}

// notifyDrop tells the OnCacheDrop functions, outside the cache's lock.
func notifyDrop(fns []func(uint64), ids ...uint64) {
	for _, id := range ids {
		if id == 0 {
			continue
		}
		for _, fn := range fns {
			fn(id)
		}
	}
}

// expire removes k if it is still the entry that expires at exp.
func (c *cache) expire(k cacheKey, exp time.Time) {
	c.mu.Lock()
	var dropped uint64
	if e, ok := c.entries[k]; ok && e.expires.Equal(exp) {
		delete(c.entries, k)
		dropped = e.id
	}
	fns := c.onDrop
	c.mu.Unlock()
	notifyDrop(fns, dropped)
}

func (c *cache) invalidate(ws, name string) {
	c.mu.Lock()
	c.gen++
	k := cacheKey{ws, name}
	var dropped uint64
	if e, ok := c.entries[k]; ok {
		e.drop.Stop()
		delete(c.entries, k)
		dropped = e.id
	}
	fns := c.onDrop
	c.mu.Unlock()
	notifyDrop(fns, dropped)
}

// WatchChanges keeps the cache and keyring current with changes made
// through other nodes sharing the store, until ctx ends. Run it beside any
// node that resolves secrets on a shared backend.
func (v *Vault) WatchChanges(ctx context.Context) error {
	return v.store.Changes(ctx, func(c storage.Change) {
		switch c.Kind {
		case storage.ChangeSecret:
			v.cache.invalidate(c.WorkspaceID, c.Name)
		case storage.ChangeKeyring:
			if err := v.keys.reload(ctx); err != nil && ctx.Err() == nil {
				v.log.Error("reloading the keyring after a change failed", "err", err)
			}
			// Also sent after a lost connection: drop everything.
			v.cache.clear()
		}
	})
}

func (c *cache) clear() {
	c.mu.Lock()
	c.gen++
	dropped := make([]uint64, 0, len(c.entries))
	for _, e := range c.entries {
		e.drop.Stop()
		dropped = append(dropped, e.id)
	}
	clear(c.entries)
	fns := c.onDrop
	c.mu.Unlock()
	notifyDrop(fns, dropped...)
}
