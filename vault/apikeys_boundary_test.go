package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// Limits and checks of API keys that mutation testing (issue 13) found
// unpinned: each is tried at, just under and just over its value.

func TestActorCanUnknownRole(t *testing.T) {
	for _, a := range []Actor{{Role: RoleOperator}, {Role: RoleAdmin}, {Role: RoleMember}, {Role: ""}} {
		for _, role := range []string{"", "root", "Operator"} {
			if a.Can(role) {
				t.Errorf("%q.Can(%q) = true: an unknown role is never granted", a.Role, role)
			}
		}
	}
	if !(Actor{Role: RoleAdmin}).Can(RoleAdmin) || (Actor{Role: RoleAdmin}).Can(RoleOperator) || !(Actor{Role: RoleOperator}).Can(RoleMember) {
		t.Fatal("role order broken")
	}
}

func TestKeyIDOf(t *testing.T) {
	hashID := func(k string) string {
		s := sha256.Sum256([]byte(k))
		return keyIDPrefix + hex.EncodeToString(s[:])[:keyIDHexLen]
	}
	const id = "0123456789abcdef"
	for key, want := range map[string]string{
		keyPrefix + id + "_x":                  keyIDPrefix + id,
		keyPrefix + id + "_":                   hashID(keyPrefix + id + "_"), // no secret part
		keyPrefix + id:                         hashID(keyPrefix + id),
		keyPrefix + id[:15] + "_x":             hashID(keyPrefix + id[:15] + "_x"),
		keyPrefix + "0123456789abcdeg_x":       hashID(keyPrefix + "0123456789abcdeg_x"),
		"an operator-chosen bootstrap key 123": hashID("an operator-chosen bootstrap key 123"),
	} {
		if got := keyIDOf(key); got != want {
			t.Errorf("keyIDOf(%q) = %q, want %q", key, got, want)
		}
	}
	if got := keyIDOf("x"); len(got) != len(keyIDPrefix)+keyIDHexLen {
		t.Errorf("hash-derived id %q has the wrong length", got)
	}
}

// TestBootstrapKeyAtMaxLength: an operator-chosen key of exactly
// maxAPIKeyLen characters is accepted by Bootstrap and by Authenticate.
func TestBootstrapKeyAtMaxLength(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	key := strings.Repeat("k", maxAPIKeyLen)
	if _, err := v.Bootstrap(ctx, key); err != nil {
		t.Fatal(err)
	}
	a, err := v.Authenticate(ctx, key)
	if err != nil || a.Role != RoleOperator {
		t.Fatalf("a %d-character key: %+v, %v", len(key), a, err)
	}
	if _, err := v.Authenticate(ctx, key+"k"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a %d-character key: %v", len(key)+1, err)
	}
}

// TestFailedAuthenticationNotCached: a wrong key fails every time (a
// failure must never be cached as the empty actor).
func TestFailedAuthenticationNotCached(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	bootstrap(t, v)
	for i := range 3 {
		a, err := v.Authenticate(ctx, "rtr_0123456789abcdef_wrongwrongwrongwrongwrongwrongwrongwrong123")
		if !errors.Is(err, ErrUnauthenticated) || a != (Actor{}) {
			t.Fatalf("attempt %d: %+v, %v", i, a, err)
		}
	}
}

func TestAuthCacheBound(t *testing.T) {
	var c authCache
	now := time.Now()
	k := func(i int) (h [sha256.Size]byte) { h[0], h[1], h[2] = byte(i), byte(i>>8), byte(i>>16); return h }
	for i := range authCacheMax {
		c.putIfCurrent(k(i), Actor{KeyID: "a"}, now, 0)
	}
	if len(c.m) != authCacheMax {
		t.Fatalf("cache holds %d entries, want %d", len(c.m), authCacheMax)
	}
	if _, _, ok := c.get(k(0), now); !ok {
		t.Fatal("first entry gone before the bound")
	}
	c.putIfCurrent(k(authCacheMax), Actor{KeyID: "b"}, now, 0)
	if len(c.m) != 1 {
		t.Fatalf("past the bound the cache holds %d entries, want 1 (started over)", len(c.m))
	}
	if e, _, ok := c.get(k(authCacheMax), now); !ok || e.actor.KeyID != "b" {
		t.Fatal("newest entry missing")
	}
	if _, _, ok := c.get(k(authCacheMax), now.Add(authCacheTTL+time.Second)); ok {
		t.Fatal("entry outlived its TTL")
	}
}

func TestAPIKeyNameLength(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	op := bootstrap(t, v)
	for n, ok := range map[int]bool{0: false, 1: true, maxKeyNameLen: true, maxKeyNameLen + 1: false} {
		_, _, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: strings.Repeat("n", n), Role: RoleMember})
		if (err == nil) != ok || err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("name of %d characters: %v, want ok=%v", n, err, ok)
		}
	}
}

// TestRevokeNeedsAdminAndTakesEffect: a member cannot revoke, an admin's
// revocation stops the key at once.
func TestRevokeNeedsAdminAndTakesEffect(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	op := bootstrap(t, v)
	rec, key, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "m", Role: RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	member, err := v.Authenticate(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.RevokeAPIKey(ctx, member, op.KeyID); !errors.Is(err, ErrForbidden) {
		t.Fatalf("member revoking: %v, want ErrForbidden", err)
	}
	if _, err := v.Authenticate(ctx, key); err != nil {
		t.Fatalf("refused revocation changed something: %v", err)
	}
	if err := v.RevokeAPIKey(ctx, op, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Authenticate(ctx, key); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked key: %v", err)
	}
}

func TestListAPIKeysNeedsAdmin(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	op := bootstrap(t, v)
	_, key, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "m", Role: RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	member, err := v.Authenticate(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := v.ListAPIKeys(ctx, member); !errors.Is(err, ErrForbidden) || keys != nil {
		t.Fatalf("member listing keys: %d keys, %v", len(keys), err)
	}
	if keys, err := v.ListAPIKeys(ctx, op); err != nil || len(keys) != 2 {
		t.Fatalf("operator listing keys: %d keys, %v", len(keys), err)
	}
}

// TestLastOperatorKeyKept: the workspace's only active operator key cannot
// be revoked, even by another operator-role actor; once a second operator
// key exists, it can.
func TestLastOperatorKeyKept(t *testing.T) {
	ctx := context.Background()
	v, _ := testVault(t)
	op := bootstrap(t, v)
	other := Actor{KeyID: "key_another_node", WorkspaceID: op.WorkspaceID, Role: RoleOperator}
	if err := v.RevokeAPIKey(ctx, other, op.KeyID); !errors.Is(err, ErrConflict) {
		t.Fatalf("revoking the last operator key: %v, want ErrConflict", err)
	}
	if _, _, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "op2", Role: RoleOperator}); err != nil {
		t.Fatal(err)
	}
	if err := v.RevokeAPIKey(ctx, other, op.KeyID); err != nil {
		t.Fatalf("revoking one of two operator keys: %v", err)
	}
}
