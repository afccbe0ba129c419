package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

// countingStore is the real bbolt store, counting EnqueueJobs calls and
// holding each for a moment so concurrent enqueues pile up behind it.
type countingStore struct {
	storage.Store
	mu       sync.Mutex
	calls    int
	maxBatch int
}

func (s *countingStore) EnqueueJobs(ctx context.Context, args storage.EnqueueJobsArgs) ([]storage.EnqueueResult, error) {
	s.mu.Lock()
	s.calls++
	s.maxBatch = max(s.maxBatch, len(args.Jobs))
	s.mu.Unlock()
	time.Sleep(2 * time.Millisecond)
	return s.Store.EnqueueJobs(ctx, args)
}

// TestConcurrentEnqueuesShareStorageCalls: concurrent enqueues reach
// storage in shared calls, and each still gets its own answer: a job for a
// missing queue fails alone, the jobs beside it in its batch are stored.
func TestConcurrentEnqueuesShareStorageCalls(t *testing.T) {
	ve := vaulttest.New(t)
	cs := &countingStore{Store: ve.Store}
	svc := dispatch.NewService(cs, ve.Vault, nil, nil)
	u := "https://example.com/hook"
	if _, err := svc.CreateQueue(context.Background(), ve.Operator, "orders", dispatch.QueueSpec{CallbackURL: &u}); err != nil {
		t.Fatal(err)
	}
	const clients, each = 16, 20
	type outcome struct {
		queue string
		job   storage.Job
		err   error
	}
	out := make(chan outcome, clients*each)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				q := "orders"
				if (c*each+i)%40 == 3 {
					q = "missing"
				}
				j, existing, err := svc.Enqueue(context.Background(), ve.Operator, q, dispatch.EnqueueRequest{Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, c*each+i))})
				if existing {
					err = errors.New("a job without a key came back as existing")
				}
				out <- outcome{q, j, err}
			}
		})
	}
	wg.Wait()
	close(out)
	ids := map[string]bool{}
	failed := 0
	for o := range out {
		if o.queue == "missing" {
			if !errors.Is(o.err, vault.ErrNotFound) {
				t.Errorf("enqueue to a missing queue: %v, want not found", o.err)
			}
			failed++
			continue
		}
		if o.err != nil {
			t.Fatalf("enqueue: %v", o.err)
		}
		if ids[o.job.ID] {
			t.Fatalf("job %s returned twice", o.job.ID)
		}
		ids[o.job.ID] = true
		stored, err := ve.Store.GetJob(context.Background(), o.job.WorkspaceID, o.job.ID)
		if err != nil || stored.Status != storage.JobQueued || string(stored.Payload) != string(o.job.Payload) {
			t.Fatalf("job %s stored as %+v (%v)", o.job.ID, stored, err)
		}
	}
	if len(ids)+failed != clients*each {
		t.Fatalf("%d stored + %d failed of %d", len(ids), failed, clients*each)
	}
	u2, err := ve.Store.JobUsage(context.Background(), ve.Operator.WorkspaceID)
	if err != nil || u2.OpenJobs != len(ids) {
		t.Fatalf("open jobs %d (%v), want %d", u2.OpenJobs, err, len(ids))
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.maxBatch < 2 || cs.calls >= clients*each {
		t.Fatalf("%d enqueues took %d storage calls (largest batch %d): not grouped", clients*each, cs.calls, cs.maxBatch)
	}
	t.Logf("%d enqueues in %d storage calls, largest batch %d", clients*each, cs.calls, cs.maxBatch)
}

// TestEnqueueWithKeyAlone: an idempotency key still returns the first job
// when enqueues with and without keys run at once.
func TestEnqueueWithKeyAlone(t *testing.T) {
	ve := vaulttest.New(t)
	svc := dispatch.NewService(ve.Store, ve.Vault, nil, nil)
	u := "https://example.com/hook"
	if _, err := svc.CreateQueue(context.Background(), ve.Operator, "orders", dispatch.QueueSpec{CallbackURL: &u}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	keyed := map[string]int{}
	for i := range 16 {
		wg.Go(func() {
			req := dispatch.EnqueueRequest{Payload: json.RawMessage(`{}`)}
			if i%2 == 0 {
				req.IdempotencyKey = "order-1"
			}
			j, _, err := svc.Enqueue(context.Background(), ve.Operator, "orders", req)
			if err != nil {
				t.Error(err)
				return
			}
			if req.IdempotencyKey != "" {
				mu.Lock()
				keyed[j.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(keyed) != 1 {
		t.Fatalf("one idempotency key gave %d jobs: %v", len(keyed), keyed)
	}
}

// TestEnqueueCanceledWhileGrouped: a request that gives up while its batch
// is being written does not take the batch down with it: every job in
// flight is stored, and the requests that did not give up get their jobs.
func TestEnqueueCanceledWhileGrouped(t *testing.T) {
	ve := vaulttest.New(t)
	cs := &countingStore{Store: ve.Store}
	svc := dispatch.NewService(cs, ve.Vault, nil, nil)
	u := "https://example.com/hook"
	if _, err := svc.CreateQueue(context.Background(), ve.Operator, "orders", dispatch.QueueSpec{CallbackURL: &u}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Enqueue(canceledCtx(), ve.Operator, "orders", dispatch.EnqueueRequest{Payload: json.RawMessage(`{}`)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("enqueue with a canceled context: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var kept []storage.Job
	for i := range 24 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			if i%3 == 0 {
				// Gives up while its call (2 ms in countingStore) is in flight.
				time.AfterFunc(time.Millisecond, cancel)
			} else {
				defer cancel()
			}
			j, _, err := svc.Enqueue(ctx, ve.Operator, "orders", dispatch.EnqueueRequest{Payload: json.RawMessage(`{}`)})
			if i%3 != 0 {
				if err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
				mu.Lock()
				kept = append(kept, j)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, j := range kept {
		if _, err := ve.Store.GetJob(context.Background(), j.WorkspaceID, j.ID); err != nil {
			t.Errorf("job %s answered 201 but is not stored: %v", j.ID, err)
		}
	}
	if len(kept) != 16 {
		t.Fatalf("%d of 16 enqueues kept", len(kept))
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
