package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// testCompleteBatch: one CompleteAttempts call carrying every kind of
// result (the dispatcher writes them in batches), each applied as if alone:
// a stale token, another workspace's id and a second result for the same
// lease are fenced off, and the counters follow.
func testCompleteBatch(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	q := mkQueue(t, s, "ws_a", "q")
	q.Concurrency = 100
	must(t, s.UpdateQueue(ctx(), storage.UpdateQueueArgs{Queue: q, ExpectedRevision: 1}))
	var jobs []storage.Job
	for i := range 7 {
		jobs = append(jobs, job("ws_a", "q", fmt.Sprintf("job_%d", i), t0))
	}
	enqueue(t, s, jobs...)
	leased, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0, Limit: 10, Visibility: time.Minute})
	must(t, err)
	if len(leased) != 7 {
		t.Fatalf("leased %d jobs, want 7", len(leased))
	}
	tok := map[string]uint64{}
	for _, j := range leased {
		tok[j.ID] = j.LeaseToken
	}
	at := t0.Add(time.Second)
	res := func(id string, status string) storage.AttemptResult {
		return storage.AttemptResult{WorkspaceID: "ws_a", JobID: id, LeaseToken: tok[id], Status: status, At: at,
			Attempt: storage.Attempt{N: 1, StartedAt: t0, Duration: time.Millisecond, StatusCode: 200}}
	}
	retry := res("job_1", storage.JobQueued)
	retry.RunAt, retry.Attempt.StatusCode, retry.Attempt.ErrorCode = t0.Add(time.Hour), 500, "http_status"
	release := storage.AttemptResult{WorkspaceID: "ws_a", JobID: "job_3", LeaseToken: tok["job_3"], Release: true, At: at}
	stale := res("job_4", storage.JobDelivered)
	stale.LeaseToken++
	otherWS := res("job_5", storage.JobDelivered)
	otherWS.WorkspaceID = "ws_b"
	dup := res("job_6", storage.JobDead)
	must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{
		res("job_0", storage.JobDelivered), retry, res("job_2", storage.JobDead), release, stale, otherWS,
		res("job_6", storage.JobDelivered), dup,
	}))
	want := map[string]struct {
		status   string
		attempts int
	}{
		"job_0": {storage.JobDelivered, 1}, "job_1": {storage.JobQueued, 1}, "job_2": {storage.JobDead, 1}, "job_3": {storage.JobQueued, 0},
		"job_4": {storage.JobLeased, 0}, "job_5": {storage.JobLeased, 0}, "job_6": {storage.JobDelivered, 1},
	}
	for id, w := range want {
		j, err := s.GetJob(ctx(), "ws_a", id)
		must(t, err)
		if j.Status != w.status || len(j.Attempts) != w.attempts {
			t.Errorf("%s: status %s with %d attempts, want %s with %d", id, j.Status, len(j.Attempts), w.status, w.attempts)
		}
		if j.Status != storage.JobLeased && j.LeaseToken != 0 {
			t.Errorf("%s: %s but still holds lease token %d", id, j.Status, j.LeaseToken)
		}
	}
	if j, _ := s.GetJob(ctx(), "ws_a", "job_1"); !j.RunAt.Equal(t0.Add(time.Hour)) || j.Attempts[0].ErrorCode != "http_status" {
		t.Errorf("retry: run at %v, attempts %+v", j.RunAt, j.Attempts)
	}
	if j, _ := s.GetJob(ctx(), "ws_a", "job_0"); !j.DeliveredAt.Equal(at) {
		t.Errorf("delivered at %v, want %v", j.DeliveredAt, at)
	}
	if j, _ := s.GetJob(ctx(), "ws_a", "job_3"); j.Leases != 0 || !j.RunAt.Equal(t0) {
		t.Errorf("released job: %d leases, run at %v", j.Leases, j.RunAt)
	}
	counts, err := s.CountJobs(ctx())
	must(t, err)
	if counts[storage.JobDelivered] != 2 || counts[storage.JobDead] != 1 || counts[storage.JobQueued] != 2 || counts[storage.JobLeased] != 2 {
		t.Errorf("counts = %v", counts)
	}
	u, err := s.JobUsage(ctx(), "ws_a")
	must(t, err)
	if u.OpenJobs != 4 {
		t.Errorf("open jobs = %d, want 4 (two queued, two leased)", u.OpenJobs)
	}
	// Only the released job is due now; the retry is due in an hour.
	again, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: at, Limit: 10, Visibility: time.Minute})
	must(t, err)
	if len(again) != 1 || again[0].ID != "job_3" {
		t.Fatalf("leased after the batch: %+v", again)
	}
}

// testConcurrentJobWrites: enqueues, leases and results from many callers
// at once (backends may share transactions between them) lose nothing and
// deliver each job once.
func testConcurrentJobWrites(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	q := mkQueue(t, s, "ws_a", "q")
	q.Concurrency = 1000
	must(t, s.UpdateQueue(ctx(), storage.UpdateQueueArgs{Queue: q, ExpectedRevision: 1}))
	const producers, perProducer = 8, 25
	const total = producers * perProducer
	var wg sync.WaitGroup
	errs := make(chan error, producers+4)
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				j := job("ws_a", "q", fmt.Sprintf("job_%02d_%03d", p, i), t0)
				if _, err := s.EnqueueJobs(ctx(), storage.EnqueueJobsArgs{Jobs: []storage.Job{j}, Now: t0}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var mu sync.Mutex
	delivered := map[string]int{}
	for range 4 {
		wg.Go(func() {
			// Bounded: every job is enqueued within the first rounds.
			for round := 0; round < 2000; round++ {
				mu.Lock()
				done := len(delivered) == total
				mu.Unlock()
				if done {
					return
				}
				l, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0, Limit: 16, Visibility: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				var results []storage.AttemptResult
				for _, j := range l {
					results = append(results, storage.AttemptResult{WorkspaceID: j.WorkspaceID, JobID: j.ID, LeaseToken: j.LeaseToken,
						Attempt: storage.Attempt{N: 1, StatusCode: 200}, Status: storage.JobDelivered, At: t0})
				}
				if err := s.CompleteAttempts(ctx(), results); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, j := range l {
					delivered[j.ID]++
				}
				mu.Unlock()
				if len(l) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(delivered) != total {
		t.Fatalf("%d of %d jobs delivered", len(delivered), total)
	}
	for id, n := range delivered {
		if n != 1 {
			t.Errorf("%s leased %d times", id, n)
		}
	}
	counts, err := s.CountJobs(ctx())
	must(t, err)
	if counts[storage.JobDelivered] != total || counts[storage.JobQueued] != 0 || counts[storage.JobLeased] != 0 {
		t.Errorf("counts = %v", counts)
	}
	if u, _ := s.JobUsage(ctx(), "ws_a"); u.OpenJobs != 0 {
		t.Errorf("open jobs = %d, want 0", u.OpenJobs)
	}
}

// testEnqueueBatch: several jobs in one EnqueueJobs call (the dispatch
// service groups concurrent enqueues) are stored all or none: a missing
// queue or a taken id fails the whole call with its own error.
func testEnqueueBatch(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueue(t, s, "ws_a", "q1")
	mkQueue(t, s, "ws_a", "q2")
	res := enqueue(t, s, job("ws_a", "q1", "job_1", t0), job("ws_a", "q2", "job_2", t0), job("ws_a", "q1", "job_3", t0.Add(time.Hour)))
	if len(res) != 3 || res[0].Job.ID != "job_1" || res[2].Job.ID != "job_3" || res[1].Existing || res[1].Job.Status != storage.JobQueued {
		t.Fatalf("results = %+v", res)
	}
	for _, id := range []string{"job_1", "job_2", "job_3"} {
		if j, err := s.GetJob(ctx(), "ws_a", id); err != nil || j.Status != storage.JobQueued {
			t.Fatalf("%s: %+v, %v", id, j, err)
		}
	}
	_, err := s.EnqueueJobs(ctx(), storage.EnqueueJobsArgs{Jobs: []storage.Job{job("ws_a", "q1", "job_4", t0), job("ws_a", "nope", "job_5", t0)}, Now: t0})
	wantErr(t, err, storage.ErrNotFound)
	if err != nil && !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("error %q does not name the missing queue", err)
	}
	_, err = s.EnqueueJobs(ctx(), storage.EnqueueJobsArgs{Jobs: []storage.Job{job("ws_a", "q1", "job_6", t0), job("ws_a", "q2", "job_2", t0)}, Now: t0})
	wantErr(t, err, storage.ErrExists)
	for _, id := range []string{"job_4", "job_5", "job_6"} {
		if _, err := s.GetJob(ctx(), "ws_a", id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s of a failed batch was stored (%v)", id, err)
		}
	}
	u, err := s.JobUsage(ctx(), "ws_a")
	must(t, err)
	if u.OpenJobs != 3 {
		t.Errorf("open jobs = %d, want 3", u.OpenJobs)
	}
	leased, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0, Limit: 10, Visibility: time.Minute})
	must(t, err)
	if len(leased) != 2 {
		t.Errorf("leased %d due jobs, want 2", len(leased))
	}
}
