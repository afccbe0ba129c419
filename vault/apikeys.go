package vault

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"rotor.sh/rotor/storage"
)

// Roles, from least to most privileged. A member manages and uses secrets
// and reads the audit trail; an admin also manages the workspace's API keys;
// an operator (the bootstrap key) also creates workspaces and rotates the
// keyring, which is shared by all workspaces.
const (
	RoleMember   = "member"
	RoleAdmin    = "admin"
	RoleOperator = "operator"
)

var roleRank = map[string]int{RoleMember: 1, RoleAdmin: 2, RoleOperator: 3}

// Actor is an authenticated API key: who is acting, in which workspace.
type Actor struct {
	KeyID       string
	WorkspaceID string
	Role        string
}

// Can reports whether the actor's role is at least role.
func (a Actor) Can(role string) bool { return roleRank[a.Role] >= roleRank[role] && roleRank[role] > 0 }

func (a Actor) require(role string) error {
	if !a.Can(role) {
		return fmt.Errorf("%w: this needs an API key with the %s role", ErrForbidden, role)
	}
	return nil
}

// API keys look like rtr_<16 hex id>_<43 base64url secret>. The id part is
// the key id (key_<16 hex>), public and used as audit actor_id; the secret
// part is 256 random bits. Only SHA-256 of the whole key is stored: a fast
// hash is right for a high-entropy key, and compared in constant time.
const (
	keyPrefix       = "rtr_"
	keyIDPrefix     = "key_"
	keyIDHexLen     = 16
	maxAPIKeyLen    = 512
	minBootstrapLen = 20
	maxKeyNameLen   = 100
)

func newAPIKey() (id, key string) {
	idb := make([]byte, keyIDHexLen/2)
	sec := make([]byte, 32)
	_, _ = rand.Read(idb)
	_, _ = rand.Read(sec)
	idHex := hex.EncodeToString(idb)
	return keyIDPrefix + idHex, keyPrefix + idHex + "_" + base64.RawURLEncoding.EncodeToString(sec)
}

// keyIDOf returns the id of a presented key: the embedded id for keys Rotor
// made, a hash-derived id for operator-chosen bootstrap keys.
func keyIDOf(key string) string {
	if rest, ok := strings.CutPrefix(key, keyPrefix); ok && len(rest) > keyIDHexLen+1 && rest[keyIDHexLen] == '_' {
		if _, err := hex.DecodeString(rest[:keyIDHexLen]); err == nil {
			return keyIDPrefix + rest[:keyIDHexLen]
		}
	}
	sum := sha256.Sum256([]byte(key))
	return keyIDPrefix + hex.EncodeToString(sum[:keyIDHexLen/2])
}

func hashKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// dummyHash keeps the unknown-id path doing the same comparison work.
var dummyHash = hashKey("rotor-no-such-key")

// Authenticated keys are cached briefly, so the proxy's per-request check
// costs no storage read. A revocation through this process clears the
// cache at once; one made through another node is seen within authCacheTTL.
const (
	authCacheTTL = 10 * time.Second
	authCacheMax = 10000
)

// Every clear bumps gen, and a check stores its answer only if gen did not
// move while it read the store: a check that read the key just before a
// revocation must not cache the key as valid after it.
type authCache struct {
	mu sync.RWMutex
	// gen is written under mu and read without it by StampValid.
	gen atomic.Uint64
	m   map[[sha256.Size]byte]authEntry
}

type authEntry struct {
	actor Actor
	exp   time.Time
}

// get returns the cached entry for h and the generation it belongs to
// (every entry in m is of the current one: clear empties m).
func (c *authCache) get(h [sha256.Size]byte, now time.Time) (authEntry, uint64, bool) {
	c.mu.RLock()
	e, ok := c.m[h]
	gen := c.gen.Load()
	c.mu.RUnlock()
	if !ok || now.After(e.exp) {
		return authEntry{}, 0, false
	}
	return e, gen, true
}

func (c *authCache) generation() uint64 { return c.gen.Load() }

func (c *authCache) putIfCurrent(h [sha256.Size]byte, a Actor, now time.Time, gen uint64) {
	c.mu.Lock()
	if c.gen.Load() != gen {
		c.mu.Unlock()
		return
	}
	if c.m == nil || len(c.m) >= authCacheMax {
		c.m = make(map[[sha256.Size]byte]authEntry)
	}
	c.m[h] = authEntry{actor: a, exp: now.Add(authCacheTTL)}
	c.mu.Unlock()
}

func (c *authCache) clear() {
	c.mu.Lock()
	c.gen.Add(1)
	c.m = nil
	c.mu.Unlock()
}

// Authenticate checks a presented API key and returns its actor.
func (v *Vault) Authenticate(ctx context.Context, key string) (Actor, error) {
	a, _, err := v.AuthenticateStamped(ctx, key)
	return a, err
}

// AuthStamp vouches for a successful authentication for a while: as long as
// StampValid holds, the same key would authenticate to the same actor from
// the cache. A caller that sees one key again and again (the proxy, for
// the requests inside an intercepted tunnel) keeps the stamp instead of
// hashing and looking the key up per request. It ends when the cached
// answer would (at most authCacheTTL after the key was read from storage)
// and at once when a key is revoked through this vault, as the cache does.
type AuthStamp struct {
	gen   uint64
	until time.Time
}

// AuthenticateStamped is Authenticate with the stamp of its answer (the
// zero stamp, never valid, on failure).
func (v *Vault) AuthenticateStamped(ctx context.Context, key string) (Actor, AuthStamp, error) {
	if key == "" {
		return Actor{}, AuthStamp{}, fmt.Errorf("%w: missing API key", ErrUnauthenticated)
	}
	if len(key) > maxAPIKeyLen {
		return Actor{}, AuthStamp{}, fmt.Errorf("%w: invalid API key", ErrUnauthenticated)
	}
	sum := KeySum(key)
	now := time.Now()
	if e, gen, ok := v.auth.get(sum, now); ok {
		return e.actor, AuthStamp{gen: gen, until: e.exp}, nil
	}
	gen := v.auth.generation()
	a, err := v.authenticate(ctx, key)
	if err != nil {
		return a, AuthStamp{}, err
	}
	v.auth.putIfCurrent(sum, a, now, gen)
	// Read before a revocation that raced the read: gen moved, and the
	// stamp is void at once (as putIfCurrent did not cache it).
	return a, AuthStamp{gen: gen, until: now.Add(authCacheTTL)}, nil
}

// KeySum is the SHA-256 of key, hashed from a stack copy: converting a key
// longer than 32 bytes to []byte allocated on every request the proxy
// authenticates.
func KeySum(key string) [sha256.Size]byte {
	if len(key) > maxAPIKeyLen {
		return sha256.Sum256([]byte(key))
	}
	var buf [maxAPIKeyLen]byte
	return sha256.Sum256(buf[:copy(buf[:], key)])
}

// StampValid reports whether s still vouches for its key at now.
func (v *Vault) StampValid(s AuthStamp, now time.Time) bool {
	return !s.until.IsZero() && now.Before(s.until) && s.gen == v.auth.gen.Load()
}

func (v *Vault) authenticate(ctx context.Context, key string) (Actor, error) {
	rec, err := v.store.GetAPIKey(ctx, keyIDOf(key))
	if errors.Is(err, storage.ErrNotFound) {
		subtle.ConstantTimeCompare(hashKey(key), dummyHash)
		return Actor{}, fmt.Errorf("%w: invalid API key", ErrUnauthenticated)
	}
	if err != nil {
		return Actor{}, err
	}
	if subtle.ConstantTimeCompare(hashKey(key), rec.Hash) != 1 {
		return Actor{}, fmt.Errorf("%w: invalid API key", ErrUnauthenticated)
	}
	if rec.RevokedAt != nil {
		return Actor{}, fmt.Errorf("%w: API key %s was revoked", ErrUnauthenticated, rec.ID)
	}
	return Actor{KeyID: rec.ID, WorkspaceID: rec.WorkspaceID, Role: rec.Role}, nil
}

// CreateAPIKeyRequest is the input of CreateAPIKey.
type CreateAPIKeyRequest struct {
	Name string
	Role string
}

func validateKeyName(name string) error {
	if name == "" || len(name) > maxKeyNameLen {
		return fmt.Errorf("%w: name must be 1 to %d characters", ErrInvalidArgument, maxKeyNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: name must be printable text", ErrInvalidArgument)
		}
	}
	return nil
}

// CreateAPIKey makes a new key in the actor's workspace and returns it; the
// key itself is shown only here. Needs admin; the new key's role may not
// exceed the actor's.
func (v *Vault) CreateAPIKey(ctx context.Context, actor Actor, req CreateAPIKeyRequest) (storage.APIKey, string, error) {
	if err := actor.require(RoleAdmin); err != nil {
		return storage.APIKey{}, "", err
	}
	if req.Role == "" {
		req.Role = RoleMember
	}
	if roleRank[req.Role] == 0 {
		return storage.APIKey{}, "", fmt.Errorf("%w: role must be one of member, admin, operator", ErrInvalidArgument)
	}
	if !actor.Can(req.Role) {
		return storage.APIKey{}, "", fmt.Errorf("%w: cannot create a key with a higher role than your own", ErrForbidden)
	}
	if err := validateKeyName(req.Name); err != nil {
		return storage.APIKey{}, "", err
	}
	id, key := newAPIKey()
	rec := storage.APIKey{ID: id, WorkspaceID: actor.WorkspaceID, Name: req.Name, Role: req.Role, Hash: hashKey(key), CreatedAt: v.now().UTC()}
	ev := v.event(actor, EventAPIKeyCreated, ResourceAPIKey, id, map[string]any{"name": req.Name, "role": req.Role}, nil)
	if err := v.store.CreateAPIKey(ctx, storage.CreateAPIKeyArgs{Key: rec, Audit: []storage.AuditEvent{ev}}); err != nil {
		return storage.APIKey{}, "", mapStoreErr(err, "API key "+id)
	}
	return rec, key, nil
}

// ListAPIKeys lists the actor's workspace keys (hashes included; callers
// must not show them). Needs admin.
func (v *Vault) ListAPIKeys(ctx context.Context, actor Actor) ([]storage.APIKey, error) {
	if err := actor.require(RoleAdmin); err != nil {
		return nil, err
	}
	return v.store.ListAPIKeys(ctx, actor.WorkspaceID)
}

// RevokeAPIKey revokes a key of the actor's workspace. Needs admin, and a
// role at least the target key's (member < admin < operator), so an admin
// cannot take away the only keys that create workspaces and rotate the
// keyring. The last active operator key cannot be revoked (ErrConflict),
// and a key cannot revoke itself, so a workspace is not locked out by
// accident.
func (v *Vault) RevokeAPIKey(ctx context.Context, actor Actor, id string) error {
	if err := actor.require(RoleAdmin); err != nil {
		return err
	}
	// Serialises this node's revocations, so two operator keys revoking each
	// other here cannot both pass the last-operator check. Across nodes the
	// window is one store round trip (docs/security.md).
	v.revokeMu.Lock()
	defer v.revokeMu.Unlock()
	target, err := v.store.GetAPIKey(ctx, id)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (target.WorkspaceID != actor.WorkspaceID || target.RevokedAt != nil)) {
		return fmt.Errorf("%w: active API key %q", ErrNotFound, truncate(id, 80))
	}
	if err != nil {
		return err
	}
	if !actor.Can(target.Role) {
		return fmt.Errorf("%w: a key cannot revoke a key with a higher role than its own (%s)", ErrForbidden, target.Role)
	}
	if target.Role == RoleOperator {
		if err := v.keepOneOperator(ctx, target); err != nil {
			return err
		}
	}
	if id == actor.KeyID {
		return fmt.Errorf("%w: a key cannot revoke itself; use another admin key", ErrInvalidArgument)
	}
	ev := v.event(actor, EventAPIKeyRevoked, ResourceAPIKey, id, nil, nil)
	err = v.store.RevokeAPIKey(ctx, storage.RevokeAPIKeyArgs{WorkspaceID: actor.WorkspaceID, ID: id, At: v.now(), Audit: []storage.AuditEvent{ev}})
	v.auth.clear()
	v.actors.clear()
	return mapStoreErr(err, fmt.Sprintf("active API key %q", id))
}

// keepOneOperator refuses to revoke target when it is the last active
// operator key: without one, nobody can create workspaces or rotate the
// keyring again short of a new bootstrap.
func (v *Vault) keepOneOperator(ctx context.Context, target storage.APIKey) error {
	keys, err := v.store.ListAPIKeys(ctx, target.WorkspaceID)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.ID != target.ID && k.Role == RoleOperator && k.RevokedAt == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is the last operator key; create another operator key before revoking it", ErrConflict, target.ID)
}
