package vault

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"rotor.sh/rotor/storage"
)

// Queued jobs act for the API key that enqueued them, long after that key's
// request was authenticated. ActorActive answers "may this key still act
// for this workspace?" for each delivery attempt without a storage read per
// job (issue 16's dispatch rate): answers are cached per key id for
// actorCacheTTL, concurrent misses for one key share one read, and a
// revocation made through this process clears the cache at once. One made
// through another node is seen within actorCacheTTL, as for Authenticate.
const (
	actorCacheTTL = authCacheTTL
	actorCacheMax = authCacheMax
	// actorLookupTimeout bounds the one read that concurrent misses of a
	// key share. The read does not end with the context of the caller that
	// started it: the others waiting on it would get that caller's
	// cancellation as their answer ("could not tell").
	actorLookupTimeout = 10 * time.Second
)

type actorStatus struct {
	ws     string
	active bool
	exp    time.Time
}

// actorLookup is one storage read that concurrent callers wait for.
type actorLookup struct {
	done chan struct{}
	st   actorStatus
	err  error
}

// actorCache: like authCache, every clear bumps gen and a read caches its
// answer only if gen did not move meanwhile, so a read that saw the key
// just before a revocation cannot cache it as active after it.
type actorCache struct {
	mu       sync.RWMutex
	gen      uint64
	m        map[string]actorStatus
	inflight map[string]*actorLookup
}

func (c *actorCache) clear() {
	c.mu.Lock()
	c.gen++
	c.m, c.inflight = nil, nil
	c.mu.Unlock()
}

func (s actorStatus) verdict(workspaceID, keyID string) error {
	if !s.active || s.ws != workspaceID {
		return fmt.Errorf("%w: API key %s", ErrActorRevoked, keyID)
	}
	return nil
}

// ActorActive returns nil when keyID is an active API key of workspaceID;
// an error wrapping ErrActorRevoked when it is revoked, unknown or another
// workspace's; any other error when storage could not tell.
func (v *Vault) ActorActive(ctx context.Context, workspaceID, keyID string) error {
	c := &v.actors
	now := v.now()
	c.mu.RLock()
	s, ok := c.m[keyID]
	c.mu.RUnlock()
	if ok && now.Before(s.exp) {
		return s.verdict(workspaceID, keyID)
	}
	c.mu.Lock()
	if s, ok := c.m[keyID]; ok && now.Before(s.exp) {
		c.mu.Unlock()
		return s.verdict(workspaceID, keyID)
	}
	l, waiting := c.inflight[keyID]
	if !waiting {
		l = &actorLookup{done: make(chan struct{})}
		if c.inflight == nil {
			c.inflight = make(map[string]*actorLookup)
		}
		c.inflight[keyID] = l
	}
	gen := c.gen
	c.mu.Unlock()
	if waiting {
		select {
		case <-l.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		v.lookupActor(ctx, keyID, l, gen, now)
	}
	if l.err != nil {
		return l.err
	}
	return l.st.verdict(workspaceID, keyID)
}

func (v *Vault) lookupActor(ctx context.Context, keyID string, l *actorLookup, gen uint64, now time.Time) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), actorLookupTimeout)
	defer cancel()
	rec, err := v.store.GetAPIKey(rctx, keyID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		l.st = actorStatus{exp: now.Add(actorCacheTTL)}
	case err != nil:
		l.err = err
	default:
		l.st = actorStatus{ws: rec.WorkspaceID, active: rec.RevokedAt == nil, exp: now.Add(actorCacheTTL)}
	}
	c := &v.actors
	c.mu.Lock()
	if c.inflight[keyID] == l {
		delete(c.inflight, keyID)
	}
	if l.err == nil && c.gen == gen {
		if c.m == nil || len(c.m) >= actorCacheMax {
			c.m = make(map[string]actorStatus)
		}
		c.m[keyID] = l.st
	}
	c.mu.Unlock()
	close(l.done)
}

// Refusal is an audit row for work refused on behalf of an actor (a job
// not sent because its enqueuing key was revoked): event type, resource,
// the host it would have gone to, the reason, and extra input fields
// (never values).
type Refusal struct {
	WorkspaceID  string
	ActorID      string
	EventType    string
	ResourceType string
	ResourceID   string
	Host         string
	Reason       string
	Extra        map[string]string
}

// RecordRefusal queues r's audit row with the access rows (group commit,
// signed like them). ErrAuditUnavailable when the backlog is at its bound:
// the caller should not finish the work unrecorded.
func (v *Vault) RecordRefusal(ctx context.Context, r Refusal) error {
	return v.audit.record(ctx, &accessRecord{at: v.now().UTC(), ws: r.WorkspaceID, actor: r.ActorID, eventType: r.EventType,
		resType: r.ResourceType, name: r.ResourceID, host: r.Host, reason: r.Reason, extra: r.Extra})
}
