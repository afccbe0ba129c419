package bolt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
)

// BenchmarkConcurrentEnqueue: 32 concurrent callers (the dispatch
// harness's clients), each enqueueing one job per call on a real file and
// waiting for its commit, as an API request does. Its jobs/s is bound by
// how commits are grouped (one fdatasync pair each), not by CPU, so it
// shows the group commit's latency on a loaded machine too.
func BenchmarkConcurrentEnqueue(b *testing.B) {
	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(b.TempDir(), "rotor.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now()
	if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws_a", Name: "a", CreatedAt: t0}}); err != nil {
		b.Fatal(err)
	}
	q := storage.Queue{WorkspaceID: "ws_a", Name: "q", CallbackURL: "https://example.com/", MaxAttempts: 3, Timeout: time.Second, Concurrency: 64, CreatedAt: t0, UpdatedAt: t0}
	if err := s.CreateQueue(ctx, storage.CreateQueueArgs{Queue: q}); err != nil {
		b.Fatal(err)
	}
	payload := json.RawMessage(`{"event":"order.created","id":"ord_0123456789"}`)
	var seq atomic.Int64
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("job_%016d", seq.Add(1))
			now := time.Now()
			j := storage.Job{ID: id, WorkspaceID: "ws_a", Queue: "q", Payload: payload, RunAt: now, CreatedAt: now, UpdatedAt: now}
			if _, err := s.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Jobs: []storage.Job{j}, Now: now}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}
