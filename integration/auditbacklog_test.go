package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHungPluginFailsClosed: the storage plugin stops answering (SIGSTOP)
// under proxied traffic. Requests served from the cache keep their access
// rows in the backlog until it reaches --audit-backlog-max; then the proxy
// refuses (503, X-Rotor-Error: audit_unavailable) instead of hanging or
// sending values without rows, /readyz turns not ready, and once the plugin
// resumes every served request has its row and the node is ready again.
func TestHungPluginFailsClosed(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	s := startServer(t, t.TempDir(), "ROTOR_AUDIT_BACKLOG_MAX=20", "ROTOR_STORAGE_CALL_TIMEOUT=1s")
	defer s.stop()
	key := s.adminKey()
	if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"NOTIFY_TOKEN","value":"hung-plugin-token"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	pu, _ := url.Parse(s.proxyURL)
	pu.User = url.UserPassword("worker", key)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	send := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", up.URL+"/notify", nil)
		req.Header.Set("X-Api-Key", "${{ secrets.NOTIFY_TOKEN }}")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("proxied request: %v", err)
		}
		res.Body.Close()
		return res.StatusCode, res.Header.Get("X-Rotor-Error")
	}
	if code, _ := send(); code != 200 { // warms the cache
		t.Fatalf("first request: %d", code)
	}
	served := 1

	plugin := pluginPid(t, s.cmd.Process.Pid)
	if err := syscall.Kill(plugin, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(plugin, syscall.SIGCONT)
	waitStopped(t, plugin)

	refused := false
	var slowest time.Duration
	for range 200 {
		start := time.Now()
		code, rerr := send()
		slowest = max(slowest, time.Since(start))
		if code == 200 {
			served++
			continue
		}
		if code != 503 || rerr != "audit_unavailable" {
			t.Fatalf("with the plugin hung: %d %q, want 503 audit_unavailable", code, rerr)
		}
		refused = true
		break
	}
	if !refused {
		t.Fatal("200 requests served with the plugin hung and a backlog bound of 20")
	}
	t.Logf("served %d before the first refusal; slowest request %s", served, slowest)
	if code, body := call(t, "GET", s.opsURL+"/readyz", "", ""); code != 503 || !strings.Contains(body, "audit") {
		t.Fatalf("readyz with a full audit backlog: %d %s", code, body)
	}

	if err := syscall.Kill(plugin, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := call(t, "GET", s.opsURL+"/readyz", "", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready 30 s after the plugin resumed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		_, body := call(t, "GET", s.apiURL+"/v1/audit?event_type=secret.accessed&limit=100", key, "")
		n := strings.Count(body, `"event_type":"secret.accessed"`)
		if n == served {
			break
		}
		if n > served || time.Now().After(deadline) {
			t.Fatalf("%d requests served, %d access rows", served, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _ := send(); code != 200 {
		t.Fatalf("after the plugin resumed: %d", code)
	}
}

// waitStopped waits until a SIGSTOPped process is stopped (delivery is
// asynchronous).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	for range 2000 {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(st), "State:\tT") {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the process did not stop")
}
