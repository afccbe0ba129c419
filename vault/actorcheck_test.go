package vault

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// countingKeyStore counts GetAPIKey reads; while gate is set, a read
// waits for it to close.
type countingKeyStore struct {
	storage.Store
	reads atomic.Int32
	gate  atomic.Pointer[chan struct{}]
}

func (s *countingKeyStore) GetAPIKey(ctx context.Context, id string) (storage.APIKey, error) {
	s.reads.Add(1)
	if g := s.gate.Load(); g != nil {
		<-*g
	}
	if err := ctx.Err(); err != nil { // as a backend honouring ctx would
		return storage.APIKey{}, err
	}
	return s.Store.GetAPIKey(ctx, id)
}

// TestActorActiveLeaderCancelled: the caller whose miss started the
// shared read gives up (its context cancelled) while another waits on the
// same read; the other still gets the key's verdict, not the first
// caller's cancellation.
func TestActorActiveLeaderCancelled(t *testing.T) {
	cs := &countingKeyStore{Store: testStore(t)}
	v := openVault(t, cs)
	op := bootstrap(t, v)
	member, _, err := v.CreateAPIKey(context.Background(), op, CreateAPIKeyRequest{Name: "worker", Role: RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	v.actors.mu.Lock()
	clear(v.actors.m)
	v.actors.mu.Unlock()
	before := cs.reads.Load()
	gate := make(chan struct{})
	cs.gate.Store(&gate)
	leaderCtx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() { leader <- v.ActorActive(leaderCtx, op.WorkspaceID, member.ID) }()
	for i := 0; i < 5000 && cs.reads.Load() == before; i++ {
		time.Sleep(time.Millisecond)
	}
	if cs.reads.Load() == before {
		t.Fatal("the first check never read the key")
	}
	waiter := make(chan error, 1)
	go func() { waiter <- v.ActorActive(context.Background(), op.WorkspaceID, member.ID) }()
	time.Sleep(20 * time.Millisecond) // the second check is waiting on the first's read
	cancel()
	cs.gate.Store(nil)
	close(gate)
	if err := <-waiter; err != nil {
		t.Fatalf("the waiting check got %v, want the key's verdict (active)", err)
	}
	<-leader
	if n := cs.reads.Load() - before; n != 1 {
		t.Fatalf("%d reads, want the one shared", n)
	}
}

// TestActorActive: the answers, the cache (one read for many checks, and
// for many concurrent checks of a cold key), and a revocation on this node
// taking effect at once.
func TestActorActive(t *testing.T) {
	ctx := context.Background()
	cs := &countingKeyStore{Store: testStore(t)}
	v := openVault(t, cs)
	op := bootstrap(t, v)
	member, _, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "worker", Role: RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	ws := op.WorkspaceID
	before := cs.reads.Load()
	// The first read is held until the others have had time to arrive:
	// each would read too if misses did not share one read.
	gate := make(chan struct{})
	cs.gate.Store(&gate)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() { errs <- v.ActorActive(ctx, ws, member.ID) })
	}
	for i := 0; i < 1000 && cs.reads.Load() == before; i++ {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	cs.gate.Store(nil)
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("active key: %v", err)
		}
	}
	if n := cs.reads.Load() - before; n != 1 {
		t.Fatalf("64 concurrent checks of a cold key read it %d times, want 1", n)
	}
	if err := v.ActorActive(ctx, "ws_other", member.ID); !errors.Is(err, ErrActorRevoked) {
		t.Fatalf("another workspace's job: %v", err)
	}
	if err := v.ActorActive(ctx, ws, "key_00000000deadbeef"); !errors.Is(err, ErrActorRevoked) {
		t.Fatalf("unknown key: %v", err)
	}
	if n := cs.reads.Load() - before; n != 2 {
		t.Fatalf("%d reads, want 2 (one per key id)", n)
	}
	if err := v.RevokeAPIKey(ctx, op, member.ID); err != nil {
		t.Fatal(err)
	}
	if err := v.ActorActive(ctx, ws, member.ID); !errors.Is(err, ErrActorRevoked) {
		t.Fatalf("revoked on this node, still active: %v", err)
	}
}

// TestAttackRevokeDuringActorCheck: a check that read the key just before
// it was revoked on this node must not cache it as active afterwards
// (the queued jobs of the key would be sent for actorCacheTTL).
func TestAttackRevokeDuringActorCheck(t *testing.T) {
	ctx := context.Background()
	ps := &pausingKeyStore{Store: testStore(t), read: make(chan struct{}), release: make(chan struct{})}
	v := openVault(t, ps)
	op := bootstrap(t, v)
	victim, _, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "leaked", Role: RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	ps.mu.Lock()
	ps.armed = true
	ps.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- v.ActorActive(ctx, op.WorkspaceID, victim.ID) }()
	select {
	case <-ps.read:
	case <-time.After(10 * time.Second):
		t.Fatal("the check never read the key")
	}
	if err := v.RevokeAPIKey(ctx, op, victim.ID); err != nil {
		t.Fatal(err)
	}
	close(ps.release)
	if err := <-done; err != nil {
		t.Fatalf("the in-flight check started before the revocation and may pass: %v", err)
	}
	if err := v.ActorActive(ctx, op.WorkspaceID, victim.ID); !errors.Is(err, ErrActorRevoked) {
		t.Fatalf("revoked key still active on the node that revoked it: %v", err)
	}
}

// BenchmarkActorActiveCached is the dispatcher's per-attempt cost of the
// enqueuer check once the key is cached (every attempt but one per key
// each actorCacheTTL).
func BenchmarkActorActiveCached(b *testing.B) {
	ctx := context.Background()
	v := openVault(b, testStore(b))
	op := bootstrap(b, v)
	if err := v.ActorActive(ctx, op.WorkspaceID, op.KeyID); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := v.ActorActive(ctx, op.WorkspaceID, op.KeyID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
