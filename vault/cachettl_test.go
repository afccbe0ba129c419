package vault

import (
	"context"
	"sync"
	"testing"
	"time"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestCacheEntriesExpire: a resolved value may not stay in memory (and in
// use) for ever. A change made where this node hears nothing of it (another
// node on a store without change notifications) is seen once the entry's
// lifetime ends, and rotation through this node still drops it at once.
func TestCacheEntriesExpire(t *testing.T) {
	ctx := context.Background()
	store := testStore(t)
	master := GenerateMasterKey()
	clock := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	v, err := Open(ctx, Options{Store: store, MasterKey: master, Now: clock.now, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(ctx) })
	other, err := Open(ctx, Options{Store: store, MasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close(ctx) })
	op := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, op, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("first")}); err != nil {
		t.Fatal(err)
	}
	resolve := func() string {
		t.Helper()
		r, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: op.WorkspaceID, Name: "TOKEN", ActorID: op.KeyID})
		if err != nil {
			t.Fatal(err)
		}
		return string(r.Value.Bytes())
	}
	if got := resolve(); got != "first" {
		t.Fatalf("got %q", got)
	}
	if _, err := other.UpdateSecret(ctx, op, UpdateSecretRequest{Name: "TOKEN", Value: new(PlaintextString("second"))}); err != nil {
		t.Fatal(err)
	}
	if got := resolve(); got != "first" {
		t.Fatalf("within the lifetime the cached value serves: got %q", got)
	}
	clock.advance(time.Minute + time.Second)
	if got := resolve(); got != "second" {
		t.Fatalf("after the cache lifetime the old value still served (%q)", got)
	}
	// Rotation through this node: dropped at once, whatever the lifetime.
	if _, err := v.UpdateSecret(ctx, op, UpdateSecretRequest{Name: "TOKEN", Value: new(PlaintextString("third"))}); err != nil {
		t.Fatal(err)
	}
	if got := resolve(); got != "third" {
		t.Fatalf("after a rotation here: %q", got)
	}
	if n := v.cache.len(); n != 1 {
		t.Fatalf("%d cache entries", n)
	}
	// The entry leaves memory when its lifetime ends, resolved again or not
	// (the real-time timer; the TTL here is short).
	v2, err := Open(ctx, Options{Store: store, MasterKey: master, CacheTTL: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v2.Close(ctx) })
	if _, err := v2.Resolve(ctx, ResolveRequest{WorkspaceID: op.WorkspaceID, Name: "TOKEN", ActorID: op.KeyID}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for v2.cache.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("an expired entry stayed in memory")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSigningWithoutRotationReadsNoStore: a delivery's credential lookups
// (callback secret, signing secret, no previous one) are served from the
// cache after the first, including the absence of a previous signing key.
func TestSigningWithoutRotationReadsNoStore(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: testStore(t)}
	v := openVault(t, store)
	op := bootstrap(t, v)
	if _, _, err := v.EnsureCallbackCredentials(ctx, op.WorkspaceID); err != nil {
		t.Fatal(err)
	}
	req := CredentialRequest{WorkspaceID: op.WorkspaceID, Host: "hooks.example.com"}
	if _, err := v.SigningSecrets(ctx, req); err != nil {
		t.Fatal(err)
	}
	before := store.gets.Load()
	for range 10 {
		keys, err := v.SigningSecrets(ctx, req)
		if err != nil || len(keys) != 1 {
			t.Fatalf("%d keys, %v", len(keys), err)
		}
		if _, err := v.CallbackSecret(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.gets.Load() - before; n != 0 {
		t.Fatalf("%d storage reads for 10 deliveries", n)
	}
	// A rotation with grace is seen at once (the negative entry dropped).
	if _, err := v.RotateCallback(ctx, op, RotateCallbackRequest{Grace: time.Hour, Only: RotateSigning}); err != nil {
		t.Fatal(err)
	}
	if keys, _ := v.SigningSecrets(ctx, req); len(keys) != 2 {
		t.Fatalf("%d keys after a rotation with grace", len(keys))
	}
}
