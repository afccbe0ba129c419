package api_test

import (
	"strings"
	"testing"
)

// TestMemberQueueDestination: over the API, a member key's queue at a host
// the callback secret's allowed_hosts do not cover is a 403 naming
// callback_url; an admin approves the host through the callback-secret
// resource, which members can neither read nor change.
func TestMemberQueueDestination(t *testing.T) {
	e := newEnv(t)
	_, member := e.newKey("member")
	r := e.mustStatus(e.do("POST", "/v1/queues", member, `{"name":"q","callback_url":"https://attacker.test/hook"}`), 403)
	if code := r.errCode(t); code != "forbidden" || !strings.Contains(string(r.body), "callback_url") || !strings.Contains(string(r.body), "admin must approve") {
		t.Fatalf("member queue: %s", r.body)
	}
	e.mustStatus(e.do("PATCH", "/v1/queues/q", member, `{"callback_url":"https://attacker.test/hook"}`), 403)
	e.mustStatus(e.do("GET", "/v1/workspace/callback-secret", member, ""), 403)
	e.mustStatus(e.do("PATCH", "/v1/workspace/callback-secret", member, `{"allowed_hosts":["attacker.test"]}`), 403)

	got := e.mustStatus(e.do("GET", "/v1/workspace/callback-secret", e.key, ""), 200)
	if !strings.Contains(string(got.body), `"allowed_hosts":[]`) || strings.Contains(string(got.body), "rcs_") || strings.Contains(string(got.body), "whsec_") {
		t.Fatalf("settings: %s", got.body)
	}
	e.mustStatus(e.do("PATCH", "/v1/workspace/callback-secret", e.key, `{"allowed_hosts":["bad host!"]}`), 422)
	set := e.mustStatus(e.do("PATCH", "/v1/workspace/callback-secret", e.key, `{"allowed_hosts":["Hooks.Example.com"]}`), 200)
	if !strings.Contains(string(set.body), `"allowed_hosts":["hooks.example.com"]`) {
		t.Fatalf("set: %s", set.body)
	}
	e.mustStatus(e.do("POST", "/v1/queues", member, `{"name":"q","callback_url":"https://hooks.example.com/hook"}`), 201)
	e.mustStatus(e.do("PATCH", "/v1/queues/q", member, `{"callback_url":"https://attacker.test/hook"}`), 403)
	// Admins choose any destination.
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"q2","callback_url":"https://elsewhere.test/hook"}`), 201)
	// Rotation keeps the policy.
	e.mustStatus(e.do("POST", "/v1/workspace/callback-secret", e.key, ""), 200)
	if got := e.mustStatus(e.do("GET", "/v1/workspace/callback-secret", e.key, ""), 200); !strings.Contains(string(got.body), "hooks.example.com") {
		t.Fatalf("after rotation: %s", got.body)
	}
}

func TestCallbackRotationParameters(t *testing.T) {
	e := newEnv(t)
	r := e.mustStatus(e.do("POST", "/v1/workspace/callback-secret", e.key, `{"grace":"1h","only":"signing"}`), 200).json(t)
	if _, ok := r["callback_secret"]; ok || !strings.HasPrefix(r["signing_secret"].(string), "whsec_") || r["signing_grace_seconds"].(float64) != 3600 {
		t.Fatalf("signing only: %v", r)
	}
	if got := e.mustStatus(e.do("GET", "/v1/workspace/callback-secret", e.key, ""), 200).json(t); got["signing_grace_until"] == nil {
		t.Fatalf("no grace shown: %v", got)
	}
	r = e.mustStatus(e.do("POST", "/v1/workspace/callback-secret", e.key, `{"only":"callback"}`), 200).json(t)
	if _, ok := r["signing_secret"]; ok || !strings.HasPrefix(r["callback_secret"].(string), "rcs_") {
		t.Fatalf("callback only: %v", r)
	}
	for _, body := range []string{`{"grace":"forever"}`, `{"grace":"-1h"}`, `{"grace":"200h"}`, `{"only":"both"}`} {
		if r := e.do("POST", "/v1/workspace/callback-secret", e.key, body); r.status != 400 && r.status != 422 {
			t.Fatalf("%s: %d %s", body, r.status, r.body)
		}
	}
}
