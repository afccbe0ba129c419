package api_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/vault/vaulttest"
)

func newQuotaEnv(t *testing.T, q api.Quotas) *env {
	t.Helper()
	ve := vaulttest.New(t)
	queues := dispatch.NewService(ve.Store, ve.Vault, nil, nil)
	srv := httptest.NewServer(api.New(api.Options{Vault: ve.Vault, Queues: queues, Logger: ve.Logger, Registerer: ve.Registry, Quotas: q, Usage: ve.Store}))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, vault: ve.Vault, store: ve.Store, dbPath: ve.DBPath, key: ve.Key, logs: ve.Logs, reg: ve.Registry, bodies: &leakcheck.Buffer{}}
}

func quotaQueue(e *env) {
	e.mustStatus(e.do("PATCH", "/v1/queues/q", e.key, `{"callback_url":"https://api.example.com/hook","concurrency":1}`), 201)
}

// TestQuotaPayloadTooLarge: one payload over the limit is a 413 with a
// JSON error, and stores nothing.
func TestQuotaPayloadTooLarge(t *testing.T) {
	e := newQuotaEnv(t, api.Quotas{MaxPayloadBytes: 1000})
	quotaQueue(e)
	big := `{"payload":{"blob":"` + strings.Repeat("x", 1200) + `"}}`
	r := e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, big), 413)
	if r.errCode(t) != api.CodePayloadTooLarge {
		t.Fatalf("code = %s", r.body)
	}
	e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":{"blob":"small"}}`), 201)
	if l := e.mustStatus(e.do("GET", "/v1/queues/q/jobs", e.key, ""), 200); strings.Count(string(l.body), `"id":"job_`) != 1 {
		t.Fatalf("jobs = %s", l.body)
	}
}

// TestQuotaOpenJobs: past the queued-jobs limit enqueues are 429 with
// Retry-After; the jobs already queued are kept; delivering or canceling
// makes room again.
func TestQuotaOpenJobs(t *testing.T) {
	e := newQuotaEnv(t, api.Quotas{MaxOpenJobs: 5})
	quotaQueue(e)
	var ids []string
	for range 5 {
		ids = append(ids, e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":{"n":1},"delay_seconds":2592000}`), 201).json(t)["id"].(string))
	}
	r := e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":{"n":1}}`), 429)
	if r.errCode(t) != api.CodeQuotaExceeded || r.header.Get("Retry-After") != "30" {
		t.Fatalf("over quota: %d %s Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
	}
	for _, id := range ids {
		if j := e.mustStatus(e.do("GET", "/v1/jobs/"+id, e.key, ""), 200).json(t); j["status"] != "queued" {
			t.Fatalf("stored job changed: %v", j)
		}
	}
	e.mustStatus(e.do("DELETE", "/v1/jobs/"+ids[0], e.key, ""), 200)
	time.Sleep(1100 * time.Millisecond) // the usage read is reused for a second
	e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":{"n":1}}`), 201)
	e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":{"n":1}}`), 429)
}

// TestQuotaStoredBytes: the workspace's queued payload bytes are bounded
// (the 1 MiB payloads with a 30-day delay).
func TestQuotaStoredBytes(t *testing.T) {
	e := newQuotaEnv(t, api.Quotas{MaxPayloadBytes: 1 << 20, MaxOpenBytes: 3 << 10})
	quotaQueue(e)
	body := `{"payload":{"blob":"` + strings.Repeat("y", 1000) + `"},"delay_seconds":2592000}`
	for range 3 {
		e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, body), 201)
	}
	r := e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, body), 429)
	if r.errCode(t) != api.CodeQuotaExceeded || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "bytes") {
		t.Fatalf("over byte quota: %s", r.body)
	}
	// A smaller payload that still fits is accepted.
	e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":1}`), 201)
}
