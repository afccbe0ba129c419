package integration

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rotor.sh/rotor/internal/leakcheck"
)

func banner(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q in the startup output:\n%s", prefix, out)
	return ""
}

// TestGuideEndToEnd follows the product guide with the real binary: store a
// secret, point the queue's callback URL and headers at it with PATCH,
// enqueue a job, and the downstream receives the resolved token (URL and
// header), the callback secret as Bearer, and a Standard Webhooks signature
// that an independent check accepts. The data dir holds only templates.
func TestGuideEndToEnd(t *testing.T) {
	const value = "your-token-here-e2e-4f1c"
	type hit struct {
		query  string
		header http.Header
		body   []byte
	}
	hits := make(chan hit, 4)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hits <- hit{r.URL.RawQuery, r.Header.Clone(), b}
		io.WriteString(w, "ok")
	}))
	defer down.Close()
	dir := t.TempDir()
	s := startServer(t, dir)
	key := s.adminKey()
	callbackSecret := banner(t, s.out.String(), "ROTOR_CALLBACK_SECRET=")
	signingSecret := banner(t, s.out.String(), "webhook signing secret:")

	steps := []struct{ method, path, body string }{
		{"POST", "/v1/secrets", `{"name":"NOTIFY_TOKEN","value":"` + value + `"}`},
		{"PATCH", "/v1/queues/notifications", `{"callback_url":"` + down.URL + `/notify?token=${{ secrets.NOTIFY_TOKEN }}"}`},
		{"PATCH", "/v1/queues/notifications", `{"callback_headers":{"X-API-Key":"${{ secrets.NOTIFY_TOKEN }}"}}`},
		{"POST", "/v1/queues/notifications/jobs", `{"payload":{"event":"signup","user":"u_1"}}`},
	}
	var jobID string
	for _, st := range steps {
		code, body := call(t, st.method, s.apiURL+st.path, key, st.body)
		if code/100 != 2 {
			t.Fatalf("%s %s: %d %s", st.method, st.path, code, body)
		}
		if strings.HasSuffix(st.path, "/jobs") {
			var j struct{ ID string }
			json.Unmarshal([]byte(body), &j)
			jobID = j.ID
		}
	}
	var h hit
	select {
	case h = <-hits:
	case <-time.After(20 * time.Second):
		t.Fatalf("no delivery:\n%s", s.out.String())
	}
	if h.query != "token="+value || h.header.Get("X-API-Key") != value {
		t.Fatalf("downstream saw query %q header %q", h.query, h.header.Get("X-API-Key"))
	}
	if h.header.Get("Authorization") != "Bearer "+callbackSecret {
		t.Fatalf("Authorization = %q", h.header.Get("Authorization"))
	}
	keyBytes, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(signingSecret, "whsec_"))
	mac := hmac.New(sha256.New, keyBytes)
	mac.Write([]byte(h.header.Get("webhook-id") + "." + h.header.Get("webhook-timestamp") + "." + string(h.body)))
	if h.header.Get("webhook-signature") != "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)) || h.header.Get("webhook-id") != jobID {
		t.Fatalf("signature check failed: %v", h.header)
	}
	// The job shows the delivery.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := call(t, "GET", s.apiURL+"/v1/jobs/"+jobID, key, "")
		if strings.Contains(body, `"status":"delivered"`) && strings.Contains(body, `"status_code":200`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job not delivered: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	db, _ := os.ReadFile(filepath.Join(dir, "data", "rotor.db"))
	leakcheck.Scan(t, value, map[string][]byte{"bbolt file": db, "server output": []byte(s.out.String())})
	if !strings.Contains(string(db), "secrets.NOTIFY_TOKEN") {
		t.Fatal("the stored queue does not hold the template")
	}
}

// TestCrashLosesNoJob: kill -9 while jobs are being enqueued and delivered;
// after a restart every job that got a 201 is delivered (at least once).
func TestCrashLosesNoJob(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond) // slow: jobs are queued and in flight at the crash
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		mu.Unlock()
	}))
	defer down.Close()
	dir := t.TempDir()
	env := []string{"ROTOR_DISPATCH_LEASE=2s"}
	s := startServer(t, dir, env...)
	key := s.adminKey()
	if code, body := call(t, "POST", s.apiURL+"/v1/queues", key, `{"name":"q","callback_url":"`+down.URL+`/hook"}`); code != 201 {
		t.Fatalf("queue: %d %s", code, body)
	}
	// Four clients enqueue until the server dies under them.
	var amu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 10000; i++ {
				req, _ := http.NewRequest("POST", s.apiURL+"/v1/queues/q/jobs", strings.NewReader(`{"payload":{"w":`+strconv.Itoa(w)+`,"i":`+strconv.Itoa(i)+`}}`))
				req.Header.Set("Authorization", "Bearer "+key)
				res, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode == 201 {
					var j struct{ ID string }
					json.Unmarshal(body, &j)
					amu.Lock()
					accepted = append(accepted, j.ID)
					amu.Unlock()
				}
			}
		})
	}
	// A fifth client creates and rotates secrets: every acknowledged write
	// must survive the crash.
	ackedVersion := map[string]int{}
	wg.Go(func() {
		for i := 0; i < 10000; i++ {
			name := "CRASH_" + strconv.Itoa(i)
			code, _ := callNoFail(client, "POST", s.apiURL+"/v1/secrets", key, `{"name":"`+name+`","value":"crash-value-one"}`)
			if code == 0 {
				return
			}
			if code == 201 {
				amu.Lock()
				ackedVersion[name] = 1
				amu.Unlock()
			}
			if code, _ := callNoFail(client, "PATCH", s.apiURL+"/v1/secrets/"+name, key, `{"value":"crash-value-two"}`); code == 200 {
				amu.Lock()
				ackedVersion[name] = 2
				amu.Unlock()
			} else if code == 0 {
				return
			}
		}
	})
	for {
		amu.Lock()
		n, m := len(accepted), len(ackedVersion)
		amu.Unlock()
		if n >= 200 && m >= 20 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	plugin := pluginPid(t, s.cmd.Process.Pid)
	s.cmd.Process.Kill() // SIGKILL mid-load: enqueues and deliveries in flight
	<-s.done
	s.done <- nil
	wg.Wait()
	// The storage plugin dies with its host.
	for start := time.Now(); ; {
		if _, err := os.Stat("/proc/" + strconv.Itoa(plugin)); err != nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the storage plugin outlived its killed host")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s2 := startServer(t, dir, env...)
	defer s2.stop()
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for _, id := range accepted {
			if seen[id] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted jobs never delivered after the crash", missing, len(accepted))
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	t.Logf("%d jobs accepted before the crash, all delivered; %d deliveries in all (at least once)", len(accepted), sumValues(seen))
	mu.Unlock()
	for name, v := range ackedVersion {
		code, body := call(t, "GET", s2.apiURL+"/v1/secrets/"+name, key, "")
		var m struct{ Version int }
		json.Unmarshal([]byte(body), &m)
		if code != 200 || m.Version < v {
			t.Fatalf("acknowledged write of %s (version %d) lost in the crash: %d %s", name, v, code, body)
		}
	}
	t.Logf("%d acknowledged secret writes, all present after the crash", len(ackedVersion))
}

// callNoFail is call for goroutines racing a crash: 0 when the server is gone.
func callNoFail(c *http.Client, method, url, key, body string) (int, string) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return 0, ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// pluginPid finds the storage plugin child of a rotor process.
func pluginPid(t *testing.T, parent int) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(parent) {
			cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if strings.Contains(string(cmdline), "plugin") {
				return pid
			}
		}
	}
	t.Fatal("no storage plugin process found")
	return 0
}

// TestPluginKilledUnderLoad: kill -9 the storage plugin while jobs are
// enqueued and delivered. Enqueues fail with 503 (never a lost 201) while
// it restarts, and every accepted job is delivered.
func TestPluginKilledUnderLoad(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen[r.Header.Get("webhook-id")] = true
		mu.Unlock()
	}))
	defer down.Close()
	s := startServer(t, t.TempDir(), "ROTOR_DISPATCH_LEASE=2s")
	defer s.stop()
	key := s.adminKey()
	if code, body := call(t, "POST", s.apiURL+"/v1/queues", key, `{"name":"q","callback_url":"`+down.URL+`/hook"}`); code != 201 {
		t.Fatalf("queue: %d %s", code, body)
	}
	var accepted []string
	statuses := map[int]int{}
	killed := false
	loopEnd := time.Now().Add(30 * time.Second)
	for i := 0; len(accepted) < 200 && time.Now().Before(loopEnd); i++ {
		if i == 100 {
			if err := syscall.Kill(pluginPid(t, s.cmd.Process.Pid), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		code, body := call(t, "POST", s.apiURL+"/v1/queues/q/jobs", key, `{"payload":{"i":`+strconv.Itoa(i)+`}}`)
		statuses[code]++
		if code == 201 {
			var j struct{ ID string }
			json.Unmarshal([]byte(body), &j)
			accepted = append(accepted, j.ID)
		} else if code != 503 {
			t.Fatalf("enqueue answered %d: %s", code, body)
		}
	}
	if !killed || statuses[201] < 200 || statuses[503] == 0 {
		t.Fatalf("statuses %v: want enqueues refused with 503 while the plugin was down, then accepted again", statuses)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for _, id := range accepted {
			if !seen[id] {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d accepted jobs not delivered after the plugin was killed", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, metrics := call(t, "GET", s.opsURL+"/metrics", "", "")
	if code != 200 || !strings.Contains(metrics, "rotor_storage_plugin_restarts_total 1") {
		t.Fatalf("restart not counted in metrics")
	}
	t.Logf("enqueue answers while the plugin was killed and restarted: %v; all %d accepted jobs delivered", statuses, len(accepted))
}
