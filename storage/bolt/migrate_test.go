package bolt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// TestReadyIndexMigration: a file written before the per-queue ready index
// keeps every open job: after the upgrade they are leased, counted in
// usage, and a leased job still holds its queue's slot.
func TestReadyIndexMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "rotor.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Minute)
	if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws_a", Name: "a", CreatedAt: t0}}); err != nil {
		t.Fatal(err)
	}
	q := storage.Queue{WorkspaceID: "ws_a", Name: "q", CallbackURL: "https://example.com/", MaxAttempts: 3, Timeout: time.Second, Concurrency: 2, CreatedAt: t0, UpdatedAt: t0}
	if err := s.CreateQueue(ctx, storage.CreateQueueArgs{Queue: q}); err != nil {
		t.Fatal(err)
	}
	var jobs []storage.Job
	for i := range 5 {
		jobs = append(jobs, storage.Job{ID: fmt.Sprintf("job_%d", i), WorkspaceID: "ws_a", Queue: "q", Payload: json.RawMessage(`{"i":1}`), RunAt: t0, CreatedAt: t0, UpdatedAt: t0})
	}
	if _, err := s.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: jobs, Now: t0}); err != nil {
		t.Fatal(err)
	}
	if l, err := s.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: time.Now(), Limit: 1, Visibility: time.Hour}); err != nil || len(l) != 1 {
		t.Fatalf("lease: %v %d", err, len(l))
	}
	s.Close()
	if err := bolt.DowngradeJobIndexes(path); err != nil {
		t.Fatal(err)
	}
	if s, err = bolt.Open(path, bolt.Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := s.JobUsage(ctx, "ws_a")
	if err != nil || u.OpenJobs != 5 || u.PayloadBytes != 5*int64(len(`{"i":1}`)) {
		t.Fatalf("usage after migration: %+v %v", u, err)
	}
	// Concurrency 2 with one lease held: one more now.
	l, err := s.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: time.Now(), Limit: 10, Visibility: time.Hour})
	if err != nil || len(l) != 1 {
		t.Fatalf("lease after migration: %v %d", err, len(l))
	}
	// Once the leases expire, every open job is
	// leasable again: nothing was lost.
	seen := map[string]bool{}
	for round := range 5 {
		l, err := s.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: time.Now().Add(time.Duration(round+2) * time.Hour), Limit: 10, Visibility: 30 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range l {
			seen[j.ID] = true
		}
	}
	if len(seen) != 5 {
		t.Fatalf("jobs leasable after migration: %v", seen)
	}
}
