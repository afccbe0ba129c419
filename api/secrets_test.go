package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestGuideSteps follows the product guide's secret steps literally.
func TestGuideSteps(t *testing.T) {
	e := newEnv(t)
	r := e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"NOTIFY_TOKEN","value":"your-token-here"}`), 201)
	m := r.json(t)
	if m["name"] != "NOTIFY_TOKEN" || m["value_hint"] != "your-t..." {
		t.Fatalf("create = %s", r.body)
	}
	if _, err := time.Parse(time.RFC3339Nano, m["created_at"].(string)); err != nil {
		t.Fatalf("created_at: %v", err)
	}
	if r.header.Get("Location") != "/v1/secrets/NOTIFY_TOKEN" {
		t.Fatalf("Location = %q", r.header.Get("Location"))
	}
	// The migration script's 409 branch.
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"NOTIFY_TOKEN","value":"x"}`), 409)

	list := e.mustStatus(e.do("GET", "/v1/secrets", e.key, ""), 200)
	var lr struct {
		Secrets []map[string]any `json:"secrets"`
	}
	json.Unmarshal(list.body, &lr)
	if len(lr.Secrets) != 1 || lr.Secrets[0]["value_hint"] != "your-t..." || lr.Secrets[0]["version"].(float64) != 1 {
		t.Fatalf("list = %s", list.body)
	}
	for _, k := range []string{"name", "value_hint", "version", "created_at", "updated_at", "allowed_hosts"} {
		if _, ok := lr.Secrets[0][k]; !ok {
			t.Fatalf("list entry lacks %q: %s", k, list.body)
		}
	}
	if _, ok := lr.Secrets[0]["value"]; ok {
		t.Fatal("list shows a value")
	}

	g := e.mustStatus(e.do("GET", "/v1/secrets/NOTIFY_TOKEN", e.key, ""), 200).json(t)
	if g["version"].(float64) != 1 {
		t.Fatalf("get = %v", g)
	}
	p := e.mustStatus(e.do("PATCH", "/v1/secrets/NOTIFY_TOKEN", e.key, `{"value":"new-value"}`), 200).json(t)
	if p["version"].(float64) != 2 || p["value_hint"] != "new..." {
		t.Fatalf("patch = %v", p)
	}
	e.mustStatus(e.do("PATCH", "/v1/secrets/MISSING", e.key, `{"value":"x"}`), 404)
	e.mustStatus(e.do("GET", "/v1/secrets/MISSING", e.key, ""), 404)
	e.mustStatus(e.do("DELETE", "/v1/secrets/NOTIFY_TOKEN", e.key, ""), 204)
	e.mustStatus(e.do("DELETE", "/v1/secrets/NOTIFY_TOKEN", e.key, ""), 404)

	// The guide's audit verification: created rows with actor and time, and
	// no value in input or output.
	a := e.mustStatus(e.do("GET", "/v1/audit?resource_type=secret", e.key, ""), 200)
	var ar struct {
		Events []map[string]any `json:"events"`
	}
	json.Unmarshal(a.body, &ar)
	var types []string
	for _, ev := range ar.Events {
		types = append(types, ev["event_type"].(string))
		for _, k := range []string{"id", "occurred_at", "workspace_id", "actor_id", "event_type", "resource_type", "resource_id", "input", "output"} {
			if _, ok := ev[k]; !ok {
				t.Fatalf("audit row lacks %s: %v", k, ev)
			}
		}
	}
	if strings.Join(types, ",") != "secret.deleted,secret.rotated,secret.created" {
		t.Fatalf("audit types = %v", types)
	}
	if strings.Contains(string(a.body), "your-token-here") || strings.Contains(string(a.body), "new-value") {
		t.Fatal("audit holds a value")
	}
}

// TestCurlDefaultContentType: `curl -d` without -H sends form encoding; the
// body is still JSON and is accepted.
func TestCurlDefaultContentType(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"A","value":"v"}`, "Content-Type", "application/x-www-form-urlencoded"), 201)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"B","value":"v"}`, "Content-Type", ""), 201)
}

func TestAllowedHostsAPI(t *testing.T) {
	e := newEnv(t)
	r := e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"A","value":"v","allowed_hosts":["API.example.com","*.example.org"]}`), 201).json(t)
	if fmt.Sprint(r["allowed_hosts"]) != "[api.example.com *.example.org]" {
		t.Fatalf("allowed_hosts = %v", r["allowed_hosts"])
	}
	// Patch hosts only: same version.
	p := e.mustStatus(e.do("PATCH", "/v1/secrets/A", e.key, `{"allowed_hosts":["x.example.com"]}`), 200).json(t)
	if p["version"].(float64) != 1 || fmt.Sprint(p["allowed_hosts"]) != "[x.example.com]" {
		t.Fatalf("patch hosts = %v", p)
	}
	p = e.mustStatus(e.do("PATCH", "/v1/secrets/A", e.key, `{"allowed_hosts":null}`), 200).json(t)
	if fmt.Sprint(p["allowed_hosts"]) != "[]" {
		t.Fatalf("null did not clear: %v", p)
	}
	e.mustStatus(e.do("PATCH", "/v1/secrets/A", e.key, `{"allowed_hosts":["ftp://bad"]}`), 422)
}

// TestBadInput: every client mistake is a 4xx with a JSON error body and a
// specific code, and nothing changes.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"EXISTING","value":"keep-me"}`), 201)
	_, memberKey := e.newKey("member")
	big := `{"name":"BIG","value":"` + strings.Repeat("x", 1<<20) + `"}`
	tooLong := `{"name":"LONG","value":"` + strings.Repeat("x", 64<<10+1) + `"}`
	cases := []struct {
		name, method, path, key, body string
		hdr                           []string
		status                        int
		code                          string
	}{
		{"malformed json", "POST", "/v1/secrets", e.key, `{"name":`, nil, 400, "invalid_json"},
		{"not json", "POST", "/v1/secrets", e.key, `name=A&value=b`, nil, 400, "invalid_json"},
		{"trailing data", "POST", "/v1/secrets", e.key, `{"name":"A","value":"b"} {}`, nil, 400, "invalid_json"},
		{"invalid utf-8 value", "POST", "/v1/secrets", e.key, "{\"name\":\"A\",\"value\":\"\xff\xfe\"}", nil, 400, "invalid_json"},
		{"array body", "POST", "/v1/secrets", e.key, `[1,2]`, nil, 400, "invalid_type"},
		{"empty body", "POST", "/v1/secrets", e.key, ``, nil, 400, "invalid_json"},
		{"unknown field", "POST", "/v1/secrets", e.key, `{"name":"A","value":"b","vaule":"c"}`, nil, 400, "unknown_field"},
		{"name wrong type", "POST", "/v1/secrets", e.key, `{"name":5,"value":"b"}`, nil, 400, "invalid_type"},
		{"value wrong type", "POST", "/v1/secrets", e.key, `{"name":"A","value":{"x":1}}`, nil, 400, "invalid_type"},
		{"hosts wrong type", "POST", "/v1/secrets", e.key, `{"name":"A","value":"b","allowed_hosts":"x.com"}`, nil, 400, "invalid_type"},
		{"patch hosts wrong type", "PATCH", "/v1/secrets/EXISTING", e.key, `{"allowed_hosts":"x.com"}`, nil, 400, "invalid_type"},
		{"body over 1 MiB", "POST", "/v1/secrets", e.key, big, nil, 413, "body_too_large"},
		{"value over 64 KiB", "POST", "/v1/secrets", e.key, tooLong, nil, 422, "invalid_value"},
		{"missing name", "POST", "/v1/secrets", e.key, `{"value":"b"}`, nil, 400, "invalid_name"},
		{"missing value", "POST", "/v1/secrets", e.key, `{"name":"A"}`, nil, 400, "invalid_value"},
		{"lower-case name", "POST", "/v1/secrets", e.key, `{"name":"notify_token","value":"b"}`, nil, 422, "invalid_name"},
		{"name starts with digit", "POST", "/v1/secrets", e.key, `{"name":"1A","value":"b"}`, nil, 422, "invalid_name"},
		{"name too long", "POST", "/v1/secrets", e.key, `{"name":"` + strings.Repeat("A", 129) + `","value":"b"}`, nil, 422, "invalid_name"},
		{"empty value", "POST", "/v1/secrets", e.key, `{"name":"A","value":""}`, nil, 422, "invalid_value"},
		{"bad host", "POST", "/v1/secrets", e.key, `{"name":"A","value":"b","allowed_hosts":["a b"]}`, nil, 422, "invalid_allowed_hosts"},
		{"duplicate", "POST", "/v1/secrets", e.key, `{"name":"EXISTING","value":"other"}`, nil, 409, "already_exists"},
		{"wrong content type", "POST", "/v1/secrets", e.key, `{"name":"A","value":"b"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"empty patch", "PATCH", "/v1/secrets/EXISTING", e.key, `{}`, nil, 422, "invalid_argument"},
		{"patch empty value", "PATCH", "/v1/secrets/EXISTING", e.key, `{"value":""}`, nil, 422, "invalid_value"},
		{"patch missing", "PATCH", "/v1/secrets/MISSING", e.key, `{"value":"x"}`, nil, 404, "not_found"},
		{"patch bad name", "PATCH", "/v1/secrets/lower", e.key, `{"value":"x"}`, nil, 422, "invalid_name"},
		{"get bad name", "GET", "/v1/secrets/lower", e.key, ``, nil, 422, "invalid_name"},
		{"delete missing", "DELETE", "/v1/secrets/MISSING", e.key, ``, nil, 404, "not_found"},
		{"no key", "GET", "/v1/secrets", "", ``, nil, 401, "unauthorized"},
		{"wrong key", "GET", "/v1/secrets", "rtr_0123456789abcdef_" + strings.Repeat("A", 43), ``, nil, 401, "unauthorized"},
		{"garbage key", "GET", "/v1/secrets", "garbage", ``, nil, 401, "unauthorized"},
		{"basic auth", "GET", "/v1/secrets", "", ``, []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, "unauthorized"},
		{"bearer without key", "GET", "/v1/secrets", "", ``, []string{"Authorization", "Bearer "}, 401, "unauthorized"},
		{"member creates key", "POST", "/v1/keys", memberKey, `{"name":"x"}`, nil, 403, "forbidden"},
		{"member rotates keyring", "POST", "/v1/vault/rotate-key", memberKey, ``, nil, 403, "forbidden"},
		{"unknown role", "POST", "/v1/keys", e.key, `{"name":"x","role":"root"}`, nil, 422, "invalid_argument"},
		{"key without name", "POST", "/v1/keys", e.key, `{}`, nil, 422, "invalid_argument"},
		{"revoke unknown key", "DELETE", "/v1/keys/key_nope", e.key, ``, nil, 404, "not_found"},
		{"bad workspace name", "POST", "/v1/workspaces", e.key, `{"name":"Bad Name"}`, nil, 422, "invalid_argument"},
		{"wrong method", "PUT", "/v1/secrets", e.key, `{}`, nil, 405, "method_not_allowed"},
		{"wrong method on item", "POST", "/v1/secrets/EXISTING", e.key, `{}`, nil, 405, "method_not_allowed"},
		{"unknown path", "GET", "/v1/nope", e.key, ``, nil, 404, "not_found"},
		{"audit bad limit", "GET", "/v1/audit?limit=0", e.key, ``, nil, 400, "invalid_query"},
		{"audit huge limit", "GET", "/v1/audit?limit=100000", e.key, ``, nil, 400, "invalid_query"},
		{"audit bad since", "GET", "/v1/audit?since=yesterday", e.key, ``, nil, 400, "invalid_query"},
		{"audit bad cursor", "GET", "/v1/audit?cursor=abc", e.key, ``, nil, 400, "invalid_query"},
		{"audit unknown param", "GET", "/v1/audit?type=secret", e.key, ``, nil, 400, "invalid_query"},
		{"audit repeated param", "GET", "/v1/audit?limit=1&limit=2", e.key, ``, nil, 400, "invalid_query"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.key, c.body, c.hdr...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if code := r.errCode(t); code != c.code {
				t.Fatalf("code %q, want %q: %s", code, c.code, r.body)
			}
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	// Nothing changed: the existing secret is still version 1, no new secrets.
	list := e.mustStatus(e.do("GET", "/v1/secrets", e.key, ""), 200)
	var lr struct {
		Secrets []map[string]any `json:"secrets"`
	}
	json.Unmarshal(list.body, &lr)
	if len(lr.Secrets) != 1 || lr.Secrets[0]["version"].(float64) != 1 {
		t.Fatalf("bad input changed state: %s", list.body)
	}
	if strings.Contains(e.logs.String(), `"level":"ERROR"`) {
		t.Fatalf("client mistakes logged as server errors:\n%s", e.logs.String())
	}
}

func TestWorkspaceIsolationAPI(t *testing.T) {
	e := newEnv(t)
	ws := e.mustStatus(e.do("POST", "/v1/workspaces", e.key, `{"name":"team-b"}`), 201).json(t)
	keyB := ws["admin_key"].(map[string]any)["key"].(string)
	e.mustStatus(e.do("POST", "/v1/workspaces", e.key, `{"name":"team-b"}`), 409)
	e.mustStatus(e.do("POST", "/v1/workspaces", keyB, `{"name":"team-c"}`), 403)

	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"A_SECRET","value":"a-value"}`), 201)
	e.mustStatus(e.do("GET", "/v1/secrets/A_SECRET", keyB, ""), 404)
	e.mustStatus(e.do("PATCH", "/v1/secrets/A_SECRET", keyB, `{"value":"hijack"}`), 404)
	e.mustStatus(e.do("DELETE", "/v1/secrets/A_SECRET", keyB, ""), 404)
	if body := e.mustStatus(e.do("GET", "/v1/secrets", keyB, ""), 200).body; strings.Contains(string(body), "A_SECRET") {
		t.Fatalf("B lists A's secret: %s", body)
	}
	if body := e.mustStatus(e.do("GET", "/v1/audit", keyB, ""), 200).body; strings.Contains(string(body), "A_SECRET") {
		t.Fatalf("B reads A's audit: %s", body)
	}
	// B may use the same name for its own secret.
	e.mustStatus(e.do("POST", "/v1/secrets", keyB, `{"name":"A_SECRET","value":"b-value"}`), 201)
	a := e.mustStatus(e.do("GET", "/v1/secrets/A_SECRET", e.key, ""), 200).json(t)
	if a["version"].(float64) != 1 || a["value_hint"] != "a-..." {
		t.Fatalf("A's secret changed: %v", a)
	}
	// B's keys are B's.
	keys := e.mustStatus(e.do("GET", "/v1/keys", keyB, ""), 200)
	if strings.Count(string(keys.body), `"id"`) != 1 {
		t.Fatalf("B sees keys: %s", keys.body)
	}
	wa := e.mustStatus(e.do("GET", "/v1/workspace", e.key, ""), 200).json(t)
	wb := e.mustStatus(e.do("GET", "/v1/workspace", keyB, ""), 200).json(t)
	if wa["name"] != "default" || wb["name"] != "team-b" || wa["id"] == wb["id"] {
		t.Fatalf("workspaces: %v %v", wa, wb)
	}
}

func TestKeysAPI(t *testing.T) {
	e := newEnv(t)
	id, key := e.newKey("member")
	e.mustStatus(e.do("GET", "/v1/secrets", key, ""), 200)
	e.mustStatus(e.do("GET", "/v1/keys", key, ""), 403)
	list := e.mustStatus(e.do("GET", "/v1/keys", e.key, ""), 200)
	if strings.Contains(string(list.body), key) || strings.Contains(string(list.body), `"hash"`) || strings.Contains(string(list.body), `"key"`) {
		t.Fatalf("key list shows key material: %s", list.body)
	}
	e.mustStatus(e.do("DELETE", "/v1/keys/"+id, e.key, ""), 204)
	e.mustStatus(e.do("GET", "/v1/secrets", key, ""), 401)
	e.mustStatus(e.do("DELETE", "/v1/keys/"+id, e.key, ""), 404)
	// The actor of a write is its key id.
	_, k2 := e.newKey("member")
	e.mustStatus(e.do("POST", "/v1/secrets", k2, `{"name":"BY_K2","value":"v"}`), 201)
	a := e.mustStatus(e.do("GET", "/v1/audit?resource_id=BY_K2", e.key, ""), 200)
	if !strings.Contains(string(a.body), `"actor_id":"key_`) || strings.Contains(string(a.body), k2) {
		t.Fatalf("audit actor: %s", a.body)
	}
}

func TestAuditPaging(t *testing.T) {
	e := newEnv(t)
	for i := range 7 {
		e.mustStatus(e.do("POST", "/v1/secrets", e.key, fmt.Sprintf(`{"name":"S%d","value":"v"}`, i)), 201)
	}
	var names []string
	path := "/v1/audit?event_type=secret.created&limit=3"
	for range 5 {
		var page struct {
			Events []struct {
				ResourceID string `json:"resource_id"`
			} `json:"events"`
			Next *string `json:"next_cursor"`
		}
		json.Unmarshal(e.mustStatus(e.do("GET", path, e.key, ""), 200).body, &page)
		for _, ev := range page.Events {
			names = append(names, ev.ResourceID)
		}
		if page.Next == nil {
			break
		}
		path = "/v1/audit?event_type=secret.created&limit=3&cursor=" + *page.Next
	}
	if strings.Join(names, ",") != "S6,S5,S4,S3,S2,S1,S0" {
		t.Fatalf("paged = %v", names)
	}
	since := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	r := e.mustStatus(e.do("GET", "/v1/audit?since="+since, e.key, ""), 200)
	if !strings.Contains(string(r.body), `"events":[]`) {
		t.Fatalf("future since: %s", r.body)
	}
}

func TestKeyringRotationAPI(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"A","value":"v"}`), 201)
	r := e.mustStatus(e.do("POST", "/v1/vault/rotate-key", e.key, ""), 200).json(t)
	// The secret and the workspace's two dispatch credentials.
	if r["rewrapped"].(float64) != 3 || len(r["retired_key_ids"].([]any)) != 1 {
		t.Fatalf("rotate = %v", r)
	}
	e.mustStatus(e.do("GET", "/v1/secrets/A", e.key, ""), 200)
}

func TestRequestIDAndMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/secrets", e.key, "", "X-Request-Id", "abc-123")
	if r.header.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("request id not kept: %q", r.header.Get("X-Request-Id"))
	}
	r = e.do("GET", "/v1/secrets", e.key, "", "X-Request-Id", "bad id\u2028")
	if id := r.header.Get("X-Request-Id"); !strings.HasPrefix(id, "req_") {
		t.Fatalf("bad request id kept: %q", id)
	}
	r = e.do("PUT", "/v1/secrets/A", e.key, "")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, http.MethodPatch) || !strings.Contains(allow, http.MethodDelete) {
		t.Fatalf("Allow = %q", allow)
	}
}
