package storagetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

func jobTests() []struct {
	name string
	fn   func(t *testing.T, s storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"Queues", testQueues},
		{"EnqueueIdempotency", testEnqueueIdempotency},
		{"ListJobs", testListJobs},
		{"LeaseAndComplete", testLeaseAndComplete},
		{"LeaseExpiryFencing", testLeaseExpiryFencing},
		{"LeaseSlots", testLeaseSlots},
		{"CancelRetryCount", testCancelRetryCount},
		{"DeleteQueueCancelsJobs", testDeleteQueue},
		{"LeaseConcurrency", testLeaseConcurrency},
		{"LeaseDeepBacklog", testLeaseDeepBacklog},
		{"LeaseRateSlots", testLeaseRateSlots},
		{"LeaseTurns", testLeaseTurns},
		{"LeaseManyQueues", testLeaseManyQueues},
		{"LeaseRelease", testLeaseRelease},
		{"JobUsage", testJobUsage},
		{"QueueStats", testQueueStats},
		{"EnqueueBatch", testEnqueueBatch},
		{"CompleteBatch", testCompleteBatch},
		{"ConcurrentJobWrites", testConcurrentJobWrites},
	}
}

func mkQueue(t *testing.T, s storage.Store, ws, name string) storage.Queue {
	t.Helper()
	q := storage.Queue{WorkspaceID: ws, Name: name, CallbackURL: "https://example.com/${{ secrets.A }}", CallbackHeaders: map[string]string{"X-Key": "${{ secrets.A }}"},
		MaxAttempts: 5, BackoffBase: time.Second, BackoffCap: time.Minute, Timeout: 10 * time.Second, Concurrency: 4, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.CreateQueue(ctx(), storage.CreateQueueArgs{Queue: q}))
	q.Revision = 1
	return q
}

func job(ws, queue, id string, runAt time.Time) storage.Job {
	return storage.Job{ID: id, WorkspaceID: ws, Queue: queue, Payload: json.RawMessage(`{"n":"` + id + `"}`), RunAt: runAt, EnqueuedBy: "key_1", CreatedAt: runAt, UpdatedAt: runAt}
}

func enqueue(t *testing.T, s storage.Store, jobs ...storage.Job) []storage.EnqueueResult {
	t.Helper()
	res, err := s.EnqueueJobs(ctx(), storage.EnqueueJobsArgs{Jobs: jobs, Now: t0})
	must(t, err)
	return res
}

func testQueues(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	q := mkQueue(t, s, "ws_a", "notifications")
	wantErr(t, s.CreateQueue(ctx(), storage.CreateQueueArgs{Queue: q}), storage.ErrExists)
	wantErr(t, s.CreateQueue(ctx(), storage.CreateQueueArgs{Queue: storage.Queue{WorkspaceID: "ws_missing", Name: "x"}}), storage.ErrNotFound)
	got, err := s.GetQueue(ctx(), "ws_a", "notifications")
	must(t, err)
	if got.CallbackHeaders["X-Key"] != "${{ secrets.A }}" || got.Timeout != 10*time.Second || got.Revision != 1 {
		t.Fatalf("GetQueue = %+v", got)
	}
	_, err = s.GetQueue(ctx(), "ws_b", "notifications")
	wantErr(t, err, storage.ErrNotFound)
	got.CallbackURL = "https://example.org/"
	must(t, s.UpdateQueue(ctx(), storage.UpdateQueueArgs{Queue: got, ExpectedRevision: 1}))
	wantErr(t, s.UpdateQueue(ctx(), storage.UpdateQueueArgs{Queue: got, ExpectedRevision: 1}), storage.ErrConflict)
	got, _ = s.GetQueue(ctx(), "ws_a", "notifications")
	if got.CallbackURL != "https://example.org/" || got.Revision != 2 {
		t.Fatalf("after update = %+v", got)
	}
	mkQueue(t, s, "ws_a", "other")
	list, err := s.ListQueues(ctx(), "ws_a")
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListQueues = %d", len(list))
	}
	if list, _ := s.ListQueues(ctx(), "ws_b"); len(list) != 0 {
		t.Fatal("ws_b sees ws_a's queues")
	}
	wantErr(t, s.DeleteQueue(ctx(), storage.DeleteQueueArgs{WorkspaceID: "ws_b", Name: "other"}), storage.ErrNotFound)
	must(t, s.DeleteQueue(ctx(), storage.DeleteQueueArgs{WorkspaceID: "ws_a", Name: "other"}))
	_, err = s.GetQueue(ctx(), "ws_a", "other")
	wantErr(t, err, storage.ErrNotFound)
}

func testEnqueueIdempotency(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueue(t, s, "ws_a", "q")
	j := job("ws_a", "q", "job_1", t0)
	j.IdempotencyKey = "order-42"
	res := enqueue(t, s, j)
	if len(res) != 1 || res[0].Existing || res[0].Job.Status != storage.JobQueued {
		t.Fatalf("first enqueue = %+v", res)
	}
	j2 := job("ws_a", "q", "job_2", t0)
	j2.IdempotencyKey = "order-42"
	res = enqueue(t, s, j2)
	if !res[0].Existing || res[0].Job.ID != "job_1" {
		t.Fatalf("same key = %+v", res)
	}
	// After the window, the key makes a new job.
	j3 := job("ws_a", "q", "job_3", t0)
	j3.IdempotencyKey = "order-42"
	late, err := s.EnqueueJobs(ctx(), storage.EnqueueJobsArgs{Jobs: []storage.Job{j3}, Now: t0.Add(storage.IdempotencyWindow + time.Minute)})
	must(t, err)
	if late[0].Existing || late[0].Job.ID != "job_3" {
		t.Fatalf("after the window = %+v", late)
	}
	_, err = s.EnqueueJobs(ctx(), storage.EnqueueJobsArgs{Jobs: []storage.Job{job("ws_a", "missing", "job_4", t0)}, Now: t0})
	wantErr(t, err, storage.ErrNotFound)
	got, err := s.GetJob(ctx(), "ws_a", "job_1")
	must(t, err)
	if string(got.Payload) != `{"n":"job_1"}` {
		t.Fatalf("payload = %s", got.Payload)
	}
	_, err = s.GetJob(ctx(), "ws_other", "job_1")
	wantErr(t, err, storage.ErrNotFound)
}

func testListJobs(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueue(t, s, "ws_a", "q")
	for i := range 10 {
		enqueue(t, s, job("ws_a", "q", fmt.Sprintf("job_%02d", i), t0))
	}
	var got []string
	cursor := ""
	for range 10 {
		page, err := s.ListJobs(ctx(), storage.JobQuery{WorkspaceID: "ws_a", Queue: "q", Limit: 4, Before: cursor})
		must(t, err)
		for _, j := range page.Jobs {
			got = append(got, j.ID)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if fmt.Sprint(got) != "[job_09 job_08 job_07 job_06 job_05 job_04 job_03 job_02 job_01 job_00]" {
		t.Fatalf("paged = %v", got)
	}
	page, err := s.ListJobs(ctx(), storage.JobQuery{WorkspaceID: "ws_a", Queue: "q", Status: storage.JobDead})
	must(t, err)
	if len(page.Jobs) != 0 {
		t.Fatal("status filter")
	}
}

func testLeaseAndComplete(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueue(t, s, "ws_a", "q")
	enqueue(t, s, job("ws_a", "q", "job_now", t0), job("ws_a", "q", "job_later", t0.Add(time.Hour)))
	leased, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0, Limit: 10, Visibility: time.Minute})
	must(t, err)
	if len(leased) != 1 || leased[0].ID != "job_now" || leased[0].Status != storage.JobLeased || leased[0].LeaseToken == 0 {
		t.Fatalf("leased = %+v", leased)
	}
	again, _ := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0.Add(time.Second), Limit: 10, Visibility: time.Minute})
	if len(again) != 0 {
		t.Fatal("a leased job was leased again before its lease expired")
	}
	// A failed attempt schedules a retry.
	must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: "job_now", LeaseToken: leased[0].LeaseToken,
		Attempt: storage.Attempt{N: 1, StartedAt: t0, Duration: time.Millisecond, StatusCode: 500, ErrorCode: "http_status"},
		Status:  storage.JobQueued, RunAt: t0.Add(10 * time.Second), At: t0}}))
	j, _ := s.GetJob(ctx(), "ws_a", "job_now")
	if j.Status != storage.JobQueued || len(j.Attempts) != 1 || j.Attempts[0].StatusCode != 500 || !j.RunAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("after failure = %+v", j)
	}
	if l, _ := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0.Add(5 * time.Second), Limit: 10, Visibility: time.Minute}); len(l) != 0 {
		t.Fatal("leased before its retry time")
	}
	l, _ := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0.Add(10 * time.Second), Limit: 10, Visibility: time.Minute})
	if len(l) != 1 {
		t.Fatal("retry not leased when due")
	}
	must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: "job_now", LeaseToken: l[0].LeaseToken,
		Attempt: storage.Attempt{N: 2, StatusCode: 200}, Status: storage.JobDelivered, At: t0.Add(11 * time.Second)}}))
	j, _ = s.GetJob(ctx(), "ws_a", "job_now")
	if j.Status != storage.JobDelivered || len(j.Attempts) != 2 || !j.DeliveredAt.Equal(t0.Add(11*time.Second)) {
		t.Fatalf("delivered = %+v", j)
	}
	if l, _ := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0.Add(2 * time.Hour), Limit: 10, Visibility: time.Minute}); len(l) != 1 || l[0].ID != "job_later" {
		t.Fatalf("later job: %+v", l)
	}
}

func testLeaseExpiryFencing(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueue(t, s, "ws_a", "q")
	enqueue(t, s, job("ws_a", "q", "job_1", t0))
	first, _ := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0, Limit: 1, Visibility: time.Minute})
	// The first holder "crashes"; after the visibility timeout the job is leased again.
	second, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0.Add(61 * time.Second), Limit: 1, Visibility: time.Minute})
	must(t, err)
	if len(first) != 1 || len(second) != 1 || second[0].LeaseToken == first[0].LeaseToken {
		t.Fatalf("re-lease: %+v %+v", first, second)
	}
	// The first holder's late result is fenced off.
	must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: "job_1", LeaseToken: first[0].LeaseToken,
		Attempt: storage.Attempt{N: 1, StatusCode: 200}, Status: storage.JobDelivered, At: t0}}))
	j, _ := s.GetJob(ctx(), "ws_a", "job_1")
	if j.Status != storage.JobLeased || len(j.Attempts) != 0 {
		t.Fatalf("stale result applied: %+v", j)
	}
	must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: "job_1", LeaseToken: second[0].LeaseToken,
		Attempt: storage.Attempt{N: 1, StatusCode: 410}, Status: storage.JobDead, At: t0}}))
	j, _ = s.GetJob(ctx(), "ws_a", "job_1")
	if j.Status != storage.JobDead {
		t.Fatalf("dead = %+v", j)
	}
}

func testLeaseSlots(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueue(t, s, "ws_a", "busy")
	mkQueue(t, s, "ws_a", "idle")
	for i := range 5 {
		enqueue(t, s, job("ws_a", "busy", fmt.Sprintf("job_b%d", i), t0))
	}
	enqueue(t, s, job("ws_a", "idle", "job_i0", t0.Add(time.Millisecond)))
	l, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0.Add(time.Second), Limit: 10, Visibility: time.Minute,
		Slots: map[string]int{storage.QueueKey("ws_a", "busy"): 2}})
	must(t, err)
	busy := 0
	idle := 0
	for _, j := range l {
		switch j.Queue {
		case "busy":
			busy++
		case "idle":
			idle++
		}
	}
	if busy != 2 || idle != 1 {
		t.Fatalf("slots: busy %d idle %d", busy, idle)
	}
}

func testCancelRetryCount(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueue(t, s, "ws_a", "q")
	enqueue(t, s, job("ws_a", "q", "job_1", t0), job("ws_a", "q", "job_2", t0), job("ws_a", "q", "job_3", t0))
	j, err := s.CancelJob(ctx(), "ws_a", "job_1", t0)
	must(t, err)
	if j.Status != storage.JobCanceled {
		t.Fatalf("cancel = %+v", j)
	}
	_, err = s.CancelJob(ctx(), "ws_a", "job_1", t0)
	wantErr(t, err, storage.ErrConflict)
	_, err = s.CancelJob(ctx(), "ws_b", "job_2", t0)
	wantErr(t, err, storage.ErrNotFound)
	l, _ := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0, Limit: 10, Visibility: time.Minute})
	if len(l) != 2 {
		t.Fatalf("a canceled job was leased: %d", len(l))
	}
	for _, x := range l {
		must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: x.ID, LeaseToken: x.LeaseToken,
			Attempt: storage.Attempt{N: 1, StatusCode: 500}, Status: storage.JobDead, At: t0}}))
	}
	counts, err := s.CountJobs(ctx())
	must(t, err)
	if counts[storage.JobDead] != 2 || counts[storage.JobCanceled] != 1 || counts[storage.JobQueued] != 0 || counts[storage.JobLeased] != 0 {
		t.Fatalf("counts = %v", counts)
	}
	_, err = s.RetryJobs(ctx(), storage.RetryJobsArgs{WorkspaceID: "ws_a", ID: "job_2", At: t0.Add(time.Hour)})
	must(t, err)
	j, _ = s.GetJob(ctx(), "ws_a", "job_2")
	if j.Status != storage.JobQueued || j.RetryFrom != 1 || !j.RunAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("retried = %+v", j)
	}
	n, err := s.RetryJobs(ctx(), storage.RetryJobsArgs{WorkspaceID: "ws_a", Queue: "q", At: t0})
	must(t, err)
	if n != 1 {
		t.Fatalf("bulk retry = %d, want 1 (job_3)", n)
	}
	_, err = s.RetryJobs(ctx(), storage.RetryJobsArgs{WorkspaceID: "ws_a", ID: "job_2", At: t0})
	wantErr(t, err, storage.ErrConflict)
	counts, _ = s.CountJobs(ctx())
	if counts[storage.JobQueued] != 2 || counts[storage.JobDead] != 0 {
		t.Fatalf("counts after retry = %v", counts)
	}
}

func testDeleteQueue(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueue(t, s, "ws_a", "q")
	enqueue(t, s, job("ws_a", "q", "job_1", t0))
	must(t, s.DeleteQueue(ctx(), storage.DeleteQueueArgs{WorkspaceID: "ws_a", Name: "q", At: t0}))
	j, err := s.GetJob(ctx(), "ws_a", "job_1")
	must(t, err)
	if j.Status != storage.JobCanceled {
		t.Fatalf("job of a deleted queue = %s", j.Status)
	}
	if l, _ := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0, Limit: 10, Visibility: time.Minute}); len(l) != 0 {
		t.Fatal("job of a deleted queue leased")
	}
	if !errors.Is(s.DeleteQueue(ctx(), storage.DeleteQueueArgs{WorkspaceID: "ws_a", Name: "q"}), storage.ErrNotFound) {
		t.Fatal("second delete")
	}
}
