package api_test

import (
	"strings"
	"testing"
)

// TestIdempotencyKeyHeader: the IETF draft's Idempotency-Key header dedupes
// enqueues like the body field; both set and different is a 422.
func TestIdempotencyKeyHeader(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"q","callback_url":"https://x.example/"}`), 201)
	first := e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":1}`, "Idempotency-Key", "order-1"), 201).json(t)
	if first["idempotency_key"] != "order-1" {
		t.Fatalf("job = %v", first)
	}
	again := e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":2}`, "Idempotency-Key", "order-1"), 200)
	if again.json(t)["id"] != first["id"] || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %s", again.body)
	}
	// The draft's structured-field form and the body field name the same key.
	for _, hdr := range []string{`"order-1"`, ""} {
		body := `{"payload":3}`
		if hdr == "" {
			body = `{"payload":3,"idempotency_key":"order-1"}`
		}
		r := e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, body, "Idempotency-Key", hdr), 200)
		if r.json(t)["id"] != first["id"] {
			t.Fatalf("header %q: %s", hdr, r.body)
		}
	}
	// Both, agreeing: fine. Both, differing: 422 naming both.
	e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":4,"idempotency_key":"order-1"}`, "Idempotency-Key", "order-1"), 200)
	r := e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":5,"idempotency_key":"order-2"}`, "Idempotency-Key", "order-3")
	if r.status != 422 || r.errCode(t) != "invalid_job" || !strings.Contains(string(r.body), "Idempotency-Key") {
		t.Fatalf("differing keys: %d %s", r.status, r.body)
	}
	for _, bad := range []string{`""`, `"a\"b"`, strings.Repeat("k", 300)} {
		if r := e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":6}`, "Idempotency-Key", bad); r.status != 422 {
			t.Fatalf("header %q: %d %s", bad, r.status, r.body)
		}
	}
}
