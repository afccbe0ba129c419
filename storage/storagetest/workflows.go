package storagetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/storage"
)

func workflowTests() []struct {
	name string
	fn   func(t *testing.T, s storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s storage.Store)
	}{
		{"WorkflowDefinitions", testWorkflowDefinitions},
		{"RunIdempotency", testRunIdempotency},
		{"RunLeaseCheckpoint", testRunLeaseCheckpoint},
		{"RunLeaseExpiryFencing", testRunLeaseExpiry},
		{"RunSignals", testRunSignals},
		{"RunCancelRetryCount", testRunCancelRetry},
		{"ListRuns", testListRuns},
		{"DeleteWorkflowCancelsRuns", testDeleteWorkflowCancelsRuns},
		{"LeaseRunsTurns", testLeaseRunsTurns},
		{"LeaseRunsConcurrent", testLeaseRunsConcurrent},
		{"PruneRuns", testPruneRuns},
	}
}

const wfDef = `{"steps":[{"id":"a","request":{"method":"GET","url":"https://example.com/${{ secrets.A }}"}},{"id":"b","sleep":"10m"}]}`

func mkWorkflow(t *testing.T, s storage.Store, ws, name string) storage.Workflow {
	t.Helper()
	w := storage.Workflow{WorkspaceID: ws, Name: name, Definition: json.RawMessage(wfDef), CreatedAt: t0, UpdatedAt: t0}
	must(t, s.PutWorkflow(ctx(), storage.PutWorkflowArgs{Workflow: w}))
	w.Version = 1
	return w
}

func newRun(ws, wf, id string, wake time.Time) storage.WorkflowRun {
	return storage.WorkflowRun{ID: id, WorkspaceID: ws, Workflow: wf, Version: 1, Definition: json.RawMessage(wfDef),
		Input: json.RawMessage(`{"user_id":"u1"}`), Status: storage.RunRunning, WakeAt: wake,
		Steps:     []storage.StepState{{ID: "a", Status: storage.StepRunning}, {ID: "b", Status: storage.StepPending}},
		StartedBy: "key_1", CreatedAt: wake, UpdatedAt: wake}
}

func createRun(t *testing.T, s storage.Store, r storage.WorkflowRun) storage.WorkflowRun {
	t.Helper()
	got, existing, err := s.CreateRun(ctx(), storage.CreateRunArgs{Run: r, Now: r.CreatedAt})
	must(t, err)
	if existing {
		t.Fatalf("CreateRun(%s): existing", r.ID)
	}
	return got
}

func leaseRuns(t *testing.T, s storage.Store, owner string, now time.Time, limit int) []storage.WorkflowRun {
	t.Helper()
	runs, err := s.LeaseRuns(ctx(), storage.LeaseRunsArgs{Owner: owner, Now: now, Limit: limit, Visibility: time.Minute})
	must(t, err)
	return runs
}

func runIDs(runs []storage.WorkflowRun) []string {
	ids := []string{}
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}

func testWorkflowDefinitions(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	w := storage.Workflow{WorkspaceID: "ws_a", Name: "onboard", Definition: json.RawMessage(wfDef), CreatedAt: t0, UpdatedAt: t0}
	must(t, s.PutWorkflow(ctx(), storage.PutWorkflowArgs{Workflow: w, Audit: []storage.AuditEvent{ev("ws_a", "workflow.created", "onboard")}}))
	wantErr(t, s.PutWorkflow(ctx(), storage.PutWorkflowArgs{Workflow: w}), storage.ErrExists)
	got, err := s.GetWorkflow(ctx(), "ws_a", "onboard")
	must(t, err)
	if got.Version != 1 || string(got.Definition) != wfDef || !got.CreatedAt.Equal(t0) {
		t.Fatalf("GetWorkflow = %+v", got)
	}
	_, err = s.GetWorkflow(ctx(), "ws_b", "onboard")
	wantErr(t, err, storage.ErrNotFound)

	w2 := w
	w2.Definition = json.RawMessage(`{"steps":[{"id":"z","sleep":"1s"}]}`)
	w2.CreatedAt, w2.UpdatedAt = t0.Add(time.Hour), t0.Add(time.Hour)
	must(t, s.PutWorkflow(ctx(), storage.PutWorkflowArgs{Workflow: w2, ExpectedVersion: 1}))
	wantErr(t, s.PutWorkflow(ctx(), storage.PutWorkflowArgs{Workflow: w2, ExpectedVersion: 1}), storage.ErrConflict)
	got, err = s.GetWorkflow(ctx(), "ws_a", "onboard")
	must(t, err)
	if got.Version != 2 || string(got.Definition) != string(w2.Definition) || !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after replace: %+v", got)
	}
	wantErr(t, s.PutWorkflow(ctx(), storage.PutWorkflowArgs{Workflow: storage.Workflow{WorkspaceID: "ws_a", Name: "nope"}, ExpectedVersion: 3}), storage.ErrNotFound)

	mkWorkflow(t, s, "ws_a", "alpha")
	list, err := s.ListWorkflows(ctx(), "ws_a")
	must(t, err)
	if len(list) != 2 || list[0].Name != "alpha" || list[1].Name != "onboard" {
		t.Fatalf("ListWorkflows = %+v", list)
	}
	list, err = s.ListWorkflows(ctx(), "ws_b")
	must(t, err)
	if list == nil || len(list) != 0 {
		t.Fatalf("ListWorkflows(ws_b) = %#v, want empty", list)
	}
	wantErr(t, s.DeleteWorkflow(ctx(), storage.DeleteWorkflowArgs{WorkspaceID: "ws_b", Name: "onboard", At: t0}), storage.ErrNotFound)
	must(t, s.DeleteWorkflow(ctx(), storage.DeleteWorkflowArgs{WorkspaceID: "ws_a", Name: "onboard", At: t0, Audit: []storage.AuditEvent{ev("ws_a", "workflow.deleted", "onboard")}}))
	_, err = s.GetWorkflow(ctx(), "ws_a", "onboard")
	wantErr(t, err, storage.ErrNotFound)
	wantErr(t, s.DeleteWorkflow(ctx(), storage.DeleteWorkflowArgs{WorkspaceID: "ws_a", Name: "onboard", At: t0}), storage.ErrNotFound)

	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a", Limit: 10})
	must(t, err)
	if len(page.Events) != 2 || page.Events[0].EventType != "workflow.deleted" || page.Events[1].EventType != "workflow.created" {
		t.Fatalf("audit = %+v", page.Events)
	}
}

func testRunIdempotency(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkWorkflow(t, s, "ws_a", "wf")
	mkWorkflow(t, s, "ws_b", "wf")
	r := newRun("ws_a", "wf", "run_01", t0)
	r.IdempotencyKey = "k1"
	got, existing, err := s.CreateRun(ctx(), storage.CreateRunArgs{Run: r, Now: t0, Audit: []storage.AuditEvent{ev("ws_a", "workflow_run.started", "run_01")}})
	must(t, err)
	if existing || got.ID != "run_01" {
		t.Fatalf("first create: %v %+v", existing, got)
	}
	r2 := newRun("ws_a", "wf", "run_02", t0.Add(time.Minute))
	r2.IdempotencyKey = "k1"
	got, existing, err = s.CreateRun(ctx(), storage.CreateRunArgs{Run: r2, Now: t0.Add(time.Minute), Audit: []storage.AuditEvent{ev("ws_a", "workflow_run.started", "run_02")}})
	must(t, err)
	if !existing || got.ID != "run_01" {
		t.Fatalf("same key: existing=%v id=%s, want run_01", existing, got.ID)
	}
	// The same key in another workspace is another run.
	r3 := newRun("ws_b", "wf", "run_03", t0)
	r3.IdempotencyKey = "k1"
	createRun(t, s, r3)
	// After the window the key starts a new run.
	r4 := newRun("ws_a", "wf", "run_04", t0.Add(storage.IdempotencyWindow+time.Minute))
	r4.IdempotencyKey = "k1"
	got, existing, err = s.CreateRun(ctx(), storage.CreateRunArgs{Run: r4, Now: r4.CreatedAt})
	must(t, err)
	if existing || got.ID != "run_04" {
		t.Fatalf("after window: existing=%v id=%s", existing, got.ID)
	}
	_, _, err = s.CreateRun(ctx(), storage.CreateRunArgs{Run: newRun("ws_a", "nope", "run_05", t0), Now: t0})
	wantErr(t, err, storage.ErrNotFound)

	stored, err := s.GetRun(ctx(), "ws_a", "run_01")
	must(t, err)
	if string(stored.Input) != `{"user_id":"u1"}` || string(stored.Definition) != wfDef || stored.StartedBy != "key_1" || len(stored.Steps) != 2 {
		t.Fatalf("GetRun = %+v", stored)
	}
	_, err = s.GetRun(ctx(), "ws_b", "run_01")
	wantErr(t, err, storage.ErrNotFound)
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a", EventType: "workflow_run.started", Limit: 10})
	must(t, err)
	if len(page.Events) != 1 || page.Events[0].ResourceID != "run_01" {
		t.Fatalf("a repeated create must not audit: %+v", page.Events)
	}
}

func testRunLeaseCheckpoint(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkflow(t, s, "ws_a", "wf")
	createRun(t, s, newRun("ws_a", "wf", "run_01", t0))
	createRun(t, s, newRun("ws_a", "wf", "run_02", t0.Add(time.Hour)))
	got := leaseRuns(t, s, "node-1", t0, 10)
	if len(got) != 1 || got[0].ID != "run_01" || got[0].LeaseOwner != "node-1" || got[0].LeaseToken == 0 || got[0].Leases != 1 {
		t.Fatalf("lease = %+v", got)
	}
	if again := leaseRuns(t, s, "node-2", t0.Add(time.Second), 10); len(again) != 0 {
		t.Fatalf("a held lease was leased again: %v", runIDs(again))
	}
	// Step a completes: checkpoint, keep the lease.
	r := got[0]
	r.Steps[0].Status, r.Steps[0].Output = storage.StepCompleted, json.RawMessage(`{"email":"a@example.com"}`)
	r.Steps[0].Attempts = []storage.Attempt{{N: 1, StartedAt: t0, Duration: time.Millisecond, StatusCode: 200}}
	r.Step = 1
	r.Steps[1].Status = storage.StepSleeping
	r.Status, r.WakeAt = storage.RunWaiting, t0.Add(10*time.Minute)
	stored, err := s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r, LeaseUntil: t0.Add(2 * time.Minute), At: t0.Add(time.Second), Release: true,
		Audit: []storage.AuditEvent{ev("ws_a", "workflow_run.step", "run_01")}})
	must(t, err)
	if stored.LeaseOwner != "" || !stored.LeaseUntil.IsZero() || stored.Step != 1 || stored.Status != storage.RunWaiting {
		t.Fatalf("checkpoint returned %+v", stored)
	}
	read, err := s.GetRun(ctx(), "ws_a", "run_01")
	must(t, err)
	if read.Steps[0].Status != storage.StepCompleted || string(read.Steps[0].Output) != `{"email":"a@example.com"}` || len(read.Steps[0].Attempts) != 1 || read.Steps[0].Attempts[0].StatusCode != 200 {
		t.Fatalf("checkpoint not stored: %+v", read.Steps[0])
	}
	// A sleeping run holds no lease and is not due before it wakes.
	if got := leaseRuns(t, s, "node-1", t0.Add(5*time.Minute), 10); len(got) != 0 {
		t.Fatalf("sleeping run leased early: %v", runIDs(got))
	}
	got = leaseRuns(t, s, "node-2", t0.Add(10*time.Minute), 10)
	if len(got) != 1 || got[0].ID != "run_01" || got[0].LeaseToken <= r.LeaseToken || got[0].Step != 1 {
		t.Fatalf("woken lease = %+v", got)
	}
	// The old holder's token is refused and changes nothing.
	r.Status = storage.RunFailed
	_, err = s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r, At: t0.Add(10 * time.Minute)})
	wantErr(t, err, storage.ErrConflict)
	// Keep the lease while working: it is extended, and still not leasable.
	r = got[0]
	r.Status, r.WakeAt = storage.RunRunning, t0.Add(10*time.Minute)
	stored, err = s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r, LeaseUntil: t0.Add(20 * time.Minute), At: t0.Add(10 * time.Minute)})
	must(t, err)
	if stored.LeaseOwner != "node-2" || !stored.LeaseUntil.Equal(t0.Add(20*time.Minute)) {
		t.Fatalf("kept lease: %+v", stored)
	}
	if got := leaseRuns(t, s, "node-1", t0.Add(15*time.Minute), 10); len(got) != 0 {
		t.Fatalf("an extended lease was leased again: %v", runIDs(got))
	}
	// Finish: the lease goes, the run is never due again.
	r.Status, r.Step, r.WakeAt, r.FinishedAt = storage.RunCompleted, 2, time.Time{}, t0.Add(11*time.Minute)
	r.Steps[1].Status = storage.StepCompleted
	stored, err = s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r, At: t0.Add(11 * time.Minute)})
	must(t, err)
	if stored.Status != storage.RunCompleted || stored.LeaseOwner != "" {
		t.Fatalf("finished: %+v", stored)
	}
	_, err = s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r, At: t0.Add(12 * time.Minute)})
	wantErr(t, err, storage.ErrConflict)
	got = leaseRuns(t, s, "node-1", t0.Add(48*time.Hour), 10)
	if len(got) != 1 || got[0].ID != "run_02" {
		t.Fatalf("only run_02 is left to lease: %v", runIDs(got))
	}
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a", EventType: "workflow_run.step", Limit: 10})
	must(t, err)
	if len(page.Events) != 1 {
		t.Fatalf("checkpoint audit rows = %d, want 1", len(page.Events))
	}
}

func testRunLeaseExpiry(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkflow(t, s, "ws_a", "wf")
	createRun(t, s, newRun("ws_a", "wf", "run_01", t0))
	first := leaseRuns(t, s, "node-1", t0, 1)
	if len(first) != 1 {
		t.Fatal("not leased")
	}
	// node-1 dies: after the visibility timeout another node takes it.
	second := leaseRuns(t, s, "node-2", t0.Add(time.Minute+time.Second), 1)
	if len(second) != 1 || second[0].LeaseOwner != "node-2" || second[0].LeaseToken <= first[0].LeaseToken || second[0].Leases != 2 {
		t.Fatalf("expired lease not retaken: %+v", second)
	}
	r := first[0]
	r.Steps[0].Status, r.Step = storage.StepCompleted, 1
	_, err := s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r, At: t0.Add(2 * time.Minute)})
	wantErr(t, err, storage.ErrConflict)
	read, err := s.GetRun(ctx(), "ws_a", "run_01")
	must(t, err)
	if read.Step != 0 || read.LeaseOwner != "node-2" {
		t.Fatalf("a fenced checkpoint changed the run: %+v", read)
	}
}

func testRunSignals(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkflow(t, s, "ws_a", "wf")
	createRun(t, s, newRun("ws_a", "wf", "run_01", t0))
	got := leaseRuns(t, s, "node-1", t0, 1)
	// A signal arrives while the run is still at an earlier step: kept.
	sg, err := s.SignalRun(ctx(), storage.SignalRunArgs{WorkspaceID: "ws_a", RunID: "run_01", Now: t0.Add(time.Second),
		Signal: storage.RunSignal{Name: "approved", Data: json.RawMessage(`{"user":"ann"}`), SentBy: "key_2"}, Audit: []storage.AuditEvent{ev("ws_a", "workflow_run.signaled", "run_01")}})
	must(t, err)
	if len(sg.Signals) != 1 || sg.Signals[0].Name != "approved" || !sg.Signals[0].ReceivedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("signal = %+v", sg.Signals)
	}
	// The holder, not having seen it, checkpoints a wait for it: the
	// store keeps the signal and makes the run due at once.
	r := got[0]
	r.Steps[0].Status, r.Step = storage.StepWaiting, 0
	r.Status, r.WaitingFor, r.WakeAt = storage.RunWaiting, "approved", time.Time{}
	stored, err := s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r, Release: true, At: t0.Add(2 * time.Second)})
	must(t, err)
	if len(stored.Signals) != 1 || !stored.WakeAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("a signal sent before the wait was lost: %+v", stored)
	}
	got = leaseRuns(t, s, "node-1", t0.Add(3*time.Second), 1)
	if len(got) != 1 || len(got[0].Signals) != 1 || string(got[0].Signals[0].Data) != `{"user":"ann"}` {
		t.Fatalf("lease after signal = %+v", got)
	}
	// Take the signal, then wait for another one without a timeout.
	r = got[0]
	r.Signals[0].UsedBy = "a"
	r.Steps[0].Status, r.Steps[0].Output = storage.StepCompleted, r.Signals[0].Data
	r.Step, r.Status, r.WaitingFor, r.WakeAt = 1, storage.RunWaiting, "second", time.Time{}
	stored, err = s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r, Release: true, At: t0.Add(4 * time.Second)})
	must(t, err)
	if stored.Signals[0].UsedBy != "a" || !stored.WakeAt.IsZero() {
		t.Fatalf("used signal: %+v", stored)
	}
	if got := leaseRuns(t, s, "node-1", t0.Add(100*time.Hour), 1); len(got) != 0 {
		t.Fatal("a wait without a timeout was leased with no signal")
	}
	// A signal of another name does not wake it; its own does.
	_, err = s.SignalRun(ctx(), storage.SignalRunArgs{WorkspaceID: "ws_a", RunID: "run_01", Now: t0.Add(5 * time.Second), Signal: storage.RunSignal{Name: "other"}})
	must(t, err)
	if got := leaseRuns(t, s, "node-1", t0.Add(6*time.Second), 1); len(got) != 0 {
		t.Fatal("woken by another signal's name")
	}
	_, err = s.SignalRun(ctx(), storage.SignalRunArgs{WorkspaceID: "ws_a", RunID: "run_01", Now: t0.Add(7 * time.Second), Signal: storage.RunSignal{Name: "second"}})
	must(t, err)
	got = leaseRuns(t, s, "node-1", t0.Add(7*time.Second), 1)
	if len(got) != 1 || len(got[0].Signals) != 3 {
		t.Fatalf("not woken by its signal: %+v", got)
	}
	_, err = s.SignalRun(ctx(), storage.SignalRunArgs{WorkspaceID: "ws_b", RunID: "run_01", Now: t0, Signal: storage.RunSignal{Name: "second"}})
	wantErr(t, err, storage.ErrNotFound)
	// Bounded.
	for i := 3; i < storage.MaxRunSignals; i++ {
		_, err = s.SignalRun(ctx(), storage.SignalRunArgs{WorkspaceID: "ws_a", RunID: "run_01", Now: t0, Signal: storage.RunSignal{Name: fmt.Sprint("s", i)}})
		must(t, err)
	}
	_, err = s.SignalRun(ctx(), storage.SignalRunArgs{WorkspaceID: "ws_a", RunID: "run_01", Now: t0, Signal: storage.RunSignal{Name: "one-too-many"}})
	wantErr(t, err, storage.ErrConflict)
	page, err := s.ListAudit(ctx(), storage.AuditQuery{WorkspaceID: "ws_a", EventType: "workflow_run.signaled", Limit: 10})
	must(t, err)
	if len(page.Events) != 1 {
		t.Fatalf("signal audit rows = %d", len(page.Events))
	}
}

func testRunCancelRetry(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkflow(t, s, "ws_a", "wf")
	createRun(t, s, newRun("ws_a", "wf", "run_01", t0))
	createRun(t, s, newRun("ws_a", "wf", "run_02", t0))
	got := leaseRuns(t, s, "node-1", t0, 2)
	if len(got) != 2 {
		t.Fatalf("leased %d", len(got))
	}
	var r1, r2 storage.WorkflowRun
	for _, r := range got {
		if r.ID == "run_01" {
			r1 = r
		} else {
			r2 = r
		}
	}
	c, err := s.CancelRun(ctx(), storage.CancelRunArgs{WorkspaceID: "ws_a", RunID: "run_01", At: t0.Add(time.Second), Audit: []storage.AuditEvent{ev("ws_a", "workflow_run.canceled", "run_01")}})
	must(t, err)
	if c.Status != storage.RunCanceled || c.LeaseOwner != "" || c.Steps[0].Status != storage.StepCanceled || c.FinishedAt.IsZero() {
		t.Fatalf("cancel = %+v", c)
	}
	// The holder is fenced out.
	r1.Steps[0].Status, r1.Step = storage.StepCompleted, 1
	_, err = s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r1, At: t0.Add(2 * time.Second)})
	wantErr(t, err, storage.ErrConflict)
	_, err = s.CancelRun(ctx(), storage.CancelRunArgs{WorkspaceID: "ws_a", RunID: "run_01", At: t0})
	wantErr(t, err, storage.ErrConflict)
	_, err = s.RetryRun(ctx(), storage.RetryRunArgs{WorkspaceID: "ws_a", RunID: "run_02", At: t0})
	wantErr(t, err, storage.ErrConflict) // running, not failed

	// run_02 fails at step a after 3 attempts, then is retried by hand.
	r2.Steps[0].Attempts = []storage.Attempt{{N: 1, StatusCode: 500, ErrorCode: "http_status"}, {N: 2, StatusCode: 500, ErrorCode: "http_status"}, {N: 3, StatusCode: 500, ErrorCode: "http_status"}}
	r2.Steps[0].Status, r2.Steps[0].ErrorCode, r2.Steps[0].StartedAt = storage.StepFailed, "http_status", t0
	r2.Status, r2.ErrorCode, r2.WakeAt, r2.FinishedAt = storage.RunFailed, "http_status", time.Time{}, t0.Add(time.Second)
	_, err = s.CheckpointRun(ctx(), storage.CheckpointRunArgs{Run: r2, At: t0.Add(time.Second)})
	must(t, err)
	counts, err := s.CountRuns(ctx())
	must(t, err)
	if counts[storage.RunFailed] != 1 || counts[storage.RunCanceled] != 1 || counts[storage.RunRunning] != 0 {
		t.Fatalf("CountRuns = %v", counts)
	}
	rt, err := s.RetryRun(ctx(), storage.RetryRunArgs{WorkspaceID: "ws_a", RunID: "run_02", At: t0.Add(time.Minute)})
	must(t, err)
	if rt.Status != storage.RunRunning || rt.Step != 0 || rt.Steps[0].Status != storage.StepRunning || rt.Steps[0].RetryFrom != 3 || rt.ErrorCode != "" || !rt.FinishedAt.IsZero() || !rt.Steps[0].StartedAt.IsZero() {
		t.Fatalf("retry = %+v", rt)
	}
	got = leaseRuns(t, s, "node-1", t0.Add(time.Minute), 5)
	if len(got) != 1 || got[0].ID != "run_02" || len(got[0].Steps[0].Attempts) != 3 {
		t.Fatalf("retried run not due: %+v", got)
	}
	counts, err = s.CountRuns(ctx())
	must(t, err)
	if counts[storage.RunFailed] != 0 || counts[storage.RunRunning] != 1 {
		t.Fatalf("CountRuns after retry = %v", counts)
	}
}

func testListRuns(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkWorkflow(t, s, "ws_a", "one")
	mkWorkflow(t, s, "ws_a", "two")
	mkWorkflow(t, s, "ws_b", "one")
	for i := range 7 {
		wf := "one"
		if i%2 == 1 {
			wf = "two"
		}
		createRun(t, s, newRun("ws_a", wf, fmt.Sprintf("run_%02d", i), t0))
	}
	createRun(t, s, newRun("ws_b", "one", "run_99", t0))
	_, err := s.CancelRun(ctx(), storage.CancelRunArgs{WorkspaceID: "ws_a", RunID: "run_04", At: t0})
	must(t, err)

	var all []string
	before := ""
	for range 10 {
		p, err := s.ListRuns(ctx(), storage.RunQuery{WorkspaceID: "ws_a", Before: before, Limit: 3})
		must(t, err)
		all = append(all, runIDs(p.Runs)...)
		if p.Next == "" {
			break
		}
		before = p.Next
	}
	if fmt.Sprint(all) != "[run_06 run_05 run_04 run_03 run_02 run_01 run_00]" {
		t.Fatalf("pages = %v", all)
	}
	p, err := s.ListRuns(ctx(), storage.RunQuery{WorkspaceID: "ws_a", Workflow: "one", Limit: 10})
	must(t, err)
	if fmt.Sprint(runIDs(p.Runs)) != "[run_06 run_04 run_02 run_00]" {
		t.Fatalf("by workflow = %v", runIDs(p.Runs))
	}
	p, err = s.ListRuns(ctx(), storage.RunQuery{WorkspaceID: "ws_a", Workflow: "one", Status: storage.RunRunning, Limit: 10})
	must(t, err)
	if fmt.Sprint(runIDs(p.Runs)) != "[run_06 run_02 run_00]" {
		t.Fatalf("by status = %v", runIDs(p.Runs))
	}
	p, err = s.ListRuns(ctx(), storage.RunQuery{WorkspaceID: "ws_b", Limit: 10})
	must(t, err)
	if fmt.Sprint(runIDs(p.Runs)) != "[run_99]" {
		t.Fatalf("ws_b = %v", runIDs(p.Runs))
	}
	p, err = s.ListRuns(ctx(), storage.RunQuery{WorkspaceID: "ws_c", Limit: 10})
	must(t, err)
	if p.Runs == nil || len(p.Runs) != 0 {
		t.Fatalf("empty workspace = %#v", p.Runs)
	}
}

func testDeleteWorkflowCancelsRuns(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkflow(t, s, "ws_a", "wf")
	mkWorkflow(t, s, "ws_a", "keep")
	createRun(t, s, newRun("ws_a", "wf", "run_01", t0))
	createRun(t, s, newRun("ws_a", "keep", "run_02", t0))
	must(t, s.DeleteWorkflow(ctx(), storage.DeleteWorkflowArgs{WorkspaceID: "ws_a", Name: "wf", At: t0.Add(time.Second)}))
	r, err := s.GetRun(ctx(), "ws_a", "run_01")
	must(t, err)
	if r.Status != storage.RunCanceled {
		t.Fatalf("run of a deleted workflow is %s", r.Status)
	}
	got := leaseRuns(t, s, "n", t0.Add(time.Hour), 10)
	if fmt.Sprint(runIDs(got)) != "[run_02]" {
		t.Fatalf("leased %v", runIDs(got))
	}
}

func testLeaseRunsTurns(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkspace(t, s, "ws_b")
	mkWorkflow(t, s, "ws_a", "wf")
	mkWorkflow(t, s, "ws_b", "wf")
	// ws_a has a deep backlog of older runs; ws_b one newer run.
	for i := range 20 {
		createRun(t, s, newRun("ws_a", "wf", fmt.Sprintf("run_a%02d", i), t0.Add(time.Duration(i)*time.Millisecond)))
	}
	createRun(t, s, newRun("ws_b", "wf", "run_b00", t0.Add(time.Second)))
	got := leaseRuns(t, s, "n", t0.Add(time.Minute), 2)
	ws := map[string]int{}
	for _, r := range got {
		ws[r.WorkspaceID]++
	}
	if ws["ws_a"] != 1 || ws["ws_b"] != 1 {
		t.Fatalf("workspaces did not take turns: %v", runIDs(got))
	}
	// A workspace slot bound holds ws_a back.
	got, err := s.LeaseRuns(ctx(), storage.LeaseRunsArgs{Owner: "n", Now: t0.Add(time.Minute), Limit: 10, Visibility: time.Minute, WorkspaceSlots: map[string]int{"ws_a": 3}})
	must(t, err)
	if len(got) != 3 {
		t.Fatalf("slots: leased %d, want 3", len(got))
	}
	for _, r := range got {
		if r.WorkspaceID != "ws_a" {
			t.Fatalf("leased %s", r.ID)
		}
	}
}

// testLeaseRunsConcurrent: callers leasing at once (nodes sharing a
// database) never hold the same run under the same lease.
func testLeaseRunsConcurrent(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkflow(t, s, "ws_a", "wf")
	const runs = 40
	for i := range runs {
		createRun(t, s, newRun("ws_a", "wf", fmt.Sprintf("run_%02d", i), t0))
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprint("node-", w)
			// Bounded, but generous: callers that lose every race to the
			// others' row locks come back empty, and a loaded machine
			// makes that common.
			for range 400 {
				got, err := s.LeaseRuns(ctx(), storage.LeaseRunsArgs{Owner: owner, Now: t0.Add(time.Second), Limit: 3, Visibility: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, r := range got {
					if prev, ok := seen[r.ID]; ok {
						mu.Unlock()
						errs <- fmt.Errorf("run %s leased by %s and %s", r.ID, prev, owner)
						return
					}
					seen[r.ID] = owner
				}
				n := len(seen)
				mu.Unlock()
				if n == runs {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatal(err)
		}
	}
	if len(seen) != runs {
		t.Fatalf("leased %d of %d", len(seen), runs)
	}
}

func testPruneRuns(t *testing.T, s storage.Store) {
	mkWorkspace(t, s, "ws_a")
	mkWorkflow(t, s, "ws_a", "wf")
	for i := range 4 {
		r := newRun("ws_a", "wf", fmt.Sprintf("run_%02d", i), t0.Add(time.Duration(i)*time.Second))
		r.IdempotencyKey = fmt.Sprint("k", i)
		createRun(t, s, r)
	}
	for _, id := range []string{"run_00", "run_01"} {
		_, err := s.CancelRun(ctx(), storage.CancelRunArgs{WorkspaceID: "ws_a", RunID: id, At: t0.Add(time.Minute)})
		must(t, err)
	}
	n, err := s.PruneRuns(ctx(), storage.PruneRunsArgs{Before: t0.Add(30 * time.Second), Limit: 10})
	must(t, err)
	if n != 0 {
		t.Fatalf("pruned %d runs finished after Before", n)
	}
	n, err = s.PruneRuns(ctx(), storage.PruneRunsArgs{Before: t0.Add(2 * time.Minute), Limit: 1})
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d, want 1 (the limit)", n)
	}
	n, err = s.PruneRuns(ctx(), storage.PruneRunsArgs{Before: t0.Add(2 * time.Minute), Limit: 10})
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d, want the other finished run", n)
	}
	p, err := s.ListRuns(ctx(), storage.RunQuery{WorkspaceID: "ws_a", Limit: 10})
	must(t, err)
	if fmt.Sprint(runIDs(p.Runs)) != "[run_03 run_02]" {
		t.Fatalf("left = %v", runIDs(p.Runs))
	}
	counts, err := s.CountRuns(ctx())
	must(t, err)
	if counts[storage.RunCanceled] != 0 || counts[storage.RunRunning] != 2 {
		t.Fatalf("counts after prune = %v", counts)
	}
	// The pruned run's idempotency key is free again.
	r := newRun("ws_a", "wf", "run_10", t0.Add(3*time.Minute))
	r.IdempotencyKey = "k0"
	if _, existing, err := s.CreateRun(ctx(), storage.CreateRunArgs{Run: r, Now: r.CreatedAt}); err != nil || existing {
		t.Fatalf("key of a pruned run: existing=%v err=%v", existing, err)
	}
}
