package workflow

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

// keyReadCounter counts GetAPIKey reads of the store under the engine and
// its vault.
type keyReadCounter struct {
	storage.Store
	reads atomic.Int32
}

func (s *keyReadCounter) GetAPIKey(ctx context.Context, id string) (storage.APIKey, error) {
	s.reads.Add(1)
	return s.Store.GetAPIKey(ctx, id)
}

// TestStarterCheckCached: the starting key's check before each request
// step is the vault's cached one (as for a job's delivery), so a run of
// several steps reads the key from storage at most once, not once a step;
// a revocation through the vault still fails the next run's step with
// actor_revoked, nothing sent.
func TestStarterCheckCached(t *testing.T) {
	ctx := context.Background()
	env := vaulttest.New(t)
	cs := &keyReadCounter{Store: env.Store}
	v, err := vault.Open(ctx, vault.Options{Store: cs, MasterKey: env.MasterKey, Logger: env.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(context.Background()) })
	op := env.Operator
	rec, key, err := v.CreateAPIKey(ctx, op, vault.CreateAPIKeyRequest{Name: "starter", Role: vault.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	member, err := v.Authenticate(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// The proxy stand-in answers every step.
	var sent atomic.Int32
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(fake.Close)
	eng, err := NewEngine(Options{Store: cs, Actors: v, ProxyURL: fake.URL, InternalToken: "wf-test-internal",
		PollInterval: 5 * time.Millisecond, Visibility: time.Minute, Workers: 2, SignAudit: v.SignAudit})
	if err != nil {
		t.Fatal(err)
	}
	flows := NewService(cs, v, nil, nil, eng.Notify)
	const steps = 4
	def := `{"steps":[`
	for i := range steps {
		if i > 0 {
			def += ","
		}
		def += `{"id":"s` + string(rune('a'+i)) + `","request":{"method":"POST","url":"http://upstream.example/x"}}`
	}
	def += `]}`
	if _, _, err := flows.PutWorkflow(ctx, op, "several", json.RawMessage(def)); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	wait := func(id string) storage.WorkflowRun {
		t.Helper()
		for range 1000 {
			r, err := flows.GetRun(ctx, op, id)
			if err != nil {
				t.Fatal(err)
			}
			if storage.RunFinished(r.Status) {
				return r
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("run %s never finished", id)
		return storage.WorkflowRun{}
	}
	before := cs.reads.Load()
	run, _, err := flows.StartRun(ctx, member, "several", StartRunRequest{Input: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if r := wait(run.ID); r.Status != storage.RunCompleted || sent.Load() != steps {
		t.Fatalf("run %s (%s), %d requests sent; want completed with %d", r.Status, r.ErrorCode, sent.Load(), steps)
	}
	if n := cs.reads.Load() - before; n > 1 {
		t.Fatalf("a run of %d steps read its starting key %d times, want at most 1 (the vault's cache)", steps, n)
	}
	// Revoked through this node: the next run's first step fails at once.
	if err := v.RevokeAPIKey(ctx, op, rec.ID); err != nil {
		t.Fatal(err)
	}
	sent.Store(0)
	run2, _, err := flows.StartRun(ctx, member, "several", StartRunRequest{Input: json.RawMessage(`{}`), IdempotencyKey: "second"})
	if err != nil {
		t.Fatal(err)
	}
	if r := wait(run2.ID); r.Status != storage.RunFailed || r.ErrorCode != ErrCodeActorRevoked || sent.Load() != 0 {
		t.Fatalf("revoked starter: run %s (%s), %d requests sent; want failed %s, none sent", r.Status, r.ErrorCode, sent.Load(), ErrCodeActorRevoked)
	}
}

// TestEngineNeedsActors: without the starting-key check the engine is not
// built (no step would be sent unchecked).
func TestEngineNeedsActors(t *testing.T) {
	if _, err := NewEngine(Options{ProxyURL: "http://127.0.0.1:1"}); err == nil {
		t.Fatal("engine built without Options.Actors")
	}
}
