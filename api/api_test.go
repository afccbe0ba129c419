package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/api"
	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

type env struct {
	t      *testing.T
	srv    *httptest.Server
	vault  *vault.Vault
	store  *bolt.Store
	dbPath string
	key    string // operator key of the default workspace
	logs   *leakcheck.Buffer
	reg    *prometheus.Registry
	// bodies collects every response body, for leak scans.
	bodies *leakcheck.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ve := vaulttest.New(t)
	queues := dispatch.NewService(ve.Store, ve.Vault, nil, nil)
	srv := httptest.NewServer(api.New(api.Options{Vault: ve.Vault, Queues: queues, Logger: ve.Logger, Registerer: ve.Registry}))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, vault: ve.Vault, store: ve.Store, dbPath: ve.DBPath, key: ve.Key, logs: ve.Logs, reg: ve.Registry, bodies: &leakcheck.Buffer{}}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %q", r.body)
	}
	return m
}

func (r resp) errCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.body)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Fatalf("error without message: %s", r.body)
	}
	code, _ := e["code"].(string)
	return code
}

// do sends a request with the given key ("" for none) and raw body.
func (e *env) do(method, path, key, body string, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.bodies.Write(b)
	e.bodies.Write([]byte("\n"))
	for k, vs := range res.Header {
		e.bodies.Write([]byte(k + ": " + strings.Join(vs, ",") + "\n"))
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) mustStatus(r resp, want int) resp {
	e.t.Helper()
	if r.status != want {
		e.t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	return r
}

// newKey creates a key with the given role in the operator's workspace.
func (e *env) newKey(role string) (id, key string) {
	e.t.Helper()
	m := e.mustStatus(e.do("POST", "/v1/keys", e.key, `{"name":"k","role":"`+role+`"}`), 201).json(e.t)
	return m["id"].(string), m["key"].(string)
}

// TestRootSendsBrowsersToDashboard: GET / redirects a browser to the
// dashboard; a script gets the JSON 404 pointing at /v1/ and the dashboard.
func TestRootSendsBrowsersToDashboard(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("GET", e.srv.URL+"/", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/dashboard/" {
		t.Fatalf("browser: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	r := e.do("GET", "/", "", "")
	if r.status != 404 || r.errCode(t) != "not_found" || !strings.Contains(string(r.body), "/dashboard/") {
		t.Fatalf("script: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/nope", "", "", "Accept", "text/html"); r.status != 404 {
		t.Fatalf("other path: %d", r.status)
	}
}
