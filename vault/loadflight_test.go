package vault

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// gatedStore holds every GetSecret until the gate opens, and counts them.
type gatedStore struct {
	storage.Store
	gets atomic.Int64
	gate chan struct{}
}

func (g *gatedStore) GetSecret(ctx context.Context, ws, name string) (storage.SecretRecord, error) {
	g.gets.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
		return storage.SecretRecord{}, ctx.Err()
	}
	return g.Store.GetSecret(ctx, ws, name)
}

// TestResolveColdCacheOneRead: 50 concurrent resolves of a secret not in
// the cache make one storage read, not 50 (issue 16: a batch of leased jobs
// on a cold cache read and decrypted the secret once per job); a resolver
// whose own context ends stops waiting, and one whose leader's context
// ended reads again.
func TestResolveColdCacheOneRead(t *testing.T) {
	gs := &gatedStore{Store: testStore(t), gate: make(chan struct{})}
	close(gs.gate)
	v := openVault(t, gs)
	ctx := context.Background()
	a := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, a, CreateSecretRequest{Name: "A", Value: PlaintextString("v1")}); err != nil {
		t.Fatal(err)
	}
	req := ResolveRequest{WorkspaceID: a.WorkspaceID, Name: "A", ActorID: a.KeyID}
	v.Invalidate(a.WorkspaceID, "A")
	gs.gate = make(chan struct{})
	gs.gets.Store(0)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 50 {
		wg.Go(func() {
			if r, err := v.Resolve(ctx, req); err != nil || string(r.Value.Bytes()) != "v1" {
				bad.Add(1)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for gs.gets.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the others reach the flight
	close(gs.gate)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d resolves failed", bad.Load())
	}
	if n := gs.gets.Load(); n != 1 {
		t.Fatalf("50 concurrent cold resolves made %d storage reads, want 1", n)
	}

	// The leader's context ends: a joiner reads again and succeeds.
	v.Invalidate(a.WorkspaceID, "A")
	gs.gate = make(chan struct{})
	gs.gets.Store(0)
	lctx, cancel := context.WithCancel(ctx)
	leaderDone := make(chan error, 1)
	go func() { _, err := v.Resolve(lctx, req); leaderDone <- err }()
	for gs.gets.Load() == 0 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(time.Millisecond)
	}
	joined := make(chan error, 1)
	go func() { _, err := v.Resolve(ctx, req); joined <- err }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-leaderDone; err == nil {
		t.Fatal("the canceled leader resolved")
	}
	close(gs.gate)
	if err := <-joined; err != nil {
		t.Fatalf("the joiner failed with its leader: %v", err)
	}
}
