package storagetest

import (
	"fmt"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// Fair leasing (issue #12): what a queue cannot start is not leased, and
// workspaces and queues take turns whatever their backlogs.

func mkQueueWith(t *testing.T, s storage.Store, ws, name string, concurrency int, rate float64) {
	t.Helper()
	q := storage.Queue{WorkspaceID: ws, Name: name, CallbackURL: "https://example.com/", MaxAttempts: 5, BackoffBase: time.Second, BackoffCap: time.Minute,
		Timeout: 10 * time.Second, Concurrency: concurrency, RatePerSecond: rate, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.CreateQueue(ctx(), storage.CreateQueueArgs{Queue: q}))
}

func enqueueN(t *testing.T, s storage.Store, ws, queue string, n int, runAt time.Time) {
	t.Helper()
	for start := 0; start < n; start += 500 {
		var jobs []storage.Job
		for i := start; i < min(n, start+500); i++ {
			jobs = append(jobs, job(ws, queue, fmt.Sprintf("job_%s_%s_%06d", ws, queue, i), runAt))
		}
		enqueue(t, s, jobs...)
	}
}

func byQueue(jobs []storage.Job) map[string]int {
	m := map[string]int{}
	for _, j := range jobs {
		m[storage.QueueKey(j.WorkspaceID, j.Queue)]++
	}
	return m
}

func lease(t *testing.T, s storage.Store, at time.Time, limit int, slots map[string]int) []storage.Job {
	t.Helper()
	l, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: at, Limit: limit, Visibility: time.Minute, Slots: slots})
	must(t, err)
	return l
}

// testLeaseConcurrency: a queue's unexpired leases count against its
// concurrency in the store, so its backlog is not leased while it is full.
func testLeaseConcurrency(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueueWith(t, s, "ws_a", "slow", 2, 0)
	enqueueN(t, s, "ws_a", "slow", 50, t0)
	first := lease(t, s, t0.Add(time.Second), 10, nil)
	if len(first) != 2 {
		t.Fatalf("leased %d from a concurrency-2 queue", len(first))
	}
	if l := lease(t, s, t0.Add(2*time.Second), 10, nil); len(l) != 0 {
		t.Fatalf("leased %d more from a full queue", len(l))
	}
	must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: first[0].ID, LeaseToken: first[0].LeaseToken,
		Attempt: storage.Attempt{N: 1, StartedAt: t0, StatusCode: 200}, Status: storage.JobDelivered, At: t0.Add(3 * time.Second)}}))
	if l := lease(t, s, t0.Add(3*time.Second), 10, nil); len(l) != 1 {
		t.Fatalf("leased %d after one slot freed", len(l))
	}
	// Expired leases do not count: both are due again, and the queue may
	// start two.
	if l := lease(t, s, t0.Add(5*time.Minute), 10, nil); len(l) != 2 {
		t.Fatalf("leased %d after the leases expired, want 2", len(l))
	}
}

// testLeaseDeepBacklog: a full queue with a backlog far larger than any
// lease call, due before everything else, hides nobody's jobs.
func testLeaseDeepBacklog(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkQueueWith(t, s, "ws_a", "stuck", 1, 0)
	mkQueueWith(t, s, "ws_b", "orders", 4, 0)
	enqueueN(t, s, "ws_a", "stuck", 1500, t0)
	if l := lease(t, s, t0.Add(time.Second), 4, nil); len(l) != 1 {
		t.Fatalf("leased %d from a concurrency-1 queue", len(l))
	}
	enqueue(t, s, job("ws_b", "orders", "job_b", t0.Add(30*time.Second)))
	l := lease(t, s, t0.Add(50*time.Second), 4, nil)
	if len(l) != 1 || l[0].ID != "job_b" {
		t.Fatalf("behind a deep full queue: leased %v", byQueue(l))
	}
}

// testLeaseRateSlots: a queue the caller gives no slots (its rate budget is
// spent) is not leased from, and one the caller does not know yet that is
// rate limited yields one job.
func testLeaseRateSlots(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkQueueWith(t, s, "ws_a", "trickle", 1000, 0.0001)
	mkQueueWith(t, s, "ws_b", "orders", 4, 0)
	enqueueN(t, s, "ws_a", "trickle", 300, t0)
	enqueue(t, s, job("ws_b", "orders", "job_b", t0.Add(time.Second)))
	l := lease(t, s, t0.Add(time.Minute), 100, nil)
	if got := byQueue(l); got["ws_a/trickle"] != 1 || got["ws_b/orders"] != 1 {
		t.Fatalf("unlisted rate-limited queue: leased %v", got)
	}
	if l := lease(t, s, t0.Add(time.Minute), 100, map[string]int{"ws_a/trickle": 0}); len(l) != 0 {
		t.Fatalf("queue with no slots: leased %v", byQueue(l))
	}
}

// testLeaseTurns: workspaces take turns whatever their queue and job
// counts, and a workspace's queues take turns too.
func testLeaseTurns(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	for i := range 20 {
		q := fmt.Sprintf("q%02d", i)
		mkQueueWith(t, s, "ws_a", q, 100, 0)
		enqueueN(t, s, "ws_a", q, 20, t0)
	}
	mkQueueWith(t, s, "ws_b", "orders", 100, 0)
	enqueueN(t, s, "ws_b", "orders", 20, t0.Add(time.Second))
	for call := range 5 {
		l := lease(t, s, t0.Add(time.Minute), 2, nil)
		perWS := map[string]int{}
		for _, j := range l {
			perWS[j.WorkspaceID]++
		}
		if perWS["ws_a"] != 1 || perWS["ws_b"] != 1 {
			t.Fatalf("call %d: leased per workspace %v, want one each", call, perWS)
		}
	}
	// ws_a's 20 queues share its turns: 20 jobs from 20 different queues.
	l, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0.Add(time.Minute), Limit: 20, Visibility: time.Minute, WorkspaceSlots: map[string]int{"ws_b": 0}})
	must(t, err)
	if got := byQueue(l); len(l) != 20 || len(got) != 20 {
		t.Fatalf("20 leases from ws_a's queues: %v", got)
	}
}

// testLeaseManyQueues: thousands of one-job queues all due at once are
// leased in turns with another workspace's queue.
func testLeaseManyQueues(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	const n = 120
	for i := range n {
		q := fmt.Sprintf("tiny%04d", i)
		mkQueueWith(t, s, "ws_a", q, 1, 0)
		enqueue(t, s, job("ws_a", q, "job_"+q, t0))
	}
	mkQueueWith(t, s, "ws_b", "orders", 1, 0)
	enqueue(t, s, job("ws_b", "orders", "job_b", t0.Add(time.Second)))
	l := lease(t, s, t0.Add(time.Minute), 4, nil)
	if got := byQueue(l); got["ws_b/orders"] != 1 || len(l) != 4 {
		t.Fatalf("many tiny queues: leased %v", got)
	}
	total := len(l)
	for range n {
		l := lease(t, s, t0.Add(time.Minute), 64, nil)
		if len(l) == 0 {
			break
		}
		total += len(l)
	}
	if total != n+1 {
		t.Fatalf("leased %d of %d jobs", total, n+1)
	}
}

// testLeaseRelease: a released lease leaves the job queued, without an
// attempt or a lease counted, and leasable again.
func testLeaseRelease(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueueWith(t, s, "ws_a", "q", 1, 0)
	enqueue(t, s, job("ws_a", "q", "job_1", t0))
	l := lease(t, s, t0.Add(time.Second), 1, nil)
	if len(l) != 1 {
		t.Fatalf("leased %d", len(l))
	}
	must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: "job_1", LeaseToken: l[0].LeaseToken, Release: true, At: t0.Add(time.Second)}}))
	j, err := s.GetJob(ctx(), "ws_a", "job_1")
	must(t, err)
	if j.Status != storage.JobQueued || len(j.Attempts) != 0 || j.Leases != 0 || !j.RunAt.Equal(t0) {
		t.Fatalf("released: %+v", j)
	}
	if l := lease(t, s, t0.Add(2*time.Second), 1, nil); len(l) != 1 || l[0].Leases != 1 {
		t.Fatalf("leased again after release: %+v", l)
	}
}

// testJobUsage: a workspace's open jobs and their payload bytes, per
// workspace, following every status change.
func testJobUsage(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkQueueWith(t, s, "ws_a", "q", 4, 0)
	mkQueueWith(t, s, "ws_b", "q", 4, 0)
	enqueue(t, s, job("ws_a", "q", "job_1", t0), job("ws_a", "q", "job_2", t0), job("ws_a", "q", "job_3", t0), job("ws_b", "q", "job_4", t0))
	want := func(ws string, n int, bytes int64) {
		t.Helper()
		u, err := s.JobUsage(ctx(), ws)
		must(t, err)
		if u.OpenJobs != n || u.PayloadBytes != bytes {
			t.Fatalf("%s usage = %+v, want %d jobs %d bytes", ws, u, n, bytes)
		}
	}
	per := int64(len(`{"n":"job_1"}`))
	want("ws_a", 3, 3*per)
	want("ws_b", 1, per)
	l := lease(t, s, t0.Add(time.Second), 1, map[string]int{"ws_b/q": 0})
	want("ws_a", 3, 3*per) // leased is still open
	must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: l[0].ID, LeaseToken: l[0].LeaseToken,
		Attempt: storage.Attempt{N: 1, StartedAt: t0, StatusCode: 200}, Status: storage.JobDelivered, At: t0}}))
	want("ws_a", 2, 2*per)
	_, err := s.CancelJob(ctx(), "ws_a", "job_3", t0)
	must(t, err)
	want("ws_a", 1, per)
	_, err = s.RetryJobs(ctx(), storage.RetryJobsArgs{WorkspaceID: "ws_a", ID: "job_3", At: t0})
	must(t, err)
	want("ws_a", 2, 2*per)
	want("ws_none", 0, 0)
}

// testQueueStats: per queue, ready (due) jobs and the oldest's due time,
// and running (leased) jobs.
func testQueueStats(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkQueueWith(t, s, "ws_a", "q", 4, 0)
	enqueue(t, s, job("ws_a", "q", "job_1", t0), job("ws_a", "q", "job_2", t0.Add(time.Second)), job("ws_a", "q", "job_3", t0.Add(time.Second)),
		job("ws_a", "q", "job_4", t0.Add(time.Hour)))
	if l := lease(t, s, t0.Add(500*time.Millisecond), 1, nil); len(l) != 1 || l[0].ID != "job_1" {
		t.Fatalf("lease = %v", l)
	}
	stats, err := s.QueueStats(ctx(), t0.Add(2*time.Second))
	must(t, err)
	if len(stats) != 1 {
		t.Fatalf("stats = %+v", stats)
	}
	st := stats[0]
	if st.WorkspaceID != "ws_a" || st.Queue != "q" || st.Ready != 2 || st.Running != 1 || !st.OldestReady.Equal(t0.Add(time.Second)) {
		t.Fatalf("stats = %+v", st)
	}
}
