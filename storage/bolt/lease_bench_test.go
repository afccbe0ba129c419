package bolt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// BenchmarkLeaseBesideDeepQueue: one lease-and-complete cycle of a job in
// workspace B while workspace A's concurrency-1 queue is full with a deep
// backlog, all due. Leasing must not read A's backlog, so the time per
// cycle stays flat as the backlog grows. Backlog sizes: 0 and 10,000 by
// default; ROTOR_BENCH_LEASE_BACKLOG=0,1000000 for the million-job run.
func BenchmarkLeaseBesideDeepQueue(b *testing.B) {
	sizes := []int{0, 10_000}
	if v := os.Getenv("ROTOR_BENCH_LEASE_BACKLOG"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("ROTOR_BENCH_LEASE_BACKLOG: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("backlog=%d", n), func(b *testing.B) { benchLease(b, n) })
	}
}

func benchLease(b *testing.B, backlog int) {
	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(b.TempDir(), "rotor.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now().Add(-time.Hour)
	for _, ws := range []string{"ws_a", "ws_b"} {
		if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: ws, Name: ws, CreatedAt: t0}}); err != nil {
			b.Fatal(err)
		}
		q := storage.Queue{WorkspaceID: ws, Name: "q", CallbackURL: "https://example.com/", MaxAttempts: 3, Timeout: time.Second, Concurrency: 1, CreatedAt: t0, UpdatedAt: t0}
		if err := s.CreateQueue(ctx, storage.CreateQueueArgs{Queue: q}); err != nil {
			b.Fatal(err)
		}
	}
	payload := json.RawMessage(`{"event":"order.created","id":"ord_0123456789"}`)
	for start := 0; start < backlog; start += 10_000 {
		var jobs []storage.Job
		for i := start; i < min(backlog, start+10_000); i++ {
			jobs = append(jobs, storage.Job{ID: fmt.Sprintf("job_a_%08d", i), WorkspaceID: "ws_a", Queue: "q", Payload: payload, RunAt: t0, CreatedAt: t0, UpdatedAt: t0})
		}
		if _, err := s.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: jobs, Now: t0}); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	// A's queue is full: one job leased for the whole run.
	if backlog > 0 {
		if l, err := s.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: now, Limit: 1, Visibility: 24 * time.Hour}); err != nil || len(l) != 1 {
			b.Fatalf("lease A: %v %d", err, len(l))
		}
	}
	// Each step is a write transaction (one fsync): the enqueue and complete
	// steps read nothing of A's backlog either, so lease-ns staying level
	// with them shows leasing reads no more than they do.
	var enq, lse, cmp time.Duration
	i := 0
	for b.Loop() {
		i++
		t1 := time.Now()
		j := storage.Job{ID: fmt.Sprintf("job_b_%08d", i), WorkspaceID: "ws_b", Queue: "q", Payload: payload, RunAt: now, CreatedAt: now, UpdatedAt: now}
		if _, err := s.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: []storage.Job{j}, Now: now}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		l, err := s.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: now, Limit: 16, Visibility: time.Minute})
		t3 := time.Now()
		if err != nil || len(l) != 1 || l[0].WorkspaceID != "ws_b" {
			b.Fatalf("lease B: %v %d", err, len(l))
		}
		if err := s.CompleteAttempts(ctx, []storage.AttemptResult{{WorkspaceID: "ws_b", JobID: l[0].ID, LeaseToken: l[0].LeaseToken, Status: storage.JobDelivered,
			Attempt: storage.Attempt{N: 1, StartedAt: now, StatusCode: 200}, At: now}}); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		enq, lse, cmp = enq+t2.Sub(t1), lse+t3.Sub(t2), cmp+t4.Sub(t3)
	}
	b.ReportMetric(float64(enq.Nanoseconds())/float64(i), "enqueue-ns/op")
	b.ReportMetric(float64(lse.Nanoseconds())/float64(i), "lease-ns/op")
	b.ReportMetric(float64(cmp.Nanoseconds())/float64(i), "complete-ns/op")
}
