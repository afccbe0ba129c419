package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/vault"
)

func canary(t *testing.T) string {
	b := make([]byte, 24)
	rand.Read(b)
	// Characters that change under URL and JSON encoding, so every form differs.
	return "cn/" + base64.StdEncoding.EncodeToString(b) + "&x=y"
}

// TestCanary: a random secret is created, rotated, listed, resolved and
// deleted; afterwards neither value (in any encoding) is in the raw bbolt
// file, the audit rows, any response body or header, the logs (debug level)
// or the metrics.
func TestCanary(t *testing.T) {
	e := newEnv(t)
	v1, v2 := canary(t), canary(t)
	ctx := context.Background()
	body, _ := json.Marshal(map[string]string{"name": "CANARY", "value": v1})
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, string(body)), 201)
	body, _ = json.Marshal(map[string]string{"name": "OTHER", "value": v1})
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, string(body)), 201)
	actor, err := e.vault.Authenticate(ctx, e.key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.vault.Resolve(ctx, vault.ResolveRequest{WorkspaceID: actor.WorkspaceID, Name: "CANARY", ActorID: actor.KeyID, Host: "api.example.com"})
	if err != nil || string(r.Value.Bytes()) != v1 {
		t.Fatalf("resolve: %v", err)
	}
	body, _ = json.Marshal(map[string]string{"value": v2})
	e.mustStatus(e.do("PATCH", "/v1/secrets/CANARY", e.key, string(body)), 200)
	r, err = e.vault.Resolve(ctx, vault.ResolveRequest{WorkspaceID: actor.WorkspaceID, Name: "CANARY", ActorID: actor.KeyID, Host: "api.example.com"})
	if err != nil || string(r.Value.Bytes()) != v2 {
		t.Fatalf("resolve after rotate: %v", err)
	}
	// A duplicate create with the value, and a bad request echoing nothing.
	body, _ = json.Marshal(map[string]string{"name": "CANARY", "value": v2})
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, string(body)), 409)
	body, _ = json.Marshal(map[string]any{"name": "CANARY", "value": v2, "extra": v2})
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, string(body)), 400)
	e.mustStatus(e.do("GET", "/v1/secrets", e.key, ""), 200)
	e.mustStatus(e.do("GET", "/v1/secrets/CANARY", e.key, ""), 200)
	e.mustStatus(e.do("DELETE", "/v1/secrets/OTHER", e.key, ""), 204)
	audit := e.mustStatus(e.do("GET", "/v1/audit?limit=1000", e.key, ""), 200)
	if err := e.vault.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}

	page, err := e.store.ListAudit(ctx, storage.AuditQuery{WorkspaceID: actor.WorkspaceID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := json.Marshal(page.Events)
	if !bytes.Contains(rows, []byte("secret.accessed")) {
		t.Fatal("no access rows to scan")
	}
	var metrics bytes.Buffer
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&metrics, mf)
	}
	db, err := os.ReadFile(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[string][]byte{
		"bbolt file":     db,
		"audit rows":     rows,
		"audit API":      audit.body,
		"responses":      []byte(e.bodies.String()),
		"logs":           []byte(e.logs.String()),
		"metrics":        metrics.Bytes(),
		"error messages": []byte(err2str(e)),
	}
	for _, v := range []string{v1, v2} {
		leakcheck.Scan(t, v, blobs)
	}
	if !strings.Contains(e.logs.String(), api.LogMsgRequest) {
		t.Fatal("no request logs captured: the scan would prove nothing")
	}
}

// err2str gathers the error strings the vault returns for hostile inputs
// that carry the value, so errors are scanned too.
func err2str(e *env) string {
	var sb strings.Builder
	actor, _ := e.vault.Authenticate(context.Background(), e.key)
	for _, bad := range []string{"", strings.Repeat("x", vault.MaxValueLen+1)} {
		_, err := e.vault.CreateSecret(context.Background(), actor, vault.CreateSecretRequest{Name: "X", Value: vault.PlaintextString(bad)})
		sb.WriteString(err.Error())
	}
	return sb.String()
}

// TestLogFields: one summary line per request, with the documented field
// names.
func TestLogFields(t *testing.T) {
	e := newEnv(t)
	e.mustStatus(e.do("POST", "/v1/secrets", e.key, `{"name":"A","value":"v"}`), 201)
	e.mustStatus(e.do("GET", "/v1/secrets/MISSING", e.key, ""), 404)
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if m["msg"] == api.LogMsgRequest {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d summary lines for 2 requests", len(lines))
	}
	for _, f := range []string{api.LogFieldRequestID, api.LogFieldMethod, api.LogFieldRoute, api.LogFieldPath, api.LogFieldStatus,
		api.LogFieldDurationMS, api.LogFieldBytesOut, api.LogFieldActorID, api.LogFieldWorkspace, api.LogFieldRemote} {
		for _, l := range lines {
			if _, ok := l[f]; !ok {
				t.Errorf("summary line lacks %q: %v", f, l)
			}
		}
	}
	if lines[0][api.LogFieldRoute] != "POST /v1/secrets" || lines[1][api.LogFieldStatus].(float64) != 404 || lines[1][api.LogFieldErrorCode] != "not_found" {
		t.Fatalf("summary lines = %v", lines)
	}
}

// TestPanicIsContained: a handler panic answers 500 with the JSON error
// body, logs the stack but neither the panic value nor the request, and the
// server keeps serving.
func TestPanicIsContained(t *testing.T) {
	logs := &leakcheck.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	// A server without a vault panics (nil pointer) as soon as it
	// authenticates: a stand-in for any bug in a handler.
	srv := httptest.NewServer(api.New(api.Options{Logger: log}))
	defer srv.Close()
	const value = "canary-panic-0123456789-abcdef"
	for range 2 {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/secrets", strings.NewReader(`{"name":"A","value":"`+value+`"}`))
		req.Header.Set("Authorization", "Bearer rtr_0123456789abcdef_x")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 500 || !strings.Contains(string(body), `"code":"internal"`) {
			t.Fatalf("panic answered %d %s", res.StatusCode, body)
		}
	}
	if !strings.Contains(logs.String(), "panic in handler") {
		t.Fatal("panic not logged")
	}
	leakcheck.Scan(t, value, map[string][]byte{"logs": []byte(logs.String())})
	leakcheck.Scan(t, "rtr_0123456789abcdef_x", map[string][]byte{"logs": []byte(logs.String())})
}
