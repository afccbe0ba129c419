package proxy_test

import (
	"context"
	"encoding/json"
	"testing"

	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

func accessRows(t *testing.T, e *env) []storage.AuditEvent {
	t.Helper()
	if err := e.vault.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, err := e.store.ListAudit(context.Background(), storage.AuditQuery{WorkspaceID: e.op.WorkspaceID, EventType: vault.EventSecretAccessed, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return page.Events
}

// TestInternalActor: a dispatch request names the key on whose behalf it
// is sent (the key that enqueued the job or started the run), and the
// secret.accessed row carries it as actor, with the run and step.
func TestInternalActor(t *testing.T) {
	e := newEnv(t, func(o *proxy.Options) { o.InternalToken = "the-internal-token" })
	e.secret("TOKEN", "actor-test-value-0042")
	up := newUpstream(t, false)
	disp := e.client("", nil)
	r := e.send(disp, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}",
		"Proxy-Authorization", "Bearer the-internal-token", proxy.HeaderInternalWorkspace, e.op.WorkspaceID,
		proxy.HeaderInternalActor, "key_started_the_run", proxy.HeaderInternalRun, "run_1", proxy.HeaderInternalStep, "fetch", proxy.HeaderInternalAttempt, "1")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	rows := accessRows(t, e)
	if len(rows) != 1 || rows[0].ActorID != "key_started_the_run" {
		t.Fatalf("access rows: %+v", rows)
	}
	var in map[string]string
	json.Unmarshal(rows[0].Input, &in)
	if in["run_id"] != "run_1" || in["step_id"] != "fetch" || in["attempt"] != "1" {
		t.Fatalf("access row input: %s", rows[0].Input)
	}
	// An actor that is not a plain id (a forged log line, say) is not
	// taken: the row says dispatcher.
	e.send(disp, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}",
		"Proxy-Authorization", "Bearer the-internal-token", proxy.HeaderInternalWorkspace, e.op.WorkspaceID,
		proxy.HeaderInternalActor, "key 1\" admin", proxy.HeaderInternalJob, "job_1", proxy.HeaderInternalAttempt, "1")
	rows = accessRows(t, e)
	if len(rows) != 2 || rows[0].ActorID != proxy.DispatcherActor || string(rows[0].Input) == "" {
		t.Fatalf("access rows: %+v", rows)
	}
}

// TestAttackForgedActor: a worker cannot make its secret access look like
// another key's: Rotor-Internal-Actor is honoured only with the internal
// token, so the row names the worker's own key.
func TestAttackForgedActor(t *testing.T) {
	e := newEnv(t, func(o *proxy.Options) { o.InternalToken = "the-internal-token" })
	e.secret("TOKEN", "actor-test-value-0043")
	up := newUpstream(t, false)
	r := e.send(e.client(e.key, nil), "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}",
		proxy.HeaderInternalActor, "key_someone_else", proxy.HeaderInternalWorkspace, e.op.WorkspaceID,
		proxy.HeaderInternalRun, "run_forged", proxy.HeaderInternalStep, "s")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	rows := accessRows(t, e)
	if len(rows) != 1 || rows[0].ActorID != e.op.KeyID {
		t.Fatalf("a worker set the actor: %+v (want %s)", rows, e.op.KeyID)
	}
	var in map[string]string
	json.Unmarshal(rows[0].Input, &in)
	if in["run_id"] != "" || in["step_id"] != "" {
		t.Fatalf("a worker set audit fields: %s", rows[0].Input)
	}
	if h := up.last(t).Header; h.Get(proxy.HeaderInternalActor) != "" || h.Get(proxy.HeaderInternalRun) != "" {
		t.Fatalf("the upstream got the internal headers: %v", h)
	}
}

// TestOneAccessRowPerSecret: a request naming a secret in several places
// (bench/proxyload's GET: TOKEN in the query and the Authorization header,
// USER in the path, and both again in the body) resolves each name once
// and writes one secret.accessed row per (request, secret), both with the
// request's id, whatever the number of references.
func TestOneAccessRowPerSecret(t *testing.T) {
	e := newEnv(t)
	e.secret("TOKEN", "one-row-token-value-0044")
	e.secret("USER", "one-row-user-0045")
	up := newUpstream(t, false)
	r := e.send(e.client(e.key, nil), "POST", up.URL+"/users/${{%20secrets.USER%20}}/x?token=${{%20secrets.TOKEN%20}}",
		"application/json", `{"u":"${{ secrets.USER }}","t":"${{ secrets.TOKEN }}"}`,
		"Authorization", "Bearer ${{ secrets.TOKEN }}")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	rows := accessRows(t, e)
	names := map[string]int{}
	ids := map[string]bool{}
	for _, row := range rows {
		names[row.ResourceID]++
		var in map[string]string
		json.Unmarshal(row.Input, &in)
		ids[in["request_id"]] = true
	}
	if len(rows) != 2 || names["TOKEN"] != 1 || names["USER"] != 1 || len(ids) != 1 || ids[""] {
		t.Fatalf("access rows for one request resolving TOKEN and USER: %d rows, by name %v, request ids %v", len(rows), names, ids)
	}
}
