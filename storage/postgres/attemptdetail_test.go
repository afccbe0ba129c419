package postgres_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/postgres"
)

// TestAttemptDetailRoundTrip: an attempt's detail for the dashboard
// (templates as sent, error words, response headers and excerpt) survives
// the jobs table's jsonb body, escapes and non-ASCII text included.
func TestAttemptDetailRoundTrip(t *testing.T) {
	s, err := postgres.Open(context.Background(), freshSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if err := s.CreateWorkspace(ctx, storage.CreateWorkspaceArgs{Workspace: storage.Workspace{ID: "ws_a", Name: "a", CreatedAt: t0}}); err != nil {
		t.Fatal(err)
	}
	q := storage.Queue{WorkspaceID: "ws_a", Name: "q", CallbackURL: "https://example.com/", MaxAttempts: 3, Timeout: time.Second, Concurrency: 2, CreatedAt: t0, UpdatedAt: t0}
	if err := s.CreateQueue(ctx, storage.CreateQueueArgs{Queue: q}); err != nil {
		t.Fatal(err)
	}
	j := storage.Job{ID: "job_1", WorkspaceID: "ws_a", Queue: "q", Payload: []byte(`{}`), RunAt: t0, CreatedAt: t0, UpdatedAt: t0}
	if _, err := s.EnqueueJobs(ctx, storage.EnqueueJobsArgs{Now: t0, Jobs: []storage.Job{j}}); err != nil {
		t.Fatal(err)
	}
	l, err := s.LeaseJobs(ctx, storage.LeaseJobsArgs{Now: t0, Limit: 1, Visibility: time.Minute})
	if err != nil || len(l) != 1 {
		t.Fatalf("lease: %v %v", err, l)
	}
	a := storage.Attempt{N: 1, StartedAt: t0, Duration: time.Millisecond, StatusCode: 500, ErrorCode: "http_status", RequestURL: "https://x/?t=${{ secrets.A }}",
		RequestHeaders: map[string]string{"X": "${{ secrets.A }}"}, Error: "the callback answered 500", ResponseHeaders: map[string]string{"Content-Type": "text/plain"},
		ResponseExcerpt: "héllo <b>\"quoted\"</b> \\ \u2028 …"}
	res := storage.AttemptResult{WorkspaceID: "ws_a", JobID: "job_1", LeaseToken: l[0].LeaseToken, Attempt: a, Status: storage.JobQueued, RunAt: t0.Add(time.Second), At: t0}
	if err := s.CompleteAttempts(ctx, []storage.AttemptResult{res}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "ws_a", "job_1")
	if err != nil || len(got.Attempts) != 1 {
		t.Fatalf("get: %v %+v", err, got)
	}
	back := got.Attempts[0]
	back.StartedAt = a.StartedAt // PostgreSQL keeps microseconds
	if !reflect.DeepEqual(back, a) {
		t.Fatalf("got %+v\nwant %+v", back, a)
	}
}
