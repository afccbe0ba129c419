package integration

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rotor.sh/rotor/internal/leakcheck"
)

// TestLeakScan plants a random canary secret, uses it in a URL, a header and
// a body through the proxy and through the dispatcher, on bbolt and on
// PostgreSQL, then looks for it (raw, base64, hex, URL-encoded) everywhere
// Rotor wrote: the data files or pg_dump, the server and storage plugin log
// at debug level, every API response, /metrics, the audit rows, job and
// attempt records, and a goroutine dump forced with SIGQUIT while a request
// holding the resolved value is in flight.
func TestLeakScan(t *testing.T) {
	for _, backend := range []string{"bbolt", "postgres"} {
		t.Run(backend, func(t *testing.T) { leakScan(t, backend) })
	}
}

func leakScan(t *testing.T, backend string) {
	b := make([]byte, 18)
	rand.Read(b)
	canary := "canary-" + hex.EncodeToString(b)

	var mu sync.Mutex
	seen := map[string]int{} // where the downstream saw the value
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		if r.URL.Query().Get("k") == canary {
			seen["url"]++
		}
		if r.Header.Get("X-K") == canary {
			seen["header"]++
		}
		if strings.Contains(string(body), canary) {
			seen["body"]++
		}
		if r.Header.Get("webhook-id") != "" {
			seen["dispatch"]++
		}
		mu.Unlock()
		if r.URL.Path == "/slow" {
			held <- struct{}{}
			select {
			case <-release:
			case <-time.After(30 * time.Second):
			}
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	defer down.Close()
	defer close(release)

	const key = "leak-scan-bootstrap-key-0123456789"
	env := []string{"ROTOR_BOOTSTRAP_API_KEY=" + key, "ROTOR_LOG_LEVEL=debug"}
	var dsn, schema string
	if backend == "postgres" {
		dsn, schema = pgSchema(t)
		env = append(env, "ROTOR_STORAGE=postgres", "ROTOR_POSTGRES_DSN="+dsn,
			"ROTOR_MASTER_KEY="+base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))
	}
	dir := t.TempDir()
	s := startServer(t, dir, env...)

	blobs := map[string][]byte{}
	api := func(method, path, body string, want int) string {
		t.Helper()
		code, resp := call(t, method, s.apiURL+path, key, body)
		if code != want {
			t.Fatalf("%s %s: %d %s", method, path, code, resp)
		}
		blobs["API "+method+" "+path] = []byte(resp)
		return resp
	}
	api("POST", "/v1/secrets", `{"name":"LEAK_CANARY","value":"`+canary+`"}`, 201)
	ref := "${{ secrets.LEAK_CANARY }}"

	// Through the proxy: URL, header and body.
	pu, _ := url.Parse(s.proxyURL)
	pu.User = url.UserPassword("w", key)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	req, _ := http.NewRequest("POST", down.URL+"/p?k="+url.QueryEscape(ref), strings.NewReader(`{"k":"`+ref+`"}`))
	req.Header.Set("X-K", ref)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resBody, _ := io.ReadAll(res.Body)
	res.Body.Close()
	blobs["proxy response"] = resBody
	if res.StatusCode != 200 {
		t.Fatalf("proxied request: %d %s", res.StatusCode, resBody)
	}

	// Through the dispatcher: URL, header and payload.
	api("PATCH", "/v1/queues/leak", `{"callback_url":"`+down.URL+`/cb?k=`+ref+`","callback_headers":{"X-K":"`+ref+`"}}`, 201)
	job := api("POST", "/v1/queues/leak/jobs", `{"payload":{"k":"`+ref+`"}}`, 201)
	var j struct{ ID string }
	json.Unmarshal([]byte(job), &j)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(api("GET", "/v1/jobs/"+j.ID, "", 200), `"status":"delivered"`) {
		if time.Now().After(deadline) {
			t.Fatal("job not delivered")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	if seen["url"] < 2 || seen["header"] < 2 || seen["body"] < 2 || seen["dispatch"] < 1 {
		t.Fatalf("the canary did not reach the downstream everywhere: %v", seen)
	}
	mu.Unlock()

	// Access rows are group-committed (at least every 100 ms).
	for !strings.Contains(api("GET", "/v1/audit?limit=1000", "", 200), "secret.accessed") {
		if time.Now().After(deadline) {
			t.Fatal("no access rows in the audit trail")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []string{"/v1/secrets", "/v1/secrets/LEAK_CANARY", "/v1/audit/verify",
		"/v1/queues", "/v1/queues/leak", "/v1/queues/leak/jobs", "/v1/jobs/" + j.ID, "/v1/workspace"} {
		api("GET", p, "", 200)
	}
	mres, err := http.Get(s.opsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	blobs["/metrics"], _ = io.ReadAll(mres.Body)
	mres.Body.Close()

	// A request holding the resolved value, then SIGQUIT: the Go runtime
	// dumps every goroutine's stack to stderr and exits.
	go func() {
		req, _ := http.NewRequest("GET", down.URL+"/slow", nil)
		req.Header.Set("X-K", ref)
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the slow request never reached the downstream")
	}
	if err := s.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("rotor did not exit on SIGQUIT")
	}
	out := s.out.String()
	if !strings.Contains(out, "goroutine ") || !strings.Contains(out, "SIGQUIT") {
		t.Fatalf("no goroutine dump in the output:\n%s", tail(out, 2000))
	}
	if !strings.Contains(out, `"plugin"`) && !strings.Contains(out, "storage plugin") {
		t.Fatalf("no storage plugin log lines in the output: the scan would not cover them")
	}
	blobs["server and plugin output (debug log, SIGQUIT dump)"] = []byte(out)

	if backend == "bbolt" {
		files := 0
		filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(p)
				blobs["file "+filepath.Base(p)] = b
				files++
			}
			return nil
		})
		if len(blobs["file rotor.db"]) == 0 || !strings.Contains(string(blobs["file rotor.db"]), "secrets.LEAK_CANARY") {
			t.Fatalf("rotor.db missing or without the queue template: the scan would prove nothing")
		}
	} else {
		dump, err := exec.Command("pg_dump", "--schema="+schema, strings.Split(dsn, "&search_path")[0]).Output()
		if err != nil {
			t.Fatalf("pg_dump: %v", err)
		}
		if !strings.Contains(string(dump), "secrets.LEAK_CANARY") || !strings.Contains(string(dump), "audit_event") {
			t.Fatal("pg_dump lacks the queue template or the audit table: the scan would prove nothing")
		}
		blobs["pg_dump"] = dump
	}
	leakcheck.Scan(t, canary, blobs)
	t.Logf("%s: scanned %d places for %d encodings of the canary", backend, len(blobs), len(leakcheck.Forms(canary)))
}
