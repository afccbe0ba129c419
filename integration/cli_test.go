package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestGuideMigrationWithCLI: the product guide's migration with the CLI
// against a running server: import from a .env (one name already in the
// vault, one unset), point a queue at a secret, enqueue a test job and wait
// for its delivery, read the audit trail. No value is ever printed.
func TestGuideMigrationWithCLI(t *testing.T) {
	var mu sync.Mutex
	var gotToken string
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		gotToken = r.URL.Query().Get("token")
		mu.Unlock()
	}))
	defer down.Close()
	dir := t.TempDir()
	s := startServer(t, dir)
	defer s.stop()
	env := []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + s.adminKey()}

	// SLACK_BOT_TOKEN is already in the vault.
	cmd := []string{"secrets", "create", "SLACK_BOT_TOKEN", "--from-env", "PRESET"}
	if code, out, errOut := rotor(t, append(env, "PRESET=xoxb-already-there-123"), cmd...); code != 0 {
		t.Fatalf("secrets create: %d %s %s", code, out, errOut)
	}
	envFile := filepath.Join(dir, ".env")
	os.WriteFile(envFile, []byte("# app env\nexport NOTIFY_TOKEN=\"your-token-here\"\nSLACK_BOT_TOKEN='xoxb-from-file-456'\nDATABASE_URL=postgres://stays-in-env\n"), 0o600)
	code, out, errOut := rotor(t, env, "secrets", "import", "--env-file", envFile, "--only", "NOTIFY_TOKEN,SLACK_BOT_TOKEN,STRIPE_WEBHOOK_SECRET")
	if code != 0 {
		t.Fatalf("import: %d %s %s", code, out, errOut)
	}
	for _, want := range []string{"[ok] NOTIFY_TOKEN → hint: your-t...", "[skip] SLACK_BOT_TOKEN — already exists in vault", "[skip] STRIPE_WEBHOOK_SECRET — not set"} {
		if !strings.Contains(out, want) {
			t.Fatalf("import output lacks %q:\n%s", want, out)
		}
	}
	for _, v := range []string{"your-token-here", "xoxb-from-file-456", "stays-in-env"} {
		if strings.Contains(out+errOut, v) {
			t.Fatalf("import printed a value")
		}
	}
	// --all asks first; without a terminal it needs --yes.
	if code, _, errOut := rotor(t, env, "secrets", "import", "--env-file", envFile, "--all"); code == 0 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("--all without confirmation: %d %s", code, errOut)
	}
	code, out, _ = rotor(t, env, "secrets", "import", "--env-file", envFile, "--all", "--dry-run")
	if code != 0 || !strings.Contains(out, "[dry-run] DATABASE_URL would be created") {
		t.Fatalf("dry run: %d %s", code, out)
	}

	if code, out, errOut := rotor(t, env, "queues", "update", "notifications", "--callback-url", down.URL+"/notify?token=${{ secrets.NOTIFY_TOKEN }}"); code != 0 {
		t.Fatalf("queues update: %d %s %s", code, out, errOut)
	}
	code, out, errOut = rotor(t, env, "jobs", "enqueue", "notifications", "--payload", `{"event":"test"}`, "--wait")
	if code != 0 || !strings.Contains(out, "delivered") {
		t.Fatalf("jobs enqueue --wait: %d %s %s", code, out, errOut)
	}
	mu.Lock()
	if gotToken != "your-token-here" {
		t.Fatalf("downstream got %q", gotToken)
	}
	mu.Unlock()
	code, out, _ = rotor(t, env, "audit", "list", "--resource-type", "secret")
	if code != 0 || !strings.Contains(out, "secret.created") || !strings.Contains(out, "secret.accessed") || !strings.Contains(out, "secret:NOTIFY_TOKEN") {
		t.Fatalf("audit list: %d %s", code, out)
	}
	code, out, _ = rotor(t, env, "secrets", "list", "-o", "json")
	if code != 0 || !strings.Contains(out, `"value_hint": "your-t..."`) || strings.Contains(out, "your-token-here") {
		t.Fatalf("secrets list: %d %s", code, out)
	}
	// Errors: one line, the API's code, exit 1; values never from argv.
	code, _, errOut = rotor(t, env, "secrets", "create", "lower_case", "--from-env", "PATH")
	if code != 1 || !strings.Contains(errOut, "invalid_name") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("bad name: %d %q", code, errOut)
	}
	if code, _, errOut := rotor(t, env, "secrets", "delete", "NOTIFY_TOKEN"); code != 1 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("delete without --yes: %d %s", code, errOut)
	}
	if code, _, errOut := rotor(t, env, "secrets", "delete", "NOTIFY_TOKEN", "--yes"); code != 1 || !strings.Contains(errOut, "secret_in_use") {
		t.Fatalf("delete of a referenced secret: %d %s", code, errOut)
	}
	if code, out, _ := rotor(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "rotor ") {
		t.Fatalf("version: %d %s", code, out)
	}
}
