package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres"
)

// TestLeaseConcurrencyAcrossNodes: nodes leasing from one database at once
// never hold more of a queue's jobs than its concurrency between them (the
// queue row is locked SKIP LOCKED while leasing), and never the same job.
func TestLeaseConcurrencyAcrossNodes(t *testing.T) {
	dsn := freshSchema(t)
	ctx := context.Background()
	var nodes []*postgres.Store
	for range 3 {
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		nodes = append(nodes, s)
	}
	t0 := time.Now()
	s := nodes[0]
	if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws_a", Name: "a", CreatedAt: t0}}); err != nil {
		t.Fatal(err)
	}
	const conc = 3
	q := storage.Queue{WorkspaceID: "ws_a", Name: "q", CallbackURL: "https://example.com/", MaxAttempts: 3, Timeout: time.Second, Concurrency: conc, CreatedAt: t0, UpdatedAt: t0}
	if err := s.CreateQueue(ctx, storage.CreateQueueArgs{Queue: q}); err != nil {
		t.Fatal(err)
	}
	var jobs []storage.Job
	for i := range 60 {
		jobs = append(jobs, storage.Job{ID: fmt.Sprintf("job_%03d", i), WorkspaceID: "ws_a", Queue: "q", Payload: json.RawMessage(`{}`), RunAt: t0, CreatedAt: t0, UpdatedAt: t0})
	}
	if _, err := s.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: jobs, Now: t0}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for round := range 20 {
		now := t0.Add(time.Duration(round+1) * time.Second)
		var mu sync.Mutex
		var got []storage.Job
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() {
				l, err := n.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: now, Limit: 10, Visibility: time.Hour})
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				got = append(got, l...)
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(got) > conc {
			t.Fatalf("round %d: %d leased across nodes, concurrency %d", round, len(got), conc)
		}
		var done []storage.AttemptResult
		for _, j := range got {
			if seen[j.ID] {
				t.Fatalf("job %s leased twice", j.ID)
			}
			seen[j.ID] = true
			done = append(done, storage.AttemptResult{WorkspaceID: "ws_a", JobID: j.ID, LeaseToken: j.LeaseToken, Status: storage.JobDelivered,
				Attempt: storage.Attempt{N: 1, StartedAt: now, StatusCode: 200}, At: now})
		}
		if err := s.CompleteAttempts(ctx, done); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) < 20 {
		t.Fatalf("only %d jobs leased in 20 rounds", len(seen))
	}
}
