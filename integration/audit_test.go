package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

type verifyResult struct {
	OK            bool   `json:"ok"`
	Rows          int64  `json:"rows"`
	LastID        int64  `json:"last_id"`
	SealedThrough int64  `json:"sealed_through"`
	FirstBadID    int64  `json:"first_bad_id"`
	Problem       string `json:"problem"`
}

func verifyAudit(t *testing.T, apiURL, key string) verifyResult {
	t.Helper()
	code, body := call(t, "GET", apiURL+"/v1/audit/verify", key, "")
	var res verifyResult
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil {
		t.Fatalf("verify: %d %s", code, body)
	}
	return res
}

// waitSealed waits (bounded) until the seal covers the whole trail.
func waitSealed(t *testing.T, apiURL, key string) verifyResult {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := verifyAudit(t, apiURL, key)
		if res.OK && res.LastID > 0 && res.SealedThrough == res.LastID {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("trail not sealed after 10 s: %+v", res)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAuditTamperOnPostgres runs rotor as a database role that may only
// INSERT and SELECT audit_event (docs/security.md's grant), checks that the
// role really cannot rewrite history, then edits a row as the table owner
// and expects `rotor audit verify` to exit 1 naming that row.
func TestAuditTamperOnPostgres(t *testing.T) {
	ownerDSN, schema := pgSchema(t)
	ctx := context.Background()
	if code, out, errOut := rotor(t, []string{"ROTOR_POSTGRES_DSN=" + ownerDSN}, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %s %s", code, out, errOut)
	}
	owner, err := pgx.Connect(ctx, ownerDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	role := "rotor_app_" + strings.TrimPrefix(schema, "rotor_test_")
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schema + " TO " + role,
		"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA " + schema + " TO " + role,
		"REVOKE UPDATE, DELETE, TRUNCATE ON " + schema + ".audit_event FROM " + role,
	} {
		if _, err := owner.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), ownerDSN)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP OWNED BY "+role)
		c.Exec(context.Background(), "DROP ROLE "+role)
	})
	u, err := url.Parse(ownerDSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	appDSN := u.String()

	const key = "audit-tamper-bootstrap-key-0123456789"
	master := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	s := startServer(t, t.TempDir(), "ROTOR_STORAGE=postgres", "ROTOR_POSTGRES_DSN="+appDSN, "ROTOR_MASTER_KEY="+master, "ROTOR_BOOTSTRAP_API_KEY="+key)
	defer s.stop()
	for i := range 3 {
		if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, fmt.Sprintf(`{"name":"TAMPER_%d","value":"value-%d-0123456789"}`, i, i)); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		if code, body := call(t, "PATCH", s.apiURL+fmt.Sprintf("/v1/secrets/TAMPER_%d", i), key, `{"value":"rotated-0123456789"}`); code != 200 {
			t.Fatalf("rotate: %d %s", code, body)
		}
	}
	sealed := waitSealed(t, s.apiURL, key)
	env := []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + key}
	if code, out, errOut := rotor(t, env, "audit", "verify"); code != 0 || !strings.Contains(out, "audit trail intact") {
		t.Fatalf("verify intact: %d %q %q", code, out, errOut)
	}

	// Rotor's own role cannot rewrite the trail.
	app, err := pgx.Connect(ctx, appDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	for _, q := range []string{"UPDATE audit_event SET actor_id='x'", "DELETE FROM audit_event", "TRUNCATE audit_event"} {
		if _, err := app.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("%s as rotor's role: %v, want permission denied", q, err)
		}
	}

	// Someone with more rights edits one row.
	var target int64
	if err := owner.QueryRow(ctx, `SELECT id FROM audit_event WHERE event_type='secret.rotated' ORDER BY id LIMIT 1`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, `UPDATE audit_event SET actor_id='key_innocent' WHERE id=$1`, target); err != nil {
		t.Fatal(err)
	}
	res := verifyAudit(t, s.apiURL, key)
	if res.OK || res.FirstBadID != target || res.Rows >= sealed.Rows {
		t.Fatalf("after editing row %d: %+v", target, res)
	}
	code, out, errOut := rotor(t, env, "audit", "verify")
	if code != 1 || !strings.Contains(errOut, fmt.Sprintf("row %d", target)) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("rotor audit verify after tampering: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Logf("rotor audit verify: %s", strings.TrimSpace(errOut))
}
