package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestAttackWorkflowRevokedStarter: a run acts for the key that started
// it (its steps' secret.accessed rows name that key). A member starts a
// run that sleeps, and is revoked meanwhile (leaving the company, a key
// leaked). The run woke and sent its next step anyway, resolving the
// workspace's secrets on behalf of a key that no longer exists: revocation
// must stop a key's runs as it stops its requests. The step fails with
// actor_revoked and nothing is sent.
func TestAttackWorkflowRevokedStarter(t *testing.T) {
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		calls.Add(1)
	}))
	defer up.Close()
	s := startServer(t, t.TempDir())
	defer s.stop()
	admin := s.adminKey()
	mustCall(t, 201, "POST", s.apiURL+"/v1/secrets", admin, `{"name":"LATER_TOKEN","value":"later-token-value-4d1e"}`)
	m := mustCall(t, 201, "POST", s.apiURL+"/v1/keys", admin, `{"name":"leaver","role":"member"}`)
	member, memberID := m["key"].(string), m["id"].(string)
	putWorkflow(t, s, admin, "delayed", `{"steps":[{"id":"nap","sleep":"2s"},
		{"id":"send","request":{"method":"POST","url":"`+up.URL+`/x","headers":{"X-T":"${{ secrets.LATER_TOKEN }}"}}}]}`)
	run := startRun(t, s, member, "delayed", `{}`)
	mustCall(t, 204, "DELETE", s.apiURL+"/v1/keys/"+memberID, admin, "")
	r := waitRun(t, s, admin, run.ID, "finished", func(r runView) bool { return r.Status == "failed" || r.Status == "completed" })
	if r.Status != "failed" || r.ErrorCode != "actor_revoked" || calls.Load() != 0 {
		t.Fatalf("run %s (%s), upstream requests %d; want failed with actor_revoked and none sent", r.Status, r.ErrorCode, calls.Load())
	}
}
