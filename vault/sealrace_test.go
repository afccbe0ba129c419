package vault

import (
	"context"
	"sync/atomic"
	"testing"

	"rotor.sh/rotor/storage"
)

// sealRaceStore runs hook once, right after the next GetAuditCheckpoint has
// read the database's seal: a seal landing between a reader's two reads.
type sealRaceStore struct {
	storage.Store
	armed atomic.Bool
	hook  func()
}

func (s *sealRaceStore) GetAuditCheckpoint(ctx context.Context, ws string) (storage.AuditCheckpoint, error) {
	cp, err := s.Store.GetAuditCheckpoint(ctx, ws)
	if s.armed.CompareAndSwap(true, false) {
		s.hook()
	}
	return cp, err
}

// TestSealBetweenReadsIsNoTamper: a seal written while verify (or the
// pruner) is between reading the database's seal and the node's anchor is
// not a replayed seal. Found by the 10-minute soak ("this node sealed row
// N, but the database's newest seal is an older one"); fails when the
// anchor is read after the database.
func TestSealBetweenReadsIsNoTamper(t *testing.T) {
	ctx := context.Background()
	st := &sealRaceStore{Store: testStore(t)}
	v, err := Open(ctx, Options{Store: st, MasterKey: GenerateMasterKey(), AuditSealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(ctx) })
	actor := bootstrap(t, v)
	if _, err := v.CreateSecret(ctx, actor, CreateSecretRequest{Name: "TOKEN", Value: NewPlaintext([]byte("value-of-the-token"))}); err != nil {
		t.Fatal(err)
	}
	resolve := func() {
		t.Helper()
		if _, err := v.Resolve(ctx, ResolveRequest{WorkspaceID: actor.WorkspaceID, Name: "TOKEN", ActorID: actor.KeyID, Host: "example.com"}); err != nil {
			t.Fatal(err)
		}
		if err := v.FlushAudit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	resolve()
	if err := v.sealWorkspace(ctx, actor.WorkspaceID); err != nil {
		t.Fatal(err)
	}
	for _, check := range []struct {
		name string
		run  func() error
	}{
		{"verify", func() error {
			res, err := v.VerifyAudit(ctx, actor)
			if err == nil && !res.OK {
				t.Errorf("verify with a seal landing between its reads: %+v", res)
			}
			return err
		}},
		{"seal", func() error { return v.sealWorkspace(ctx, actor.WorkspaceID) }},
	} {
		resolve() // new rows for the racing seal to cover
		st.hook = func() {
			if err := v.sealWorkspace(ctx, actor.WorkspaceID); err != nil {
				t.Errorf("%s: the racing seal: %v", check.name, err)
			}
		}
		st.armed.Store(true)
		if err := check.run(); err != nil {
			t.Errorf("%s with a seal landing between its reads: %v", check.name, err)
		}
	}
}
