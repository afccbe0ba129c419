package api_test

import (
	"net/url"
	"strings"
	"testing"
)

// TestAttackRoleMatrix: every endpoint with a key of each role. A key below
// the endpoint's role gets 403 forbidden and changes nothing; a key at or
// above it is not refused for its role. Key creation never exceeds the
// creator's role, whatever the spelling of the role.
func TestAttackRoleMatrix(t *testing.T) {
	e := newEnv(t)
	_, admin := e.newKey("admin")
	_, member := e.newKey("member")
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"TARGET","value":"target-value-123"}`), 201)
	e.mustStatus(e.do("PATCH", "/v1/workspace/callback-secret", e.key, `{"allowed_hosts":["hooks.example.com"]}`), 200)
	victimID, _ := e.newKey("member")
	rank := map[string]int{"member": 1, "admin": 2, "operator": 3}
	keys := map[string]string{"member": member, "admin": admin, "operator": e.key}
	for _, c := range []struct {
		method, path, body, need string
	}{
		{"GET", "/v1/keys", "", "admin"},
		{"POST", "/v1/keys", `{"name":"x","role":"member"}`, "admin"},
		{"DELETE", "/v1/keys/" + victimID, "", "admin"},
		{"GET", "/v1/workspace/callback-secret", "", "admin"},
		{"PATCH", "/v1/workspace/callback-secret", `{"allowed_hosts":["attacker.test"]}`, "admin"},
		{"POST", "/v1/workspace/callback-secret", `{"only":"callback","grace":"0s"}`, "admin"},
		{"POST", "/v1/workspaces", `{"name":"ws-x"}`, "operator"},
		{"POST", "/v1/vault/rotate-key", "", "operator"},
		{"GET", "/v1/secrets", "", "member"},
		{"GET", "/v1/audit", "", "member"},
	} {
		for _, role := range []string{"member", "admin", "operator"} {
			if rank[role] >= rank[c.need] {
				continue
			}
			r := e.do(c.method, c.path, keys[role], c.body)
			if r.status != 403 || r.errCode(t) != "forbidden" {
				t.Errorf("%s %s with a %s key: %d %s; want 403 forbidden", c.method, c.path, role, r.status, r.body)
			}
			if strings.Contains(string(r.body), "rcs_") || strings.Contains(string(r.body), "whsec_") || strings.Contains(string(r.body), "rtr_") {
				t.Errorf("%s %s with a %s key: a refusal holds a credential: %s", c.method, c.path, role, r.body)
			}
		}
	}
	// Nothing the refused calls asked for happened.
	if got := e.mustStatus(e.do("GET", "/v1/workspace/callback-secret", e.key, ""), 200); !strings.Contains(string(got.body), `"allowed_hosts":["hooks.example.com"]`) {
		t.Fatalf("callback settings after refused calls: %s", got.body)
	}
	keysNow := string(e.mustStatus(e.do("GET", "/v1/keys", e.key, ""), 200).body)
	if !strings.Contains(keysNow, victimID) || strings.Count(keysNow, `"revoked_at":null`) != 4 {
		t.Fatalf("keys after refused calls: %s", keysNow)
	}
	// Escalation through key creation, in any spelling.
	for _, role := range []string{"operator", "OPERATOR", " operator", "operator ", "Operator", "root", "owner", "superuser", "admin\u0000"} {
		body := `{"name":"esc","role":` + jsonString(role) + `}`
		if r := e.do("POST", "/v1/keys", admin, body); r.status == 201 {
			t.Errorf("admin created a key with role %q: %s", role, r.body)
		}
		if r := e.do("POST", "/v1/keys", member, body); r.status == 201 {
			t.Errorf("member created a key with role %q: %s", role, r.body)
		}
	}
	// Duplicate JSON members: the last one wins in Go, and is still checked.
	if r := e.do("POST", "/v1/keys", admin, `{"name":"esc","role":"member","role":"operator"}`); r.status == 201 {
		t.Errorf("duplicate role member: %s", r.body)
	}
	if r := e.do("POST", "/v1/keys", admin, `{"name":"esc","Role":"operator"}`); r.status == 201 && strings.Contains(string(r.body), `"role":"operator"`) {
		t.Errorf("case-folded field name: %s", r.body)
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestAttackWorkspaceIsolation: keys of workspace B, admin included, reach
// nothing of workspace A: its secrets (read, rotate, re-bind, delete), its
// keys, its audit trail, its queues and jobs, its callback credentials.
func TestAttackWorkspaceIsolation(t *testing.T) {
	e := newEnv(t)
	ws := e.mustStatus(e.do("POST", "/v1/workspaces", e.key, `{"name":"team-b"}`), 201).json(t)
	adminB := ws["admin_key"].(map[string]any)["key"].(string)
	wsB := ws["workspace"].(map[string]any)["id"].(string)
	memberB := e.mustStatus(e.do("POST", "/v1/keys", adminB, `{"name":"mb","role":"member"}`), 201).json(t)["key"].(string)
	memberAID, _ := e.newKey("member")
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"A_SECRET","value":"a-secret-value-42","allowed_hosts":["a.example.com"]}`), 201)
	e.mustStatus(e.do("PATCH", "/v1/workspace/callback-secret", e.key, `{"allowed_hosts":["a-hooks.example.com"]}`), 200)
	e.mustStatus(e.do("POST", "/v1/queues", e.key, `{"name":"a-queue","callback_url":"https://a-hooks.example.com/"}`), 201)
	job := e.mustStatus(e.do("POST", "/v1/queues/a-queue/jobs", e.key, `{"payload":{"a":1}}`), 201).json(t)["id"].(string)

	for _, key := range []string{adminB, memberB} {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/v1/secrets/A_SECRET", ""},
			{"PATCH", "/v1/secrets/A_SECRET", `{"value":"overwritten-by-b"}`},
			{"PATCH", "/v1/secrets/A_SECRET", `{"allowed_hosts":["b.attacker.test"]}`},
			{"DELETE", "/v1/secrets/A_SECRET", ""},
			{"GET", "/v1/queues/a-queue", ""},
			{"PATCH", "/v1/queues/a-queue", `{"max_attempts":1}`},
			{"DELETE", "/v1/queues/a-queue", ""},
			{"POST", "/v1/queues/a-queue/jobs", `{"payload":{}}`},
			{"POST", "/v1/queues/a-queue/jobs/retry", ""},
			{"GET", "/v1/jobs/" + job, ""},
			{"DELETE", "/v1/jobs/" + job, ""},
			{"POST", "/v1/jobs/" + job + "/retry", ""},
		} {
			if r := e.do(c.method, c.path, key, c.body); r.status != 404 {
				t.Errorf("%s %s from B: %d %s; want 404", c.method, c.path, r.status, r.body)
			}
		}
	}
	e.mustStatus(e.do("DELETE", "/v1/keys/"+memberAID, adminB, ""), 404)
	keysB := string(e.mustStatus(e.do("GET", "/v1/keys", adminB, ""), 200).body)
	if strings.Contains(keysB, memberAID) {
		t.Fatal("B's admin lists A's keys")
	}
	auditB := string(e.mustStatus(e.do("GET", "/v1/audit?limit=500", adminB, ""), 200).body)
	if strings.Contains(auditB, "A_SECRET") || strings.Contains(auditB, "a-queue") || strings.Contains(auditB, memberAID) {
		t.Fatalf("B reads A's audit rows: %s", auditB)
	}
	settingsB := string(e.mustStatus(e.do("GET", "/v1/workspace/callback-secret", adminB, ""), 200).body)
	if strings.Contains(settingsB, "a-hooks.example.com") {
		t.Fatalf("B reads A's callback allowed_hosts: %s", settingsB)
	}
	e.mustStatus(e.do("PATCH", "/v1/workspace/callback-secret", adminB, `{"allowed_hosts":["b.attacker.test"]}`), 200)
	e.mustStatus(e.do("POST", "/v1/workspace/callback-secret", adminB, ""), 200)

	// A is untouched.
	sec := string(e.mustStatus(e.do("GET", "/v1/secrets/A_SECRET", e.key, ""), 200).body)
	if !strings.Contains(sec, "a.example.com") || strings.Contains(sec, "attacker") || !strings.Contains(sec, `"version":1`) {
		t.Fatalf("A's secret after B's attempts: %s", sec)
	}
	q := string(e.mustStatus(e.do("GET", "/v1/queues/a-queue", e.key, ""), 200).body)
	if !strings.Contains(q, "a-hooks.example.com") {
		t.Fatalf("A's queue after B's attempts: %s", q)
	}
	j := string(e.mustStatus(e.do("GET", "/v1/jobs/"+job, e.key, ""), 200).body)
	if !strings.Contains(j, `"status":"queued"`) || !strings.Contains(q, `"max_attempts":`) || strings.Contains(q, `"max_attempts":1,`) {
		t.Fatalf("A's job after B's attempts: %s", j)
	}
	settingsA := string(e.mustStatus(e.do("GET", "/v1/workspace/callback-secret", e.key, ""), 200).body)
	if !strings.Contains(settingsA, `"allowed_hosts":["a-hooks.example.com"]`) {
		t.Fatalf("A's callback settings after B's changes: %s", settingsA)
	}
	auditA := string(e.mustStatus(e.do("GET", "/v1/audit?limit=500&resource_id="+url.QueryEscape(wsB), e.key, ""), 200).body)
	if strings.Contains(auditA, "b.attacker.test") {
		t.Fatalf("A's audit holds B's rows: %s", auditA)
	}
}
