package integration

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The attack suite of issue 10, keys/callbacks/dashboard/memory half: each
// test plays the attacker against the built binary, with hostile loopback
// upstreams. docs/security.md lists them in its attack table.

// hostile is a loopback upstream that records every request it gets.
type hostile struct {
	*httptest.Server
	got chan *http.Request
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	h := &hostile{got: make(chan *http.Request, 16)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(strings.NewReader(string(b)))
		r2.ContentLength = int64(len(b))
		h.got <- r2
		io.WriteString(w, "ok")
	}))
	t.Cleanup(h.Close)
	return h
}

func mustCall(t *testing.T, want int, method, url, key, body string) map[string]any {
	t.Helper()
	code, out := call(t, method, url, key, body)
	if code != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, url, code, want, out)
	}
	var m map[string]any
	json.Unmarshal([]byte(out), &m)
	return m
}

func waitJobAttempts(t *testing.T, apiURL, key, id string, n int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j := mustCall(t, 200, "GET", apiURL+"/v1/jobs/"+id, key, "")
		if a, _ := j["attempts"].([]any); len(a) >= n && j["status"] != "leased" {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %v", id, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAttackMemberCallbackExfiltration: a member key points a queue at its
// own host to receive the workspace callback secret and a valid signature.
func TestAttackMemberCallbackExfiltration(t *testing.T) {
	evil := newHostile(t)
	s := startServer(t, t.TempDir())
	admin := s.adminKey()
	member := mustCall(t, 201, "POST", s.apiURL+"/v1/keys", admin, `{"name":"intern","role":"member"}`)["key"].(string)

	code, body := call(t, "POST", s.apiURL+"/v1/queues", member, `{"name":"steal","callback_url":"`+evil.URL+`/steal"}`)
	if code != 403 || !strings.Contains(body, "callback_url") || !strings.Contains(body, "admin must approve") {
		t.Fatalf("member queue at its own host: %d %s", code, body)
	}
	if code, _ := call(t, "PATCH", s.apiURL+"/v1/workspace/callback-secret", member, `{"allowed_hosts":["127.0.0.1"]}`); code != 403 {
		t.Fatalf("member approving its own host: %d", code)
	}
	// An admin restricts the credentials to the real handler's host; even an
	// admin-made queue elsewhere then gets no credential: the attempt fails.
	mustCall(t, 200, "PATCH", s.apiURL+"/v1/workspace/callback-secret", admin, `{"allowed_hosts":["hooks.example.com"]}`)
	mustCall(t, 201, "POST", s.apiURL+"/v1/queues", admin, `{"name":"elsewhere","callback_url":"`+evil.URL+`/x","max_attempts":1}`)
	j := mustCall(t, 201, "POST", s.apiURL+"/v1/queues/elsewhere/jobs", member, `{"payload":{"forged":true}}`)
	j = waitJobAttempts(t, s.apiURL, admin, j["id"].(string), 1)
	if a := j["attempts"].([]any)[0].(map[string]any); a["error_code"] != "host_not_allowed" {
		t.Fatalf("attempt %v", a)
	}
	select {
	case r := <-evil.got:
		t.Fatalf("the hostile host got a request (Authorization set: %v, signature set: %v)", r.Header.Get("Authorization") != "", r.Header.Get("webhook-signature") != "")
	default:
	}
}

// TestAttackSigningGraceCLI: `rotor callback-secret rotate --grace` keeps
// handlers on the previous signing secret working; each signature verifies
// under exactly one of the two secrets.
func TestAttackSigningGraceCLI(t *testing.T) {
	down := newHostile(t)
	s := startServer(t, t.TempDir())
	admin := s.adminKey()
	oldSecret := banner(t, s.out.String(), "webhook signing secret:")
	env := []string{"ROTOR_API_URL=" + s.apiURL, "ROTOR_API_KEY=" + admin}
	code, out, errOut := rotor(t, env, "callback-secret", "rotate", "--grace", "1h", "--only", "signing", "-o", "json")
	if code != 0 {
		t.Fatalf("rotate: %d %s %s", code, out, errOut)
	}
	var res struct {
		CallbackSecret string `json:"callback_secret"`
		SigningSecret  string `json:"signing_secret"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.CallbackSecret != "" || !strings.HasPrefix(res.SigningSecret, "whsec_") {
		t.Fatalf("rotate output: %s", out)
	}
	mustCall(t, 201, "POST", s.apiURL+"/v1/queues", admin, `{"name":"q","callback_url":"`+down.URL+`/hook"}`)
	mustCall(t, 201, "POST", s.apiURL+"/v1/queues/q/jobs", admin, `{"payload":{"n":1}}`)
	var r *http.Request
	select {
	case r = <-down.got:
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery")
	}
	body, _ := io.ReadAll(r.Body)
	sigs := strings.Fields(r.Header.Get("webhook-signature"))
	if len(sigs) != 2 {
		t.Fatalf("webhook-signature %q, want two signatures", r.Header.Get("webhook-signature"))
	}
	sign := func(secret string) string {
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		m := hmac.New(sha256.New, key)
		m.Write([]byte(r.Header.Get("webhook-id") + "." + r.Header.Get("webhook-timestamp") + "." + string(body)))
		return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	if sigs[0] != sign(res.SigningSecret) || sigs[1] != sign(oldSecret) {
		t.Fatal("the signatures are not one under the new and one under the previous signing secret")
	}
	// Rotating the Bearer credential cuts handlers over at once: it asks.
	if code, _, errOut := rotor(t, env, "callback-secret", "rotate"); code == 0 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("rotate without --yes: %d %q", code, errOut)
	}
	code, out, _ = rotor(t, env, "callback-secret", "show")
	if code != 0 || !strings.Contains(out, "SIGNING_GRACE_UNTIL") || strings.Contains(out, "whsec_") {
		t.Fatalf("show: %d %s", code, out)
	}
}

// TestAttackAdminRevokesOperator: an admin key revokes the operator key,
// leaving nobody able to create workspaces or rotate the keyring.
func TestAttackAdminRevokesOperator(t *testing.T) {
	s := startServer(t, t.TempDir())
	operator := s.adminKey()
	admin := mustCall(t, 201, "POST", s.apiURL+"/v1/keys", operator, `{"name":"a","role":"admin"}`)["key"].(string)
	keys := mustCall(t, 200, "GET", s.apiURL+"/v1/keys", operator, "")["keys"].([]any)
	var opID string
	for _, k := range keys {
		if m := k.(map[string]any); m["role"] == "operator" {
			opID = m["id"].(string)
		}
	}
	if code, body := call(t, "DELETE", s.apiURL+"/v1/keys/"+opID, admin, ""); code != 403 {
		t.Fatalf("admin revoking the operator key: %d %s", code, body)
	}
	if code, body := call(t, "DELETE", s.apiURL+"/v1/keys/"+opID, operator, ""); code != 409 || !strings.Contains(body, `"conflict"`) {
		t.Fatalf("revoking the last operator key: %d %s", code, body)
	}
	mustCall(t, 201, "POST", s.apiURL+"/v1/workspaces", operator, `{"name":"still-works"}`)
}

// TestAttackDashboardSessions: login CSRF from another origin; a session
// outliving its key's revocation; the key inside the cookie.
func TestAttackDashboardSessions(t *testing.T) {
	s := startServer(t, t.TempDir())
	operator := s.adminKey()
	m := mustCall(t, 201, "POST", s.apiURL+"/v1/keys", operator, `{"name":"m","role":"member"}`)
	member, memberID := m["key"].(string), m["id"].(string)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	login := func(hdr ...string) *http.Response {
		req, _ := http.NewRequest("POST", s.apiURL+"/dashboard/login", strings.NewReader(url.Values{"key": {member}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := login("Origin", "https://evil.test", "Sec-Fetch-Site", "cross-site"); res.StatusCode != 403 || len(res.Cookies()) != 0 {
		t.Fatalf("cross-site login: %d %v", res.StatusCode, res.Cookies())
	}
	res := login()
	if res.StatusCode != 303 || len(res.Cookies()) != 1 {
		t.Fatalf("login: %d", res.StatusCode)
	}
	ck := res.Cookies()[0]
	if strings.Contains(ck.Value, member) || strings.Contains(ck.Value, strings.Split(member, "_")[2]) {
		t.Fatal("the cookie carries the API key")
	}
	page := func() int {
		req, _ := http.NewRequest("GET", s.apiURL+"/dashboard/audit", nil)
		req.AddCookie(ck)
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if page() != 200 {
		t.Fatal("session refused")
	}
	mustCall(t, 204, "DELETE", s.apiURL+"/v1/keys/"+memberID, operator, "")
	if code := page(); code != 303 {
		t.Fatalf("a revoked key's session: %d", code)
	}
}

// TestAttackSecretsInProcess: a master key or DSN on argv (readable by any
// local user in ps) is refused; core dumps are off; the storage plugin does
// not inherit the master key.
func TestAttackSecretsInProcess(t *testing.T) {
	mk := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "--master-key", mk, "--data-dir", dir},
		{"proxy", "--master-key=" + mk},
		{"migrate", "--postgres-dsn", "postgres://rotor:hunter2pw@127.0.0.1:5432/x"},
	} {
		code, out, errOut := rotor(t, nil, args...)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(errOut, "refused on the command line") || strings.Contains(out+errOut, mk) || strings.Contains(errOut, "hunter2pw") {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	kf := filepath.Join(dir, "mk")
	os.WriteFile(kf, []byte(mk+"\n"), 0o600)
	s := startServer(t, dir, "ROTOR_MASTER_KEY_FILE="+kf)
	limits, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max core file size") {
			if f := strings.Fields(line); len(f) < 6 || f[4] != "0" || f[5] != "0" {
				t.Fatalf("core dumps possible: %q", line)
			}
		}
	}
	s.stop()
	s = startServer(t, t.TempDir(), "ROTOR_MASTER_KEY="+mk)
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pluginPid(t, s.cmd.Process.Pid)) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(env), "ROTOR_MASTER_KEY=") {
		t.Fatal("the storage plugin inherited ROTOR_MASTER_KEY")
	}
	s.stop()
}
