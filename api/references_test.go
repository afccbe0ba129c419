package api_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/vault/vaulttest"
	"rotor.sh/rotor/workflow"
)

// newWorkflowEnv is newEnv with the workflow API served, as `rotor serve`
// wires it.
func newWorkflowEnv(t *testing.T) *env {
	t.Helper()
	ve := vaulttest.New(t)
	queues := dispatch.NewService(ve.Store, ve.Vault, nil, nil)
	flows := workflow.NewService(ve.Store, ve.Vault, nil, nil, nil)
	srv := httptest.NewServer(api.New(api.Options{Vault: ve.Vault, Queues: queues, Logger: ve.Logger, Registerer: ve.Registry, Workflows: flows}))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, vault: ve.Vault, store: ve.Store, dbPath: ve.DBPath, key: ve.Key, logs: ve.Logs, reg: ve.Registry, bodies: &leakcheck.Buffer{}}
}

type referencesBody struct {
	References []struct {
		Kind  string `json:"kind"`
		Name  string `json:"name"`
		Steps []struct {
			Step  string `json:"step"`
			Field string `json:"field"`
		} `json:"steps"`
	} `json:"references"`
}

func (e *env) references(name string) referencesBody {
	e.t.Helper()
	r := e.mustStatus(e.do("GET", "/v1/secrets/"+name+"/references", e.key, ""), 200)
	var body referencesBody
	if err := json.Unmarshal(r.body, &body); err != nil || body.References == nil {
		e.t.Fatalf("body %s", r.body)
	}
	return body
}

// TestSecretReferences: GET /v1/secrets/{name}/references names the queues
// whose templates use the secret; an unknown secret is a JSON 404; a
// request without a key is a 401.
func TestSecretReferences(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"NOTIFY_TOKEN","value":"value-of-the-token"}`), 201)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"UNUSED","value":"value-of-unused"}`), 201)
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"hooks","callback_url":"https://api.example.com/h","callback_headers":{"X-Key":"${{ secrets.NOTIFY_TOKEN }}"}}`), 201)
	if got := e.references("NOTIFY_TOKEN").References; len(got) != 1 || got[0].Kind != "queue" || got[0].Name != "hooks" || got[0].Steps != nil {
		t.Fatalf("NOTIFY_TOKEN references %+v", got)
	}
	if got := e.references("UNUSED").References; len(got) != 0 {
		t.Fatalf("UNUSED references %+v", got)
	}
	if r := e.do("GET", "/v1/secrets/MISSING/references", e.key, ""); r.status != 404 || r.errCode(t) != "not_found" {
		t.Fatalf("unknown secret: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/secrets/NOTIFY_TOKEN/references", "", ""); r.status != 401 {
		t.Fatalf("no key: %d", r.status)
	}
}

// TestSecretReferencesWorkflows: workflows whose steps reference a secret
// are listed with the step and field of each use (url, a header, the
// body, either reference syntax); a workflow that only mentions the name
// in literal text or in an engine expression is not; a replaced
// definition drops a use and a deleted workflow drops out. The answer
// holds names, never the value.
func TestSecretReferencesWorkflows(t *testing.T) {
	e := newWorkflowEnv(t)
	const value = "canary-workflow-reference-value-31337"
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"CRM_TOKEN","value":"`+value+`"}`), 201)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"OTHER","value":"value-of-other-0000"}`), 201)
	e.mustStatus(e.do("PUT", "/v1/workflows/onboard", e.key, `{"steps":[
		{"id":"fetch","request":{"method":"GET","url":"https://api.example.com/u?t=${{ secrets.CRM_TOKEN }}","headers":{"Authorization":"Bearer $<< secrets.CRM_TOKEN >>","X-Other":"${{ secrets.OTHER }}"}}},
		{"id":"pause","sleep":"1m"},
		{"id":"notify","request":{"method":"POST","url":"https://hooks.example.com/n","body":{"token":"${{ secrets.CRM_TOKEN }}","email":"${{ steps.fetch.output.email }}"}}}]}`), 201)
	e.mustStatus(e.do("PUT", "/v1/workflows/unrelated", e.key, `{"steps":[
		{"id":"one","request":{"method":"POST","url":"https://api.example.com/x","body":{"note":"CRM_TOKEN is mentioned, not referenced","v":"${{ input.CRM_TOKEN }}"}}}]}`), 201)
	got := e.references("CRM_TOKEN").References
	if len(got) != 1 || got[0].Kind != "workflow" || got[0].Name != "onboard" {
		t.Fatalf("CRM_TOKEN references %+v", got)
	}
	type use struct{ step, field string }
	var uses []use
	for _, s := range got[0].Steps {
		uses = append(uses, use{s.Step, s.Field})
	}
	want := []use{{"fetch", "url"}, {"fetch", "headers.Authorization"}, {"notify", "body"}}
	if len(uses) != len(want) {
		t.Fatalf("uses %v, want %v", uses, want)
	}
	for i := range want {
		if uses[i] != want[i] {
			t.Fatalf("uses %v, want %v", uses, want)
		}
	}
	if got := e.references("OTHER").References; len(got) != 1 || len(got[0].Steps) != 1 || got[0].Steps[0].Field != "headers.X-Other" {
		t.Fatalf("OTHER references %+v", got)
	}
	// A new version without the body reference: that use is gone.
	e.mustStatus(e.do("PUT", "/v1/workflows/onboard", e.key, `{"steps":[
		{"id":"fetch","request":{"method":"GET","url":"https://api.example.com/u?t=${{ secrets.CRM_TOKEN }}"}}]}`), 200)
	if got := e.references("CRM_TOKEN").References; len(got) != 1 || len(got[0].Steps) != 1 || got[0].Steps[0].Field != "url" {
		t.Fatalf("after the update %+v", got)
	}
	if got := e.references("OTHER").References; len(got) != 0 {
		t.Fatalf("OTHER after the update %+v", got)
	}
	e.mustStatus(e.do("DELETE", "/v1/workflows/onboard", e.key, ""), 204)
	r := e.mustStatus(e.do("GET", "/v1/secrets/CRM_TOKEN/references", e.key, ""), 200)
	if string(r.body) != `{"references":[]}`+"\n" && string(r.body) != `{"references":[]}` {
		t.Fatalf("after the delete %s", r.body)
	}
	leakcheck.Scan(t, value, map[string][]byte{"references": r.body, "logs": []byte(e.logs.String())})
}

// TestDeleteSecretUsedByWorkflow: a secret a workflow's steps reference
// cannot be deleted (409 secret_in_use naming the workflow), as with
// queues, unless force=true; once the workflow is deleted it can be.
// Without the check every run of the workflow would fail at that step.
func TestDeleteSecretUsedByWorkflow(t *testing.T) {
	e := newWorkflowEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"CRM_TOKEN","value":"value-of-crm-token-1"}`), 201)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"SPARE","value":"value-of-spare-00001"}`), 201)
	def := `{"steps":[{"id":"fetch","request":{"method":"GET","url":"https://api.example.com/u","headers":{"Authorization":"Bearer ${{ secrets.CRM_TOKEN }}"}}}]}`
	e.mustStatus(e.do("PUT", "/v1/workflows/onboard", e.key, def), 201)
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"hooks","callback_url":"https://api.example.com/h","callback_headers":{"X-Key":"${{ secrets.CRM_TOKEN }}"}}`), 201)
	r := e.do("DELETE", "/v1/secrets/CRM_TOKEN", e.key, "")
	if r.status != 409 || r.errCode(t) != "secret_in_use" || !strings.Contains(string(r.body), "workflows onboard") || !strings.Contains(string(r.body), "queues hooks") {
		t.Fatalf("delete while used: %d %s", r.status, r.body)
	}
	e.mustStatus(e.do("DELETE", "/v1/queues/hooks", e.key, ""), 204)
	r = e.do("DELETE", "/v1/secrets/CRM_TOKEN", e.key, "")
	if r.status != 409 || !strings.Contains(string(r.body), "workflows onboard") || strings.Contains(string(r.body), "queues") {
		t.Fatalf("delete while a workflow uses it: %d %s", r.status, r.body)
	}
	e.mustStatus(e.do("DELETE", "/v1/workflows/onboard", e.key, ""), 204)
	e.mustStatus(e.do("DELETE", "/v1/secrets/CRM_TOKEN", e.key, ""), 204)
	e.mustStatus(e.do("PUT", "/v1/workflows/spare", e.key, `{"steps":[{"id":"a","request":{"method":"GET","url":"https://api.example.com/?k=${{ secrets.SPARE }}"}}]}`), 201)
	e.mustStatus(e.do("DELETE", "/v1/secrets/SPARE?force=true", e.key, ""), 204)
}
