package vault

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// pausingKeyStore is the real bbolt store with one seam: while armed, the
// next GetAPIKey reads the record and then waits for release before
// returning it, so a test can land a revocation between an authentication's
// storage read and its cache write.
type pausingKeyStore struct {
	storage.Store
	mu      sync.Mutex
	armed   bool
	read    chan struct{}
	release chan struct{}
}

func (s *pausingKeyStore) GetAPIKey(ctx context.Context, id string) (storage.APIKey, error) {
	rec, err := s.Store.GetAPIKey(ctx, id)
	s.mu.Lock()
	armed := s.armed
	s.armed = false
	s.mu.Unlock()
	if armed {
		close(s.read)
		select {
		case <-s.release:
		case <-time.After(10 * time.Second):
		}
	}
	return rec, err
}

// TestAttackRevokeDuringAuthenticate: a request authenticating with a key
// while that key is revoked on the same node must not leave the key cached
// as valid. docs/security.md: "Revoked keys stop working at once on the node
// that revoked them". Before the fix, the in-flight check wrote its stale
// (unrevoked) answer into the cache after the revocation had cleared it, and
// the revoked key kept working for the cache's 10 s.
func TestAttackRevokeDuringAuthenticate(t *testing.T) {
	ctx := context.Background()
	ps := &pausingKeyStore{Store: testStore(t), read: make(chan struct{}), release: make(chan struct{})}
	v := openVault(t, ps)
	op := bootstrap(t, v)
	admin, _, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "admin", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	_, victimKey, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "leaked", Role: RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	adminActor := Actor{KeyID: admin.ID, WorkspaceID: admin.WorkspaceID, Role: admin.Role}

	ps.mu.Lock()
	ps.armed = true
	ps.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := v.Authenticate(ctx, victimKey)
		done <- err
	}()
	select {
	case <-ps.read:
	case <-time.After(10 * time.Second):
		t.Fatal("the authentication never read the key")
	}
	victimID := keyIDOf(victimKey)
	if err := v.RevokeAPIKey(ctx, adminActor, victimID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	close(ps.release)
	if err := <-done; err != nil {
		t.Fatalf("the in-flight check started before the revocation and may pass: %v", err)
	}
	if _, err := v.Authenticate(ctx, victimKey); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked key still authenticates on the node that revoked it (err %v)", err)
	}
}

// TestAuthStampEndsOnRevoke: a stamp vouches for its key until the cached
// answer would expire, and not a moment past a revocation on this node,
// including one that raced the read the stamp came from (the proxy keeps
// stamps per intercepted tunnel instead of re-hashing the key per request).
func TestAuthStampEndsOnRevoke(t *testing.T) {
	ctx := context.Background()
	ps := &pausingKeyStore{Store: testStore(t), read: make(chan struct{}), release: make(chan struct{})}
	v := openVault(t, ps)
	op := bootstrap(t, v)
	admin, _, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "admin", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	adminActor := Actor{KeyID: admin.ID, WorkspaceID: admin.WorkspaceID, Role: admin.Role}
	_, keyA, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "a", Role: RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	_, keyB, err := v.CreateAPIKey(ctx, op, CreateAPIKeyRequest{Name: "b", Role: RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	if v.StampValid(AuthStamp{}, time.Now()) {
		t.Fatal("the zero stamp is valid")
	}
	_, fresh, err := v.AuthenticateStamped(ctx, keyA) // read from storage
	if err != nil {
		t.Fatal(err)
	}
	_, cached, err := v.AuthenticateStamped(ctx, keyA) // from the cache
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if !v.StampValid(fresh, now) || !v.StampValid(cached, now) {
		t.Fatal("a new stamp is not valid")
	}
	if v.StampValid(cached, now.Add(authCacheTTL+time.Second)) {
		t.Fatal("a stamp outlives the cached answer")
	}
	if _, bad, err := v.AuthenticateStamped(ctx, "rtr_nope_nope"); err == nil || v.StampValid(bad, now) {
		t.Fatalf("a failed check gave a valid stamp (err %v)", err)
	}

	// A read that raced a revocation: its stamp is void.
	ps.mu.Lock()
	ps.armed = true
	ps.mu.Unlock()
	type res struct {
		s   AuthStamp
		err error
	}
	done := make(chan res, 1)
	go func() {
		_, s, err := v.AuthenticateStamped(ctx, keyB)
		done <- res{s, err}
	}()
	select {
	case <-ps.read:
	case <-time.After(10 * time.Second):
		t.Fatal("the authentication never read the key")
	}
	if err := v.RevokeAPIKey(ctx, adminActor, keyIDOf(keyB)); err != nil {
		t.Fatal(err)
	}
	close(ps.release)
	r := <-done
	if r.err != nil {
		t.Fatalf("the in-flight check: %v", r.err)
	}
	if v.StampValid(r.s, time.Now()) {
		t.Fatal("a stamp read before a revocation on this node outlived it")
	}
	// And every earlier stamp ends with any revocation through this vault.
	if v.StampValid(cached, time.Now()) {
		t.Fatal("a stamp outlived a revocation on this node")
	}
}
