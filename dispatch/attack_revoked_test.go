package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

// memberKey creates a member key in the harness's workspace and returns
// its actor (what the API would authenticate it as).
func memberKey(t *testing.T, h *harness) vault.Actor {
	t.Helper()
	rec, _, err := h.ve.Vault.CreateAPIKey(context.Background(), h.ve.Operator, vault.CreateAPIKeyRequest{Name: "leaver", Role: vault.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	return vault.Actor{KeyID: rec.ID, WorkspaceID: rec.WorkspaceID, Role: rec.Role}
}

func (h *harness) enqueueAs(actor vault.Actor, queue, payload string, delay time.Duration) storage.Job {
	h.t.Helper()
	j, _, err := h.svc.Enqueue(context.Background(), actor, queue, dispatch.EnqueueRequest{Payload: json.RawMessage(payload), Delay: delay})
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

// refusedRows are the workspace's job.refused audit rows.
func refusedRows(t *testing.T, h *harness) []storage.AuditEvent {
	t.Helper()
	if err := h.ve.Vault.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, err := h.ve.Store.ListAudit(context.Background(), storage.AuditQuery{WorkspaceID: h.ve.Operator.WorkspaceID, EventType: "job.refused"})
	if err != nil {
		t.Fatal(err)
	}
	return page.Events
}

// TestAttackRevokedEnqueuerQueued: a member key leaks; the attacker
// enqueues jobs whose payload references the workspace's secrets (and
// which get the workspace's callback credentials). The owner revokes the
// key before the jobs are due. They were delivered anyway, resolving the
// secrets for a key that no longer works anywhere else. Now each attempt
// checks the enqueuing key first: the jobs end dead with actor_revoked,
// an audit row each, and the callback gets nothing. A job the operator
// enqueued at the same time is still delivered.
func TestAttackRevokedEnqueuerQueued(t *testing.T) {
	h := newHarness(t)
	h.queue("q", dispatch.QueueSpec{CallbackHeaders: &map[string]string{"X-API-Key": "${{ secrets.NOTIFY_TOKEN }}"}})
	h.start()
	leaver := memberKey(t, h)
	var bad []storage.Job
	for range 3 {
		bad = append(bad, h.enqueueAs(leaver, "q", `{"t":"${{ secrets.NOTIFY_TOKEN }}"}`, time.Minute))
	}
	good := h.enqueueAs(h.ve.Operator, "q", `{"ok":true}`, time.Minute)
	time.Sleep(20 * time.Millisecond) // polls: none is due yet
	if n := h.calls(); n != 0 {
		t.Fatalf("%d deliveries before the jobs were due", n)
	}
	if err := h.ve.Vault.RevokeAPIKey(context.Background(), h.ve.Operator, leaver.KeyID); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(2 * time.Minute)
	h.waitJob(good.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	for _, b := range bad {
		j := h.waitJob(b.ID, "finished", func(j storage.Job) bool { return j.Status == storage.JobDead || j.Status == storage.JobDelivered })
		if j.Status != storage.JobDead || len(j.Attempts) != 1 || j.Attempts[0].ErrorCode != "actor_revoked" || j.Attempts[0].StatusCode != 0 {
			t.Fatalf("job of the revoked key: %s, attempts %+v; want dead with one actor_revoked attempt", j.Status, j.Attempts)
		}
	}
	if n := h.calls(); n != 1 || h.last().Header.Get("webhook-id") != good.ID {
		t.Fatalf("the callback got %d requests; want only the operator's job", n)
	}
	rows := refusedRows(t, h)
	if len(rows) != len(bad) {
		t.Fatalf("%d job.refused rows, want %d", len(rows), len(bad))
	}
	for _, r := range rows {
		if r.ActorID != leaver.KeyID || r.ResourceType != "job" || !strings.Contains(string(r.Output), `"reason":"actor_revoked"`) ||
			strings.Contains(string(r.Input)+string(r.Output), token) {
			t.Fatalf("audit row %+v (input %s, output %s)", r, r.Input, r.Output)
		}
	}
}

// TestAttackRevokedEnqueuerRetry: a job of the key fails its first
// attempt and waits for its retry; the key is revoked meanwhile. The
// retry is not sent.
func TestAttackRevokedEnqueuerRetry(t *testing.T) {
	h := newHarness(t)
	var fail atomic.Bool
	fail.Store(true)
	h.respond = func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(500)
		}
	}
	h.queue("q", dispatch.QueueSpec{MaxAttempts: ptr(5), BackoffBase: ptr(10 * time.Second), BackoffCap: ptr(time.Minute)})
	h.start()
	leaver := memberKey(t, h)
	j := h.enqueueAs(leaver, "q", `{}`, 0)
	j = h.waitJob(j.ID, "attempted once", attempts(1))
	if j.Status != storage.JobQueued || h.calls() != 1 {
		t.Fatalf("after attempt 1: %s, %d calls", j.Status, h.calls())
	}
	fail.Store(false)
	if err := h.ve.Vault.RevokeAPIKey(context.Background(), h.ve.Operator, leaver.KeyID); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Hour)
	j = h.waitJob(j.ID, "finished", func(j storage.Job) bool { return j.Status == storage.JobDead || j.Status == storage.JobDelivered })
	if j.Status != storage.JobDead || len(j.Attempts) != 2 || j.Attempts[1].ErrorCode != "actor_revoked" || h.calls() != 1 {
		t.Fatalf("retry after revocation: %s, attempts %+v, %d calls; want dead, actor_revoked, nothing more sent", j.Status, j.Attempts, h.calls())
	}
	// Retrying it by hand does not revive the revoked key's job: it still
	// acts for that key.
	if _, err := h.svc.RetryJob(context.Background(), h.ve.Operator, j.ID); err != nil {
		t.Fatal(err)
	}
	j = h.waitJob(j.ID, "finished again", func(j storage.Job) bool { return len(j.Attempts) == 3 && j.Status != storage.JobLeased })
	if j.Status != storage.JobDead || j.Attempts[2].ErrorCode != "actor_revoked" || h.calls() != 1 {
		t.Fatalf("hand retry: %s, attempts %+v, %d calls", j.Status, j.Attempts, h.calls())
	}
	if n := len(refusedRows(t, h)); n != 2 {
		t.Fatalf("%d job.refused rows, want 2", n)
	}
}

// unsure is an enqueuer check that cannot tell while down is set (storage
// failing).
type unsure struct {
	dispatch.Actors
	down  *atomic.Bool
	asked *atomic.Int32
}

func (u unsure) ActorActive(ctx context.Context, ws, key string) error {
	u.asked.Add(1)
	if u.down.Load() {
		return errors.New("storage unavailable")
	}
	return u.Actors.ActorActive(ctx, ws, key)
}

// TestEnqueuerUncheckedNotSent: while the enqueuing key cannot be checked,
// the job is not sent unchecked, and no attempt is spent: it is due again
// a few seconds later and delivered once the check answers.
func TestEnqueuerUncheckedNotSent(t *testing.T) {
	var down atomic.Bool
	var asked atomic.Int32
	down.Store(true)
	h := newHarnessActors(t, false, nil, func(a dispatch.Actors) dispatch.Actors { return unsure{a, &down, &asked} })
	h.queue("q", dispatch.QueueSpec{})
	h.start()
	t0 := h.clock.Now()
	j := h.enqueueAs(memberKey(t, h), "q", `{}`, 0)
	j = h.waitJob(j.ID, "postponed", func(j storage.Job) bool { return j.Status == storage.JobQueued && j.RunAt.After(t0) })
	if len(j.Attempts) != 0 || h.calls() != 0 || asked.Load() == 0 {
		t.Fatalf("unchecked: %d attempts, %d calls, asked %d", len(j.Attempts), h.calls(), asked.Load())
	}
	down.Store(false)
	h.clock.Advance(time.Minute)
	j = h.waitJob(j.ID, "delivered", func(j storage.Job) bool { return j.Status == storage.JobDelivered })
	if len(j.Attempts) != 1 || h.calls() != 1 {
		t.Fatalf("after the check answered: %d attempts, %d calls", len(j.Attempts), h.calls())
	}
}

// unrecorded is an enqueuer check whose refusals cannot be audited while
// full is set (the audit backlog at its bound).
type unrecorded struct {
	dispatch.Actors
	full *atomic.Bool
}

func (u unrecorded) RecordRefusal(ctx context.Context, r vault.Refusal) error {
	if u.full.Load() {
		return vault.ErrAuditUnavailable
	}
	return u.Actors.RecordRefusal(ctx, r)
}

// TestRevokedEnqueuerRefusalUnrecorded: a revoked key's job whose refusal
// cannot be audited is neither sent nor ended unrecorded: it waits, with
// no attempt spent, and ends dead with its job.refused row once the audit
// takes rows again.
func TestRevokedEnqueuerRefusalUnrecorded(t *testing.T) {
	var full atomic.Bool
	full.Store(true)
	h := newHarnessActors(t, false, nil, func(a dispatch.Actors) dispatch.Actors { return unrecorded{a, &full} })
	h.queue("q", dispatch.QueueSpec{})
	leaver := memberKey(t, h)
	if err := h.ve.Vault.RevokeAPIKey(context.Background(), h.ve.Operator, leaver.KeyID); err != nil {
		t.Fatal(err)
	}
	h.start()
	t0 := h.clock.Now()
	j := h.enqueueAs(leaver, "q", `{}`, 0)
	j = h.waitJob(j.ID, "postponed", func(j storage.Job) bool { return j.Status == storage.JobQueued && j.RunAt.After(t0) })
	if len(j.Attempts) != 0 || h.calls() != 0 || len(refusedRows(t, h)) != 0 {
		t.Fatalf("unrecorded refusal: %s, %d attempts, %d calls", j.Status, len(j.Attempts), h.calls())
	}
	full.Store(false)
	h.clock.Advance(time.Minute)
	j = h.waitJob(j.ID, "dead", func(j storage.Job) bool { return j.Status == storage.JobDead })
	if len(j.Attempts) != 1 || j.Attempts[0].ErrorCode != "actor_revoked" || h.calls() != 0 || len(refusedRows(t, h)) != 1 {
		t.Fatalf("after the audit answered: %d attempts %+v, %d calls, %d rows", len(j.Attempts), j.Attempts, h.calls(), len(refusedRows(t, h)))
	}
}
