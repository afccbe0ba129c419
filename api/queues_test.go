package api_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestGuideQueueSteps: the product guide's queue calls on a fresh install.
func TestGuideQueueSteps(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"NOTIFY_TOKEN","value":"your-token-here"}`), 201)
	// PATCH creates the queue when it does not exist and sets callback_url.
	r := e.mustStatus(e.do("PATCH", "/v1/queues/notifications", e.key, `{"callback_url":"https://api.example.com/notify?token=${{ secrets.NOTIFY_TOKEN }}"}`), 201).json(t)
	if r["callback_url"] != "https://api.example.com/notify?token=${{ secrets.NOTIFY_TOKEN }}" || r["max_attempts"].(float64) != 10 {
		t.Fatalf("queue = %v", r)
	}
	r = e.mustStatus(e.do("PATCH", "/v1/queues/notifications", e.key, `{"callback_headers":{"X-API-Key":"${{ secrets.NOTIFY_TOKEN }}"}}`), 200).json(t)
	if r["callback_headers"].(map[string]any)["X-API-Key"] != "${{ secrets.NOTIFY_TOKEN }}" || !strings.Contains(r["callback_url"].(string), "notify") {
		t.Fatalf("queue = %v", r)
	}
	// Enqueue, then the job and its listing.
	j := e.mustStatus(e.do("POST", "/v1/queues/notifications/jobs", e.key, `{"payload":{"event":"signup"},"idempotency_key":"k1"}`), 201).json(t)
	if j["status"] != "queued" || !strings.HasPrefix(j["id"].(string), "job_") {
		t.Fatalf("job = %v", j)
	}
	again := e.mustStatus(e.do("POST", "/v1/queues/notifications/jobs", e.key, `{"payload":{"event":"other"},"idempotency_key":"k1"}`), 200)
	if again.header.Get("Idempotent-Replayed") != "true" || again.json(t)["id"] != j["id"] {
		t.Fatalf("replay = %s", again.body)
	}
	got := e.mustStatus(e.do("GET", "/v1/jobs/"+j["id"].(string), e.key, ""), 200).json(t)
	if got["queue"] != "notifications" || got["payload"].(map[string]any)["event"] != "signup" {
		t.Fatalf("get job = %v", got)
	}
	list := e.mustStatus(e.do("GET", "/v1/queues/notifications/jobs?status=queued", e.key, ""), 200)
	var lr struct {
		Jobs []map[string]any `json:"jobs"`
	}
	json.Unmarshal(list.body, &lr)
	if len(lr.Jobs) != 1 {
		t.Fatalf("list = %s", list.body)
	}
	c := e.mustStatus(e.do("DELETE", "/v1/jobs/"+j["id"].(string), e.key, ""), 200).json(t)
	if c["status"] != "canceled" {
		t.Fatalf("cancel = %v", c)
	}
	e.mustStatus(e.do("DELETE", "/v1/jobs/"+j["id"].(string), e.key, ""), 409)
	e.mustStatus(e.do("POST", "/v1/jobs/"+j["id"].(string)+"/retry", e.key, ""), 200)
	e.mustStatus(e.do("POST", "/v1/queues/notifications/jobs/retry", e.key, ""), 200)
	lq := e.mustStatus(e.do("GET", "/v1/queues", e.key, ""), 200)
	if !strings.Contains(string(lq.body), `"name":"notifications"`) {
		t.Fatalf("list queues = %s", lq.body)
	}
}

func TestQueueValidation(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"TOKEN","value":"v"}`), 201)
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"missing secret", `{"name":"q","callback_url":"https://x.example/${{ secrets.NOPE }}","callback_headers":{"K":"${{ secrets.ALSO_NOPE }}"}}`, 422, "missing_secrets"},
		{"malformed reference", `{"name":"q","callback_url":"https://x.example/${{ secrets.lower }}"}`, 422, "invalid_queue"},
		{"reference in host", `{"name":"q","callback_url":"https://${{ secrets.TOKEN }}.example/"}`, 422, "invalid_queue"},
		{"not a URL", `{"name":"q","callback_url":"ftp://x.example/"}`, 422, "invalid_queue"},
		{"relative URL", `{"name":"q","callback_url":"/hooks"}`, 422, "invalid_queue"},
		{"no URL", `{"name":"q"}`, 422, "invalid_queue"},
		{"no name", `{"callback_url":"https://x.example/"}`, 400, "invalid_queue"},
		{"bad name", `{"name":"Bad Name","callback_url":"https://x.example/"}`, 422, "invalid_queue"},
		{"bad header name", `{"name":"q","callback_url":"https://x.example/","callback_headers":{"Bad Header":"v"}}`, 422, "invalid_queue"},
		{"internal header", `{"name":"q","callback_url":"https://x.example/","callback_headers":{"Rotor-Internal-Auth":"callback"}}`, 422, "invalid_queue"},
		{"bad attempts", `{"name":"q","callback_url":"https://x.example/","max_attempts":0}`, 422, "invalid_queue"},
		{"bad timeout", `{"name":"q","callback_url":"https://x.example/","timeout_seconds":900}`, 422, "invalid_queue"},
		{"cap below base", `{"name":"q","callback_url":"https://x.example/","backoff_base_seconds":10,"backoff_cap_seconds":5}`, 422, "invalid_queue"},
		{"wrong type", `{"name":"q","callback_url":"https://x.example/","concurrency":"many"}`, 400, "invalid_type"},
		{"unknown field", `{"name":"q","callback_url":"https://x.example/","retries":3}`, 400, "unknown_field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/v1/queues", e.key, c.body)
			if r.status != c.status || r.errCode(t) != c.code {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if c.code == "missing_secrets" && (!strings.Contains(string(r.body), "NOPE") || !strings.Contains(string(r.body), "ALSO_NOPE")) {
				t.Fatalf("missing names not listed: %s", r.body)
			}
		})
	}
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"q","callback_url":"https://x.example/${{ secrets.TOKEN }}"}`), 201)
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"q","callback_url":"https://x.example/"}`), 409)
	e.mustStatus(e.do("PATCH", "/v1/queues/missing", e.key, `{"callback_headers":{}}`), 404)
	e.mustStatus(e.do("PATCH", "/v1/queues/q", e.key, `{"callback_url":"https://x.example/${{ secrets.NOPE }}"}`), 422)
	e.mustStatus(e.do("POST", "/v1/queues/missing/jobs", e.key, `{"payload":1}`), 404)
	e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":1,"delay_seconds":-1}`), 422)
	e.mustStatus(e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":{"a":"${{ secrets.bad }}"}}`), 422)
	e.mustStatus(e.do("GET", "/v1/queues/q/jobs?status=nope", e.key, ""), 400)
	e.mustStatus(e.do("GET", "/v1/jobs/job_nope", e.key, ""), 404)
}

// TestSecretInUse: deleting a secret a queue references answers 409 naming
// the queue, unless ?force=true.
func TestSecretInUse(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"TOKEN","value":"v"}`), 201)
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"hooks","callback_url":"https://x.example/","callback_headers":{"K":"${{ secrets.TOKEN }}"}}`), 201)
	r := e.mustStatus(e.do("DELETE", "/v1/secrets/TOKEN", e.key, ""), 409)
	if r.errCode(t) != "secret_in_use" || !strings.Contains(string(r.body), "hooks") {
		t.Fatalf("%s", r.body)
	}
	e.mustStatus(e.do("DELETE", "/v1/secrets/TOKEN?force=maybe", e.key, ""), 400)
	e.mustStatus(e.do("DELETE", "/v1/secrets/TOKEN?force=true", e.key, ""), 204)
}

func TestQueuesWorkspaceIsolation(t *testing.T) {
	e := newEnv(t)
	ws := e.mustStatus(e.do("POST", "/v1/workspaces", e.key, `{"name":"team-b"}`), 201).json(t)
	keyB := ws["admin_key"].(map[string]any)["key"].(string)
	if !strings.HasPrefix(ws["callback_secret"].(string), "rcs_") || !strings.HasPrefix(ws["signing_secret"].(string), "whsec_") {
		t.Fatalf("new workspace credentials: %v", ws)
	}
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"a-queue","callback_url":"https://x.example/"}`), 201)
	j := e.mustStatus(e.do("POST", "/v1/queues/a-queue/jobs", e.key, `{"payload":{}}`), 201).json(t)
	e.mustStatus(e.do("GET", "/v1/queues/a-queue", keyB, ""), 404)
	e.mustStatus(e.do("POST", "/v1/queues/a-queue/jobs", keyB, `{"payload":{}}`), 404)
	e.mustStatus(e.do("GET", "/v1/jobs/"+j["id"].(string), keyB, ""), 404)
	e.mustStatus(e.do("DELETE", "/v1/jobs/"+j["id"].(string), keyB, ""), 404)
	e.mustStatus(e.do("GET", "/v1/queues/a-queue/jobs", keyB, ""), 404)
	if body := e.mustStatus(e.do("GET", "/v1/queues", keyB, ""), 200).body; strings.Contains(string(body), "a-queue") {
		t.Fatal("B lists A's queue")
	}
}

func TestCallbackSecretRotation(t *testing.T) {
	e := newEnv(t)
	a := e.mustStatus(e.do("POST", "/v1/workspace/callback-secret", e.key, ""), 200).json(t)
	b := e.mustStatus(e.do("POST", "/v1/workspace/callback-secret", e.key, ""), 200).json(t)
	if a["callback_secret"] == b["callback_secret"] || !strings.HasPrefix(b["signing_secret"].(string), "whsec_") {
		t.Fatalf("rotation: %v %v", a, b)
	}
	ws := e.mustStatus(e.do("GET", "/v1/workspace", e.key, ""), 200)
	if strings.Contains(string(ws.body), "rcs_") || strings.Contains(string(ws.body), "whsec_") {
		t.Fatalf("GET /v1/workspace shows credentials: %s", ws.body)
	}
	// The credentials are not secrets a template or the secrets API can reach.
	if body := e.mustStatus(e.do("GET", "/v1/secrets", e.key, ""), 200).body; strings.Contains(string(body), "rotor:") {
		t.Fatalf("credentials listed as secrets: %s", body)
	}
	e.mustStatus(e.do("GET", "/v1/secrets/rotor:callback_secret", e.key, ""), 422)
	_, member := e.newKey("member")
	e.mustStatus(e.do("POST", "/v1/workspace/callback-secret", member, ""), 403)
}

// TestQueueNearMissReferences: near-misses of a reference are refused at
// validation (422 naming the field), not stored to be sent literally.
func TestQueueNearMissReferences(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"NOTIFY_TOKEN","value":"v"}`), 201)
	for _, c := range []struct{ body, field string }{
		{`{"name":"q","callback_url":"https://x.example/n?t=${{ secret.NOTIFY_TOKEN }}"}`, "callback_url"},
		{`{"name":"q","callback_url":"https://x.example/n?t=${{ Secrets.NOTIFY_TOKEN }}"}`, "callback_url"},
		{`{"name":"q","callback_url":"https://x.example/","callback_headers":{"X-Key":"$<< secret.NOTIFY_TOKEN >>"}}`, "callback_headers[X-Key]"},
		{`{"name":"q","callback_url":"https://x.example/","callback_headers":{"X-Key":"${ secrets.NOTIFY_TOKEN }"}}`, "callback_headers[X-Key]"},
	} {
		r := e.do("POST", "/v1/queues", e.key, c.body)
		if r.status != 422 || r.errCode(t) != "invalid_queue" || !strings.Contains(string(r.body), c.field) {
			t.Errorf("%s: %d %s", c.body, r.status, r.body)
		}
	}
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"q","callback_url":"https://x.example/","callback_headers":{"X-Env":"${{ env.X }}","X-Shell":"${HOME}"}}`), 201)
	r := e.do("POST", "/v1/queues/q/jobs", e.key, `{"payload":{"t":"${{ secret.NOTIFY_TOKEN }}"}}`)
	if r.status != 422 || !strings.Contains(string(r.body), "payload") {
		t.Fatalf("payload near-miss: %d %s", r.status, r.body)
	}
}
