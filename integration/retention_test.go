package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestJobsRetention: with --jobs-retention 2s a delivered job is deleted
// by the node's pruning loop (404 afterwards) and counted in
// rotor_jobs_pruned_total.
func TestJobsRetention(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer down.Close()
	s := startServer(t, t.TempDir(), "ROTOR_JOBS_RETENTION=2s")
	defer s.stop()
	key := s.adminKey()
	if code, body := call(t, "PATCH", s.apiURL+"/v1/queues/q", key, `{"callback_url":"`+down.URL+`/hook"}`); code/100 != 2 {
		t.Fatalf("queue: %d %s", code, body)
	}
	code, body := call(t, "POST", s.apiURL+"/v1/queues/q/jobs", key, `{"payload":{"n":1}}`)
	if code/100 != 2 {
		t.Fatalf("enqueue: %d %s", code, body)
	}
	var j struct{ ID string }
	json.Unmarshal([]byte(body), &j)
	deadline := time.Now().Add(30 * time.Second)
	delivered := false
	for {
		code, body := call(t, "GET", s.apiURL+"/v1/jobs/"+j.ID, key, "")
		if strings.Contains(body, `"status":"delivered"`) {
			delivered = true
		}
		if code == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not pruned within 30 s (delivered: %v): %d %s", delivered, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !delivered {
		t.Log("the job was pruned before a poll saw it delivered")
	}
	_, metrics := call(t, "GET", s.opsURL+"/metrics", "", "")
	if !strings.Contains(metrics, "rotor_jobs_pruned_total 1") {
		t.Fatalf("rotor_jobs_pruned_total not 1:\n%s", grepLines(metrics, "rotor_jobs_pruned"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAuditRetention: with --audit-retention 3s the node prunes sealed audit
// rows (rotor_audit_pruned_total), and GET /v1/audit/verify still verifies
// the remaining trail and says what retention pruned and when.
func TestAuditRetention(t *testing.T) {
	s := startServer(t, t.TempDir(), "ROTOR_AUDIT_RETENTION=3s")
	defer s.stop()
	key := s.adminKey()
	if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"RETAINED","value":"retained-value-0123"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := call(t, "GET", s.apiURL+"/v1/audit/verify", key, "")
		var res struct {
			OK            bool   `json:"ok"`
			PrunedThrough int64  `json:"pruned_through"`
			PrunedRows    int64  `json:"pruned_rows"`
			PrunedAt      string `json:"pruned_at"`
		}
		json.Unmarshal([]byte(body), &res)
		if code != 200 || !res.OK {
			t.Fatalf("verify: %d %s", code, body)
		}
		if res.PrunedRows > 0 && res.PrunedThrough > 0 && res.PrunedAt != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rows pruned within 30 s: %s", body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	_, metrics := call(t, "GET", s.opsURL+"/metrics", "", "")
	if !strings.Contains(metrics, "rotor_audit_pruned_total ") || strings.Contains(metrics, "rotor_audit_pruned_total 0\n") {
		t.Fatalf("rotor_audit_pruned_total:\n%s", grepLines(metrics, "rotor_audit_pruned"))
	}
}
