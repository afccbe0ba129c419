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
