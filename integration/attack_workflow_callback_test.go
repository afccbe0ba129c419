package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"rotor.sh/rotor/internal/leakcheck"
)

// TestAttackWorkflowCallbackSecretEcho: a step that sets no Authorization
// is sent with the workspace's callback secret (Bearer), which only admins
// may read. An upstream that echoes its request (the guide's own `rotor dev
// echo`, httpbin) returned it in the body, and the step's output, stored
// and shown to every member of the workspace (API, dashboard), held it in
// plaintext. Job attempts redact it; step outputs must too.
func TestAttackWorkflowCallbackSecretEcho(t *testing.T) {
	var (
		mu  sync.Mutex
		got string
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		got = r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"headers": r.Header})
	}))
	defer up.Close()
	dir := t.TempDir()
	s := startServer(t, dir)
	key := s.adminKey()
	putWorkflow(t, s, key, "echoer", `{"steps":[{"id":"echo","request":{"method":"GET","url":"`+up.URL+`/echo"}},
		{"id":"text","request":{"method":"POST","url":"`+up.URL+`/text","headers":{"Content-Type":"text/plain"},"body":"hi"}}]}`)
	run := startRun(t, s, key, "echoer", `{}`)
	r := waitRun(t, s, key, run.ID, "completed", func(r runView) bool { return r.Status == "completed" || r.Status == "failed" })
	mu.Lock()
	secret := strings.TrimPrefix(got, "Bearer ")
	mu.Unlock()
	if !strings.HasPrefix(secret, "rcs_") {
		t.Fatalf("the upstream got Authorization %q, want the callback secret (the test's premise)", got)
	}
	if r.Status != "completed" {
		t.Fatalf("run %s (%s)", r.Status, r.ErrorCode)
	}
	_, runBody := call(t, "GET", s.apiURL+"/v1/workflow-runs/"+run.ID, key, "")
	s.stop()
	db, _ := os.ReadFile(filepath.Join(dir, "data", "rotor.db"))
	leakcheck.Scan(t, secret, map[string][]byte{"run": []byte(runBody), "bbolt file": db})
}
