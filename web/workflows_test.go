package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/web"
	"rotor.sh/rotor/workflow"
)

// putWorkflow stores a definition through the workflow service.
func (s *stack) putWorkflow(t *testing.T, name, def string) {
	t.Helper()
	if _, _, err := s.flows.PutWorkflow(context.Background(), s.ve.Operator, name, json.RawMessage(def)); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

// waitRun polls a run until its status is want.
func (s *stack) waitRun(t *testing.T, id, want string) storage.WorkflowRun {
	t.Helper()
	for i := 0; ; i++ {
		r, err := s.flows.GetRun(context.Background(), s.ve.Operator, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == want {
			return r
		}
		if i == 1000 {
			t.Fatalf("run %s is %s (step %d), want %s: %+v", id, r.Status, r.Step, want, r.Steps)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// onboardDef: a request whose URL and header reference the secret, a wait
// for a signal, and a request whose body uses the first output and the
// signal's data.
func onboardDef(echo, secret string) string {
	return `{"steps":[
	{"id":"fetch","request":{"method":"GET","url":"` + echo + `/users/${{ input.user }}?token=${{ secrets.` + secret + ` }}","headers":{"X-Api-Key":"${{ secrets.` + secret + ` }}","Authorization":"Bearer $<< secrets.` + secret + ` >>"}}},
	{"id":"approve","wait_for_signal":"approved","timeout":"1h"},
	{"id":"notify","request":{"method":"POST","url":"` + echo + `/notify","body":{"by":"${{ signals.approved.data.user }}","key":"${{ secrets.` + secret + ` }}"}},"retry":{"max_attempts":2}}]}`
}

func workflowStart() workflow.StartRunRequest {
	return workflow.StartRunRequest{Input: json.RawMessage(`{}`)}
}

var runIDRE = regexp.MustCompile(`^/dashboard/workflow-runs/(run_[0-9A-Za-z_-]+)`)

// TestWorkflowPagesMember: a member signs in and does what the API lets a
// member do with workflows: list them, read a definition (references shown
// as references), start a run with JSON input, watch its timeline, signal
// it to completion, cancel one, retry a failed one; the secret's page
// lists the workflow among its references. Bad input is a styled 422 that
// keeps what was typed; unknown runs a styled 404; a signal to a finished
// run a styled 409. The secret's value appears on no page: the upstream
// echoed it, and the proxy's scrubbing keeps it out of the stored output.
func TestWorkflowPagesMember(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	const value = "canary-workflow-step-value-0123456789"
	s.ve.Secret(t, "CRM_TOKEN", value)
	s.putWorkflow(t, "onboard", onboardDef(s.echo.URL, "CRM_TOKEN"))
	s.putWorkflow(t, "broken", `{"steps":[{"id":"call","request":{"method":"POST","url":"`+s.refused+`","headers":{"X-Key":"${{ secrets.CRM_TOKEN }}"}},"retry":{"max_attempts":1}}]}`)
	_, member, err := s.ve.Vault.CreateAPIKey(ctx, s.ve.Operator, vault.CreateAPIKeyRequest{Name: "dev", Role: vault.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	c := signIn(t, s.dash, member)
	var pages []string
	get := func(path string, want int) string {
		t.Helper()
		res, body := c.get(path)
		if res.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d\n%s", path, res.StatusCode, want, body)
		}
		pages = append(pages, body)
		return body
	}
	// start posts the start form and returns the new run's id.
	start := func(wf, input string) string {
		t.Helper()
		res, body := c.post("/dashboard/workflows/"+wf+"/runs", url.Values{"input": {input}})
		m := runIDRE.FindStringSubmatch(res.Header.Get("Location"))
		if res.StatusCode != http.StatusSeeOther || m == nil {
			t.Fatalf("start %s: %d %q\n%s", wf, res.StatusCode, res.Header.Get("Location"), body)
		}
		return m[1]
	}

	def := get("/dashboard/workflows/onboard", 200)
	for _, want := range []string{`<span class="ref">${{ secrets.CRM_TOKEN }}</span>`, `<span class="ref">$&lt;&lt; secrets.CRM_TOKEN &gt;&gt;</span>`,
		`<span class="expr">${{ input.user }}</span>`, `id="start-form"`, "waits for the signal", "up to 2 attempts", "timeout 1h"} {
		if !strings.Contains(def, want) {
			t.Fatalf("definition page lacks %q:\n%s", want, def)
		}
	}
	id := start("onboard", `{"user":"ada"}`)
	s.waitRun(t, id, storage.RunWaiting)
	run := get("/dashboard/workflow-runs/"+id, 200)
	for _, want := range []string{`id="step-fetch"`, `tl-completed`, `b-ok">200<`, `waiting for the signal <code>approved</code>`, `id="signal-form"`, `id="cancel-form"`,
		"GET /users/ada?token=${{ secrets.CRM_TOKEN }}"} {
		if !strings.Contains(run, want) {
			t.Fatalf("waiting run page lacks %q:\n%s", want, run)
		}
	}
	res, _ := c.post("/dashboard/workflow-runs/"+id+"/signal", url.Values{"signal": {"approved"}, "data": {`{"user":"grace"}`}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("signal: %d", res.StatusCode)
	}
	done := s.waitRun(t, id, storage.RunCompleted)
	if len(done.Steps[2].Attempts) != 1 || done.Steps[2].Attempts[0].StatusCode != 200 {
		t.Fatalf("notify step %+v", done.Steps[2])
	}
	run = get("/dashboard/workflow-runs/"+id, 200)
	for _, want := range []string{`id="step-notify"`, `&#34;by&#34;:&#34;grace&#34;`, `<code>approve</code>`, "(took "} {
		if !strings.Contains(run, want) {
			t.Fatalf("completed run page lacks %q:\n%s", want, run)
		}
	}
	if strings.Contains(run, `id="signal-form"`) || strings.Contains(run, `id="cancel-form"`) {
		t.Fatal("a completed run offers signal or cancel")
	}
	// A signal to a finished run: a styled 409 that keeps the form's text.
	res, body := c.post("/dashboard/workflow-runs/"+id+"/signal", url.Values{"signal": {"late"}, "data": {`{"x":1}`}})
	if res.StatusCode != http.StatusConflict || !strings.Contains(body, `id="error"`) {
		t.Fatalf("signal to a finished run: %d\n%s", res.StatusCode, body)
	}
	// Bad input: 422 next to the form, which keeps it.
	res, body = c.post("/dashboard/workflows/onboard/runs", url.Values{"input": {`[1,2`}})
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="error"`) || !strings.Contains(body, "[1,2</textarea>") {
		t.Fatalf("bad input: %d\n%s", res.StatusCode, body)
	}
	res, body = c.post("/dashboard/workflow-runs/"+id+"/signal", url.Values{"signal": {"bad name!"}, "data": {`{}`}})
	if res.StatusCode != http.StatusConflict && res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="error"`) {
		t.Fatalf("bad signal name: %d", res.StatusCode)
	}
	get("/dashboard/workflow-runs/run_missing", http.StatusNotFound)
	get("/dashboard/workflows/missing", http.StatusNotFound)

	// Cancel: refused without the box ticked, then done.
	waiting := start("onboard", `{"user":"bob"}`)
	s.waitRun(t, waiting, storage.RunWaiting)
	if res, _ := c.post("/dashboard/workflow-runs/"+waiting+"/cancel", nil); res.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("cancel without confirm: %d", res.StatusCode)
	}
	if res, _ := c.post("/dashboard/workflow-runs/"+waiting+"/cancel", url.Values{"confirm": {"yes"}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("cancel: %d", res.StatusCode)
	}
	s.waitRun(t, waiting, storage.RunCanceled)

	// A failed run: the error in words, and a retry that runs the step again.
	failed := start("broken", `{}`)
	s.waitRun(t, failed, storage.RunFailed)
	run = get("/dashboard/workflow-runs/"+failed, 200)
	if !strings.Contains(run, "could not connect to the destination") || !strings.Contains(run, `id="retry-form"`) {
		t.Fatalf("failed run page:\n%s", run)
	}
	if res, _ := c.post("/dashboard/workflow-runs/"+failed+"/retry", nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("retry: %d", res.StatusCode)
	}
	for i := 0; ; i++ {
		r, _ := s.flows.GetRun(ctx, s.ve.Operator, failed)
		if r.Status == storage.RunFailed && len(r.Steps[0].Attempts) == 2 {
			break
		}
		if i == 1000 {
			t.Fatalf("retried run %s: %+v", r.Status, r.Steps[0].Attempts)
		}
		time.Sleep(10 * time.Millisecond)
	}

	list := get("/dashboard/workflows", 200)
	for _, want := range []string{`href="/dashboard/workflows/onboard"`, `href="/dashboard/workflows/onboard?status=completed"><span class="badge b-completed">completed</span> 1</a>`,
		`?status=canceled"><span class="badge b-canceled">canceled</span> 1</a>`, `href="/dashboard/workflows/broken?status=failed"`} {
		if !strings.Contains(list, want) {
			t.Fatalf("workflows page lacks %q:\n%s", want, list)
		}
	}
	runs := get("/dashboard/workflows/onboard?status=completed", 200)
	if !strings.Contains(runs, id) || strings.Contains(runs, waiting) {
		t.Fatalf("completed filter:\n%s", runs)
	}
	secret := get("/dashboard/settings/secrets/CRM_TOKEN", 200)
	for _, want := range []string{`<a href="/dashboard/workflows/onboard"><code>onboard</code></a>`, "fetch (url), fetch (headers.Authorization), fetch (headers.X-Api-Key), notify (body)",
		`<a href="/dashboard/workflows/broken">`} {
		if !strings.Contains(secret, want) {
			t.Fatalf("secret page lacks %q:\n%s", want, secret)
		}
	}
	// The upstream got the value; no page, log or stored run holds it.
	stored, _ := json.Marshal(done)
	leakcheck.Scan(t, value, map[string][]byte{"pages": []byte(strings.Join(pages, "\n")), "logs": []byte(s.ve.Logs.String()), "stored run": stored})
}

// TestWorkflowFormsNeedCSRF: every workflow form refuses a POST without
// the session's CSRF token, and nothing happens.
func TestWorkflowFormsNeedCSRF(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	s.putWorkflow(t, "wait", `{"steps":[{"id":"w","wait_for_signal":"go"}]}`)
	r, _, err := s.flows.StartRun(ctx, s.ve.Operator, "wait", workflowStart())
	if err != nil {
		t.Fatal(err)
	}
	s.waitRun(t, r.ID, storage.RunWaiting)
	c := signIn(t, s.dash, s.ve.Key)
	for _, p := range []string{"/dashboard/workflows/wait/runs", "/dashboard/workflow-runs/" + r.ID + "/signal", "/dashboard/workflow-runs/" + r.ID + "/cancel",
		"/dashboard/workflow-runs/" + r.ID + "/retry"} {
		for _, tok := range []string{"", "0000"} {
			form := url.Values{"input": {"{}"}, "signal": {"go"}, "data": {"{}"}, "confirm": {"yes"}}
			if tok != "" {
				form.Set("csrf", tok)
			}
			if res := do(s.dash, "POST", p, form, c.ck); res.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with csrf %q: %d", p, tok, res.StatusCode)
			}
		}
	}
	page, err := s.flows.ListRuns(ctx, s.ve.Operator, storage.RunQuery{Workflow: "wait", Limit: 10})
	if err != nil || len(page.Runs) != 1 || page.Runs[0].Status != storage.RunWaiting || len(page.Runs[0].Signals) != 0 {
		t.Fatalf("after forged posts: %+v %v", page.Runs, err)
	}
}

// TestRunsPaged: a workflow's runs come 25 a page, newest first, with an
// Older link that continues without repeats.
func TestRunsPaged(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	s.putWorkflow(t, "wait", `{"steps":[{"id":"w","wait_for_signal":"go"}]}`)
	for range 30 {
		if _, _, err := s.flows.StartRun(ctx, s.ve.Operator, "wait", workflowStart()); err != nil {
			t.Fatal(err)
		}
	}
	c := signIn(t, s.dash, s.ve.Key)
	idRE := regexp.MustCompile(`<a href="/dashboard/workflow-runs/(run_[^"]+)">`)
	_, first := c.get("/dashboard/workflows/wait")
	older := regexp.MustCompile(`id="older" href="([^"]+)"`).FindStringSubmatch(first)
	if older == nil {
		t.Fatal("no Older link on a full page")
	}
	_, second := c.get("/dashboard/workflows/wait" + strings.ReplaceAll(older[1], "&amp;", "&"))
	ids := map[string]bool{}
	for _, page := range []string{first, second} {
		for _, m := range idRE.FindAllStringSubmatch(page, -1) {
			if ids[m[1]] {
				t.Fatalf("%s on both pages", m[1])
			}
			ids[m[1]] = true
		}
	}
	if len(ids) != 30 {
		t.Fatalf("%d runs over two pages, want 30", len(ids))
	}
}

// TestWorkflowsNotServed: a dashboard without the workflow service says
// so on a styled page instead of failing.
func TestWorkflowsNotServed(t *testing.T) {
	s := newStack(t)
	d, err := web.New(web.Options{Vault: s.ve.Vault, Queues: s.svc, Logger: s.ve.Logger})
	if err != nil {
		t.Fatal(err)
	}
	c := signIn(t, d, s.ve.Key)
	for _, p := range []string{"/dashboard/workflows", "/dashboard/workflows/x", "/dashboard/workflow-runs/run_x"} {
		if res, body := c.get(p); res.StatusCode == http.StatusOK || res.StatusCode >= 500 || !strings.Contains(body, "not served by this node") {
			t.Errorf("GET %s: %d\n%s", p, res.StatusCode, body)
		}
	}
}

// TestWorkflowPagesOtherWorkspace: a key of another workspace sees none of
// this workspace's workflows or runs, and its signal, cancel, retry and
// start posts answer 404 with nothing done.
func TestWorkflowPagesOtherWorkspace(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	s.putWorkflow(t, "wait", `{"steps":[{"id":"w","wait_for_signal":"go"}]}`)
	r, _, err := s.flows.StartRun(ctx, s.ve.Operator, "wait", workflowStart())
	if err != nil {
		t.Fatal(err)
	}
	s.waitRun(t, r.ID, storage.RunWaiting)
	ws, err := s.ve.Vault.CreateWorkspace(ctx, s.ve.Operator, "other")
	if err != nil {
		t.Fatal(err)
	}
	c := signIn(t, s.dash, ws.Key)
	if _, body := c.get("/dashboard/workflows"); strings.Contains(body, "/dashboard/workflows/wait") {
		t.Fatal("another workspace lists the workflow")
	}
	for _, p := range []string{"/dashboard/workflows/wait", "/dashboard/workflow-runs/" + r.ID} {
		if res, body := c.get(p); res.StatusCode != http.StatusNotFound || strings.Contains(body, `id="timeline"`) {
			t.Errorf("GET %s from another workspace: %d", p, res.StatusCode)
		}
	}
	for _, p := range []string{"/dashboard/workflows/wait/runs", "/dashboard/workflow-runs/" + r.ID + "/signal", "/dashboard/workflow-runs/" + r.ID + "/cancel",
		"/dashboard/workflow-runs/" + r.ID + "/retry"} {
		if res, _ := c.post(p, url.Values{"input": {"{}"}, "signal": {"go"}, "data": {"{}"}, "confirm": {"yes"}}); res.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s from another workspace: %d", p, res.StatusCode)
		}
	}
	page, err := s.flows.ListRuns(ctx, s.ve.Operator, storage.RunQuery{Workflow: "wait", Limit: 10})
	if err != nil || len(page.Runs) != 1 || page.Runs[0].Status != storage.RunWaiting || len(page.Runs[0].Signals) != 0 {
		t.Fatalf("after the other workspace's posts: %d runs, %v", len(page.Runs), err)
	}
}

// TestWorkflowsListBounded: the list counts runs for the first 50
// workflows only (five bounded reads each); later ones say so.
func TestWorkflowsListBounded(t *testing.T) {
	s := newStack(t)
	for i := range 51 {
		s.putWorkflow(t, fmt.Sprintf("wf-%02d", i), `{"steps":[{"id":"w","wait_for_signal":"go"}]}`)
	}
	c := signIn(t, s.dash, s.ve.Key)
	_, body := c.get("/dashboard/workflows")
	if n := strings.Count(body, "no runs yet"); n != 50 {
		t.Fatalf("%d counted rows, want 50", n)
	}
	if n := strings.Count(body, "not counted here"); n != 1 || !strings.Contains(body, "wf-50") {
		t.Fatalf("%d uncounted rows, want 1 (wf-50)", n)
	}
}
