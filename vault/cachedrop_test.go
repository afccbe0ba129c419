package vault

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestCacheDropReported: a caller keeping values derived from a cached
// plaintext (the proxy's scrubbers) is told when the plaintext leaves the
// cache, on invalidation (rotation) and on expiry, and CacheLive agrees;
// an id is never reused, so a new copy is never mistaken for the old.
func TestCacheDropReported(t *testing.T) {
	ctx := context.Background()
	v, err := Open(ctx, Options{Store: testStore(t), MasterKey: GenerateMasterKey(), CacheTTL: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(ctx) })
	var mu sync.Mutex
	var dropped []uint64
	v.OnCacheDrop(func(id uint64) { mu.Lock(); dropped = append(dropped, id); mu.Unlock() })
	wasDropped := func(id uint64) bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(dropped, id) }
	op := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, op, CreateSecretRequest{Name: "TOKEN", Value: PlaintextString("first")}); err != nil {
		t.Fatal(err)
	}
	resolve := func() uint64 {
		t.Helper()
		r, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: op.WorkspaceID, Name: "TOKEN", ActorID: op.KeyID})
		if err != nil {
			t.Fatal(err)
		}
		return r.CacheID
	}
	id1 := resolve()
	if id1 == 0 || resolve() != id1 || !v.CacheLive(op.WorkspaceID, "TOKEN", id1) {
		t.Fatalf("cache ids: first %d, live %v", id1, v.CacheLive(op.WorkspaceID, "TOKEN", id1))
	}
	v.Invalidate(op.WorkspaceID, "TOKEN")
	if !wasDropped(id1) || v.CacheLive(op.WorkspaceID, "TOKEN", id1) {
		t.Fatalf("invalidation: dropped %v, live %v", dropped, v.CacheLive(op.WorkspaceID, "TOKEN", id1))
	}
	id2 := resolve()
	if id2 == 0 || id2 == id1 {
		t.Fatalf("the reloaded copy has id %d (the dropped one had %d)", id2, id1)
	}
	for deadline := time.Now().Add(10 * time.Second); !wasDropped(id2) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !wasDropped(id2) || v.CacheLive(op.WorkspaceID, "TOKEN", id2) {
		t.Fatalf("expiry was not reported (dropped %v)", dropped)
	}
}
