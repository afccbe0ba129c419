package integration

import (
	"strings"
	"testing"
	"time"
)

// TestAttackJobRevokedEnqueuer: a member key leaks; the attacker enqueues
// jobs whose payload references the workspace's secrets (a job also gets
// the workspace's callback credentials). The owner revokes the key before
// the jobs are due. They were delivered anyway, resolving the secrets for
// a key that no longer works anywhere else. Now the job ends dead with
// actor_revoked, the callback gets nothing, and the audit trail has a
// job.refused row naming the revoked key.
func TestAttackJobRevokedEnqueuer(t *testing.T) {
	cb := newHostile(t)
	s := startServer(t, t.TempDir())
	defer s.stop()
	admin := s.adminKey()
	mustCall(t, 201, "POST", s.apiURL+"/v1/secrets", admin, `{"name":"PAYOUT_TOKEN","value":"payout-token-value-7c2b"}`)
	mustCall(t, 201, "POST", s.apiURL+"/v1/queues", admin, `{"name":"payouts","callback_url":"`+cb.URL+`/hook"}`)
	m := mustCall(t, 201, "POST", s.apiURL+"/v1/keys", admin, `{"name":"leaked","role":"member"}`)
	member, memberID := m["key"].(string), m["id"].(string)
	j := mustCall(t, 201, "POST", s.apiURL+"/v1/queues/payouts/jobs", member, `{"payload":{"t":"${{ secrets.PAYOUT_TOKEN }}"},"delay_seconds":2}`)
	id := j["id"].(string)
	mustCall(t, 204, "DELETE", s.apiURL+"/v1/keys/"+memberID, admin, "")
	j = waitJobAttempts(t, s.apiURL, admin, id, 1)
	a := j["attempts"].([]any)[0].(map[string]any)
	if j["status"] != "dead" || a["error_code"] != "actor_revoked" || len(cb.got) != 0 {
		t.Fatalf("job %v (attempt %v), callback requests %d; want dead with actor_revoked and none sent", j["status"], a, len(cb.got))
	}
	// Access and refusal rows are group-committed (within 100 ms).
	var code int
	var out string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, out = call(t, "GET", s.apiURL+"/v1/audit?event_type=job.refused", admin, ""); code != 200 || strings.Contains(out, id) {
			break
		}
	}
	if code != 200 || !strings.Contains(out, `"resource_id":"`+id+`"`) || !strings.Contains(out, `"actor_id":"`+memberID+`"`) || strings.Contains(out, "payout-token-value") {
		t.Fatalf("audit: %d %s", code, out)
	}
}
