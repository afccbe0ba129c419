package api_test

import (
	"encoding/json"
	"testing"
)

// TestSecretReferences: GET /v1/secrets/{name}/references names the queues
// whose templates use the secret; an unknown secret is a JSON 404; a
// request without a key is a 401.
func TestSecretReferences(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"NOTIFY_TOKEN","value":"value-of-the-token"}`), 201)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"UNUSED","value":"value-of-unused"}`), 201)
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"hooks","callback_url":"https://api.example.com/h","callback_headers":{"X-Key":"${{ secrets.NOTIFY_TOKEN }}"}}`), 201)
	refs := func(name string) []map[string]string {
		t.Helper()
		r := e.mustStatus(e.do("GET", "/v1/secrets/"+name+"/references", e.key, ""), 200)
		var body struct {
			References []map[string]string `json:"references"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil || body.References == nil {
			t.Fatalf("body %s", r.body)
		}
		return body.References
	}
	if got := refs("NOTIFY_TOKEN"); len(got) != 1 || got[0]["kind"] != "queue" || got[0]["name"] != "hooks" {
		t.Fatalf("NOTIFY_TOKEN references %v", got)
	}
	if got := refs("UNUSED"); len(got) != 0 {
		t.Fatalf("UNUSED references %v", got)
	}
	if r := e.do("GET", "/v1/secrets/MISSING/references", e.key, ""); r.status != 404 || r.errCode(t) != "not_found" {
		t.Fatalf("unknown secret: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/secrets/NOTIFY_TOKEN/references", "", ""); r.status != 401 {
		t.Fatalf("no key: %d", r.status)
	}
}
