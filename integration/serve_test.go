package integration

import (
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"rotor.sh/rotor/internal/leakcheck"
)

// TestFirstStartAndRestart: the README's `make run` path. A fresh data dir
// gets a generated master key (0600) and a printed admin key; the guide's
// secret steps work; SIGTERM stops cleanly; a restart reuses the key file
// and the data.
func TestFirstStartAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	keyFile := filepath.Join(dir, "data", "master.key")
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("master.key mode %v, want 0600", st.Mode().Perm())
	}
	if !strings.Contains(s.out.String(), "DEVELOPMENT SETUP") {
		t.Fatal("no development warning")
	}
	key := s.adminKey()
	const value = "canary-integration-Zq9/xW+3&k=v"
	code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"NOTIFY_TOKEN","value":"`+value+`"}`)
	if code != 201 || !strings.Contains(body, `"value_hint":"canary-i..."`) {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := call(t, "PATCH", s.apiURL+"/v1/secrets/NOTIFY_TOKEN", key, `{"value":"`+value+`-2"}`); code != 200 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if code, _ := call(t, "GET", s.opsURL+"/readyz", "", ""); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	code, metrics := call(t, "GET", s.opsURL+"/metrics", "", "")
	if code != 200 || !strings.Contains(metrics, "rotor_api_requests_total") {
		t.Fatalf("metrics: %d", code)
	}
	s.stop()
	if !strings.Contains(s.out.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop logged:\n%s", s.out.String())
	}

	s2 := startServer(t, dir)
	if strings.Contains(s2.out.String(), "export ROTOR_API_KEY") {
		t.Fatal("restart printed a new admin key")
	}
	code, body = call(t, "GET", s2.apiURL+"/v1/secrets/NOTIFY_TOKEN", key, "")
	if code != 200 || !strings.Contains(body, `"version":2`) {
		t.Fatalf("after restart: %d %s", code, body)
	}
	s2.stop()

	db, _ := os.ReadFile(filepath.Join(dir, "data", "rotor.db"))
	leakcheck.Scan(t, value, map[string][]byte{
		"bbolt file":    db,
		"server output": []byte(s.out.String() + s2.out.String()),
		"metrics":       []byte(metrics),
	})
}

func TestWrongMasterKeyRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	s.stop()
	other := base64.StdEncoding.EncodeToString(make([]byte, 32))
	out := tryStart(t, dir, "ROTOR_MASTER_KEY="+other).exitErr()
	if !strings.Contains(out, "master key does not match") {
		t.Fatalf("wrong key: %s", out)
	}
	// Data present, key file gone: refuse rather than generate a new key.
	if err := os.Remove(filepath.Join(dir, "data", "master.key")); err != nil {
		t.Fatal(err)
	}
	out = tryStart(t, dir).exitErr()
	if !strings.Contains(out, "holds data but no master key") {
		t.Fatalf("missing key: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "master.key")); err == nil {
		t.Fatal("a new master key was generated over existing data")
	}
}

func TestBootstrapKeyAndMasterKeyEnv(t *testing.T) {
	dir := t.TempDir()
	master := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	const boot = "ci-bootstrap-key-abcdefghijklmnop"
	s := startServer(t, dir, "ROTOR_MASTER_KEY="+master, "ROTOR_BOOTSTRAP_API_KEY="+boot)
	if strings.Contains(s.out.String(), boot) {
		t.Fatal("bootstrap key echoed in output")
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "master.key")); err == nil {
		t.Fatal("master.key written although ROTOR_MASTER_KEY was set")
	}
	if code, body := call(t, "GET", s.apiURL+"/v1/secrets", boot, ""); code != 200 {
		t.Fatalf("bootstrap key: %d %s", code, body)
	}
	s.stop()
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "mk")
	os.WriteFile(kf, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o600)
	s := startServer(t, dir, "ROTOR_MASTER_KEY_FILE="+kf)
	s.stop()
	os.WriteFile(kf, []byte("c2hvcnQ=\n"), 0o600)
	out := tryStart(t, dir, "ROTOR_MASTER_KEY_FILE="+kf).exitErr()
	if !strings.Contains(out, "master-key-file") || !strings.Contains(out, "got 5 bytes") {
		t.Fatalf("short key file: %s", out)
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	out := tryStart(t, dir, "ROTOR_LOG_LEVEL=loud").exitErr()
	if !strings.Contains(out, "log-level") || !strings.Contains(out, "ROTOR_LOG_LEVEL") {
		t.Fatalf("bad log level: %s", out)
	}
	cfg := filepath.Join(dir, "rotor.yaml")
	os.WriteFile(cfg, []byte("dat-dir: ./x\n"), 0o600)
	out = tryStart(t, dir, "ROTOR_CONFIG="+cfg).exitErr()
	if !strings.Contains(out, `unknown key "dat-dir"`) {
		t.Fatalf("unknown config key: %s", out)
	}
	// A valid config file is used (env for addresses still wins).
	os.WriteFile(cfg, []byte("shutdown-timeout: 7s\nlog-level: info\n"), 0o600)
	s := startServer(t, dir, "ROTOR_CONFIG="+cfg)
	s.stop()
	if !strings.Contains(s.out.String(), `"drain_timeout":"7s"`) {
		t.Fatalf("shutdown-timeout from the config file was not applied:\n%s", s.out.String())
	}
	// The shipped example config loads (addresses and data dir from the environment win).
	example, _ := filepath.Abs("../configs/rotor.example.yaml")
	s = startServer(t, dir, "ROTOR_CONFIG="+example)
	s.stop()
	// A second server on the same data dir fails fast with a clear message.
	s = startServer(t, dir)
	out = tryStart(t, dir).exitErr()
	if !strings.Contains(out, "another rotor") {
		t.Fatalf("second server: %s", out)
	}
	s.stop()
}

// TestCLI: the key and vault commands against a running server, with
// one-line errors and non-zero exits.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	defer s.stop()
	env := []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + s.adminKey()}

	code, out, errOut := rotor(t, env, "keys", "create", "--name", "worker-1")
	if code != 0 || !strings.Contains(out, "rtr_") {
		t.Fatalf("keys create: %d %s %s", code, out, errOut)
	}
	var workerKey, workerID string
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "rtr_") {
			workerKey = f
		}
		if strings.HasPrefix(f, "key_") && workerID == "" {
			workerID = f
		}
	}
	code, out, _ = rotor(t, env, "keys", "list")
	if code != 0 || !strings.Contains(out, "worker-1") || !strings.Contains(out, "ROLE") {
		t.Fatalf("keys list: %d %s", code, out)
	}
	code, out, _ = rotor(t, env, "keys", "list", "-o", "json")
	if code != 0 || !strings.Contains(out, `"keys"`) {
		t.Fatalf("keys list json: %d %s", code, out)
	}
	// A member key cannot manage keys: one line, the API's code, exit 1.
	code, _, errOut = rotor(t, []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + workerKey}, "keys", "list")
	if code != 1 || !strings.Contains(errOut, "forbidden") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("member keys list: %d %q", code, errOut)
	}
	// Without --yes and without a terminal: one refusal line, nothing revoked.
	code, _, errOut = rotor(t, env, "keys", "revoke", workerID)
	if code != 1 || !strings.Contains(errOut, "pass --yes") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("revoke without --yes: %d %q", code, errOut)
	}
	code, out, _ = rotor(t, env, "keys", "revoke", workerID, "--yes")
	if code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %d %s", code, out)
	}
	code, _, errOut = rotor(t, []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + workerKey}, "keys", "list")
	if code != 1 || !strings.Contains(errOut, "unauthorized") {
		t.Fatalf("revoked key: %d %q", code, errOut)
	}
	code, out, _ = rotor(t, env, "vault", "rotate-key", "--yes")
	if code != 0 || !strings.Contains(out, "new key-encryption key kek_") {
		t.Fatalf("rotate-key: %d %s", code, out)
	}
	code, out, _ = rotor(t, env, "workspaces", "create", "team-b")
	if code != 0 || !strings.Contains(out, "created workspace team-b") {
		t.Fatalf("workspaces create: %d %s", code, out)
	}
	code, _, errOut = rotor(t, []string{"ROTOR_API_URL=http://127.0.0.1:1", "ROTOR_API_KEY=x"}, "keys", "list")
	if code != 1 || !strings.Contains(errOut, "cannot reach the Rotor API") {
		t.Fatalf("unreachable: %d %q", code, errOut)
	}
	code, _, errOut = rotor(t, []string{"ROTOR_API_KEY="}, "keys", "list")
	if code != 1 || !strings.Contains(errOut, "ROTOR_API_KEY") {
		t.Fatalf("no key: %d %q", code, errOut)
	}
}

// TestVaultCompact: refused while the server runs; afterwards the data is
// intact.
func TestVaultCompact(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	key := s.adminKey()
	for _, n := range []string{"KEEP", "DROP"} {
		if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"`+n+`","value":"value-of-`+n+`"}`); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
	}
	call(t, "DELETE", s.apiURL+"/v1/secrets/DROP", key, "")
	dataDir := filepath.Join(dir, "data")
	if code, _, errOut := rotor(t, nil, "vault", "compact", "--data-dir", dataDir); code == 0 || !strings.Contains(errOut, "stop rotor first") {
		t.Fatalf("compact while running: %d %s", code, errOut)
	}
	s.stop()
	if code, out, errOut := rotor(t, nil, "vault", "compact", "--data-dir", dataDir); code != 0 || !strings.Contains(out, "compacted") {
		t.Fatalf("compact: %d %s %s", code, out, errOut)
	}
	s = startServer(t, dir)
	defer s.stop()
	if code, body := call(t, "GET", s.apiURL+"/v1/secrets", key, ""); code != 200 || !strings.Contains(body, "KEEP") || strings.Contains(body, "DROP") {
		t.Fatalf("after compact: %d %s", code, body)
	}
}

// TestMetricNames: every Rotor metric follows Prometheus conventions:
// rotor_ prefix, help text, counters end in _total, durations in _seconds.
func TestMetricNames(t *testing.T) {
	s := startServer(t, t.TempDir())
	defer s.stop()
	key := s.adminKey()
	call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"A","value":"value-a-123"}`)
	code, body := call(t, "GET", s.opsURL+"/metrics", "", "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for name, mf := range fams {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		seen++
		if !strings.HasPrefix(name, "rotor_") {
			t.Errorf("%s: no rotor_ prefix", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help text", name)
		}
		switch mf.GetType().String() {
		case "COUNTER":
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case "HISTOGRAM":
			if (strings.Contains(name, "duration") || strings.Contains(name, "latency")) && !strings.HasSuffix(name, "_seconds") {
				t.Errorf("histogram %s is not in seconds", name)
			}
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "value-a-123") {
					t.Errorf("%s: a label holds a secret value", name)
				}
			}
		}
	}
	for _, want := range []string{"rotor_api_requests_total", "rotor_jobs", "rotor_storage_plugin_up", "rotor_dispatch_inflight", "rotor_audit_flush_duration_seconds"} {
		if _, ok := fams[want]; !ok {
			t.Errorf("metric %s missing", want)
		}
	}
	if seen < 10 {
		t.Fatalf("only %d rotor metrics", seen)
	}
}

// TestDashboardMounted: rotor serve serves the dashboard beside the API.
func TestDashboardMounted(t *testing.T) {
	s := startServer(t, t.TempDir())
	defer s.stop()
	res, err := http.Get(s.apiURL + "/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "Sign in") {
		t.Fatalf("dashboard: %d %s", res.StatusCode, body)
	}
	// The API still answers JSON beside it.
	if code, body := call(t, "GET", s.apiURL+"/v1/nope", "", ""); code != 404 || !strings.Contains(body, `"code":"not_found"`) {
		t.Fatalf("api: %d %s", code, body)
	}
}
