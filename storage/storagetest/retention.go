package storagetest

import (
	"fmt"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

// testPruneJobs: finished jobs (delivered, dead, canceled) last updated
// before the cutoff go, with their attempts and idempotency records (the
// key can be used again); live jobs and newer finished ones stay; the
// counts follow; batches are bounded by Limit.
func testPruneJobs(t *testing.T, s storage.Store) {
	r, ok := s.(storage.Retainer)
	if !ok {
		t.Fatal("the store does not implement storage.Retainer")
	}
	mkWorkspace(t, s, "ws_a")
	// Concurrency 8: fair leasing starts at most a queue's free concurrency.
	mkQueueWith(t, s, "ws_a", "q", 8, 0)
	// Time-ordered ids, as dispatch.NewJobID makes them.
	id := func(i int) string { return fmt.Sprintf("job_%04d", i) }
	var jobs []storage.Job
	for i := range 12 {
		j := job("ws_a", "q", id(i), t0.Add(time.Duration(i)*time.Second))
		j.IdempotencyKey = fmt.Sprintf("key-%d", i)
		jobs = append(jobs, j)
	}
	_, err := s.EnqueueJobs(ctx(), storage.EnqueueJobsArgs{Jobs: jobs, Now: t0})
	must(t, err)
	leased, err := s.LeaseJobs(ctx(), storage.LeaseJobsArgs{Now: t0.Add(time.Minute), Limit: 8, Visibility: time.Hour})
	must(t, err)
	if len(leased) != 8 {
		t.Fatalf("leased %d", len(leased))
	}
	tok := map[string]uint64{}
	for _, j := range leased {
		tok[j.ID] = j.LeaseToken
	}
	finish := func(i int, status string, at time.Time) {
		must(t, s.CompleteAttempts(ctx(), []storage.AttemptResult{{WorkspaceID: "ws_a", JobID: id(i), LeaseToken: tok[id(i)],
			Attempt: storage.Attempt{N: 1, StartedAt: at, StatusCode: 200}, Status: status, At: at}}))
	}
	old, recent := t0.Add(2*time.Minute), t0.Add(2*time.Hour)
	finish(0, storage.JobDelivered, old)
	finish(1, storage.JobDead, old)
	finish(2, storage.JobDelivered, old)
	finish(3, storage.JobDelivered, recent) // finished after the cutoff
	finish(4, storage.JobDelivered, old)
	// 5..7 stay leased; 8..11 queued (live).
	_, err = s.CancelJob(ctx(), "ws_a", id(8), old)
	must(t, err)
	cutoff := t0.Add(time.Hour)
	prunable := map[string]bool{id(0): true, id(1): true, id(2): true, id(4): true, id(8): true}

	// Bounded batches: Limit 2 deletes 2, then 2, then 1 (done).
	var got []int
	for range 10 {
		n, err := r.PruneJobs(ctx(), storage.PruneJobsArgs{Before: cutoff, Limit: 2})
		must(t, err)
		got = append(got, n)
		if n < 2 {
			break
		}
	}
	if fmt.Sprint(got) != "[2 2 1]" {
		t.Fatalf("pruned per batch %v, want [2 2 1]", got)
	}
	for i := range 12 {
		_, err := s.GetJob(ctx(), "ws_a", id(i))
		if prunable[id(i)] {
			wantErr(t, err, storage.ErrNotFound)
		} else {
			must(t, err)
		}
	}
	counts, err := s.CountJobs(ctx())
	must(t, err)
	if counts[storage.JobDelivered] != 1 || counts[storage.JobDead] != 0 || counts[storage.JobCanceled] != 0 ||
		counts[storage.JobLeased] != 3 || counts[storage.JobQueued] != 3 {
		t.Fatalf("counts after pruning: %v", counts)
	}
	page, err := s.ListJobs(ctx(), storage.JobQuery{WorkspaceID: "ws_a", Queue: "q", Limit: 100})
	must(t, err)
	if len(page.Jobs) != 7 {
		t.Fatalf("ListJobs after pruning: %d jobs", len(page.Jobs))
	}
	// The pruned job's idempotency key enqueues a new job; a live one's does not.
	again := job("ws_a", "q", "job_9000", t0.Add(3*time.Hour))
	again.IdempotencyKey = "key-0"
	live := job("ws_a", "q", "job_9001", t0.Add(3*time.Hour))
	live.IdempotencyKey = "key-9"
	res, err := s.EnqueueJobs(ctx(), storage.EnqueueJobsArgs{Jobs: []storage.Job{again, live}, Now: t0.Add(3 * time.Minute)})
	must(t, err)
	if res[0].Existing || !res[1].Existing {
		t.Fatalf("idempotency after pruning: %+v", res)
	}
}

// testPruneAudit: rows up to the marker go (that workspace only), the
// marker is stored as given, an older marker changes nothing, and the
// remaining rows still chain from the marker's value.
func testPruneAudit(t *testing.T, s storage.Store) {
	r, ok := s.(storage.Retainer)
	if !ok {
		t.Fatal("the store does not implement storage.Retainer")
	}
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	_, err := r.GetAuditRetention(ctx(), "ws_a")
	wantErr(t, err, storage.ErrNotFound)
	// One batch of several rows (a backend may store them together), then
	// single rows.
	var batch []storage.AuditEvent
	for i := range 6 {
		batch = append(batch, ev("ws_a", "secret.accessed", fmt.Sprint("batch", i)))
	}
	appendAudit(t, s, batch)
	for i := range 10 {
		appendAudit(t, s, []storage.AuditEvent{ev("ws_a", "secret.accessed", fmt.Sprint("A", i)), ev("ws_b", "secret.accessed", fmt.Sprint("B", i))})
	}
	all, err := s.ListAuditAsc(ctx(), storage.AuditRange{WorkspaceID: "ws_a", Limit: 100})
	must(t, err)
	if len(all) < 16 {
		t.Fatalf("%d rows", len(all))
	}
	// Prune through the 4th row: inside the batch (ws_a's first rows may
	// include workspace creation, so it is the batch's 3rd or 4th).
	cut := all[3]
	m := storage.AuditRetention{WorkspaceID: "ws_a", ThroughID: cut.ID, Chain: cut.Chain, Rows: 4, PrunedAt: t0, MAC: []byte("mac")}
	n, err := r.PruneAudit(ctx(), storage.PruneAuditArgs{Marker: m})
	must(t, err)
	if n != 4 {
		t.Fatalf("pruned %d rows, want 4", n)
	}
	got, err := r.GetAuditRetention(ctx(), "ws_a")
	must(t, err)
	if got.ThroughID != m.ThroughID || string(got.Chain) != string(m.Chain) || got.Rows != 4 || !got.PrunedAt.Equal(t0) || string(got.MAC) != "mac" {
		t.Fatalf("marker %+v, want %+v", got, m)
	}
	rest, err := s.ListAuditAsc(ctx(), storage.AuditRange{WorkspaceID: "ws_a", Limit: 100})
	must(t, err)
	if len(rest) != len(all)-4 || rest[0].ID != all[4].ID {
		t.Fatalf("%d rows left, first %d; want %d, first %d", len(rest), rest[0].ID, len(all)-4, all[4].ID)
	}
	if string(storage.NextChain(got.Chain, rest[0])) != string(rest[0].Chain) {
		t.Fatal("the first remaining row does not chain from the marker")
	}
	// An older marker (another node behind this one) changes nothing.
	old := m
	old.ThroughID, old.Chain = all[1].ID, all[1].Chain
	n, err = r.PruneAudit(ctx(), storage.PruneAuditArgs{Marker: old})
	must(t, err)
	if n != 0 {
		t.Fatalf("an older marker pruned %d rows", n)
	}
	got, err = r.GetAuditRetention(ctx(), "ws_a")
	must(t, err)
	if got.ThroughID != m.ThroughID {
		t.Fatalf("an older marker replaced the newer one: %d", got.ThroughID)
	}
	// The other workspace is untouched, and the head is kept.
	b, err := s.ListAuditAsc(ctx(), storage.AuditRange{WorkspaceID: "ws_b", Limit: 100})
	must(t, err)
	if len(b) < 10 {
		t.Fatalf("ws_b lost rows: %d", len(b))
	}
	_, err = r.GetAuditRetention(ctx(), "ws_b")
	wantErr(t, err, storage.ErrNotFound)
	head, err := s.GetAuditHead(ctx(), "ws_a")
	must(t, err)
	if head.LastID != all[len(all)-1].ID {
		t.Fatalf("head %d after pruning, want %d", head.LastID, all[len(all)-1].ID)
	}
}
