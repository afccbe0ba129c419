package integration

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/storage/postgres/pgtest"
)

func pgSchema(t *testing.T) (dsn, schema string) { return pgtest.Schema(t) }

// TestManyNodes: two rotor processes on one PostgreSQL database. A rotation
// through node A is used by node B's next request; jobs are split across
// both dispatchers without double delivery; killing a node mid-load gets
// its jobs delivered by the other.
func TestManyNodes(t *testing.T) {
	dsn, schema := pgSchema(t)
	master := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	const key = "multi-node-bootstrap-key-0123456789"
	env := []string{"ROTOR_STORAGE=postgres", "ROTOR_POSTGRES_DSN=" + dsn, "ROTOR_MASTER_KEY=" + master,
		"ROTOR_BOOTSTRAP_API_KEY=" + key, "ROTOR_DISPATCH_LEASE=2s"}
	a := startServer(t, t.TempDir(), env...)
	b := startServer(t, t.TempDir(), env...)
	defer b.stop()

	var mu sync.Mutex
	got := map[string]int{}
	lastKey := ""
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		if id := r.Header.Get("webhook-id"); id != "" {
			got[id]++
		}
		lastKey = r.Header.Get("X-Key")
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}))
	defer down.Close()

	// Rotation propagation: B's proxy has the value cached; A rotates.
	if code, body := call(t, "POST", a.apiURL+"/v1/secrets", key, `{"name":"TOKEN","value":"value-one-0123456789"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	pu, _ := url.Parse(b.proxyURL)
	pu.User = url.UserPassword("w", key)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	viaB := func() string {
		req, _ := http.NewRequest("GET", down.URL+"/x", nil)
		req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		mu.Lock()
		defer mu.Unlock()
		return lastKey
	}
	if v := viaB(); v != "value-one-0123456789" {
		t.Fatalf("B resolved %q", v)
	}
	start := time.Now()
	if code, body := call(t, "PATCH", a.apiURL+"/v1/secrets/TOKEN", key, `{"value":"value-two-0123456789"}`); code != 200 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	rotated := time.Now()
	for viaB() != "value-two-0123456789" {
		if time.Since(rotated) > 5*time.Second {
			t.Fatal("node B did not see the rotation within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	prop := time.Since(rotated)
	t.Logf("rotation via node A used by node B after %v (PATCH took %v)", prop.Round(time.Microsecond), rotated.Sub(start).Round(time.Microsecond))
	if prop > time.Second {
		t.Fatalf("rotation propagation %v, target under 1s", prop)
	}

	// Split delivery, then node A killed mid-load.
	if code, body := call(t, "POST", a.apiURL+"/v1/queues", key, `{"name":"q","callback_url":"`+down.URL+`/hook","concurrency":8}`); code != 201 {
		t.Fatalf("queue: %d %s", code, body)
	}
	var ids []string
	for i := range 400 {
		node := a
		if i%2 == 1 {
			node = b
		}
		code, body := call(t, "POST", node.apiURL+"/v1/queues/q/jobs", key, `{"payload":{"i":`+strconv.Itoa(i)+`}}`)
		if code != 201 {
			t.Fatalf("enqueue: %d %s", code, body)
		}
		var j struct{ ID string }
		json.Unmarshal([]byte(body), &j)
		ids = append(ids, j.ID)
	}
	// Let both work for a moment, then kill A.
	time.Sleep(300 * time.Millisecond)
	a.cmd.Process.Kill()
	<-a.done
	a.done <- nil
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for _, id := range ids {
			if got[id] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs not delivered after node A was killed", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	attemptsA := strings.Count(a.out.String(), `"msg":"dispatch attempt"`)
	attemptsB := strings.Count(b.out.String(), `"msg":"dispatch attempt"`)
	mu.Lock()
	dups := 0
	for _, id := range ids {
		dups += got[id] - 1
	}
	mu.Unlock()
	t.Logf("400 jobs: node A logged %d attempts before it was killed, node B %d; %d delivered twice (A's leases at the kill)", attemptsA, attemptsB, dups)
	if attemptsA == 0 || attemptsB == 0 {
		t.Fatal("the jobs were not split across both nodes")
	}
	if dups > 8 {
		t.Fatalf("%d duplicate deliveries: more than node A could have held in flight", dups)
	}

	// Both nodes appended to one audit chain, node A was killed mid-load:
	// the chain holds and the seal covers it.
	if res := waitSealed(t, b.apiURL, key); res.Rows < 3 {
		t.Fatalf("audit verify on the shared trail: %+v", res)
	}

	// The guide's audit query, as written, through psql; and no plaintext
	// in a pg_dump of the schema.
	if _, err := exec.LookPath("psql"); err == nil {
		q := "SET search_path TO " + schema + "; SELECT event_type, occurred_at, actor_id FROM audit_event WHERE resource_type = 'secret' ORDER BY occurred_at DESC LIMIT 10;"
		out, err := exec.Command("psql", strings.Split(dsn, "&search_path")[0], "-At", "-c", q).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "secret.created") || !strings.Contains(string(out), "secret.rotated") {
			t.Fatalf("guide audit query: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("pg_dump"); err == nil {
		out, err := exec.Command("pg_dump", "--schema="+schema, strings.Split(dsn, "&search_path")[0]).Output()
		if err != nil {
			t.Fatalf("pg_dump: %v", err)
		}
		for _, v := range []string{"value-one-0123456789", "value-two-0123456789"} {
			leakcheck.Scan(t, v, map[string][]byte{"pg_dump": out, "node A output": []byte(a.out.String()), "node B output": []byte(b.out.String())})
		}
		if !strings.Contains(string(out), "audit_event") {
			t.Fatal("pg_dump holds no audit_event table: the scan proves nothing")
		}
	}
}

// TestDispatchOnlyNode: `rotor dispatch` on the shared database delivers
// through another node's proxy, authenticated by the shared dispatch token.
func TestDispatchOnlyNode(t *testing.T) {
	dsn, _ := pgSchema(t)
	master := base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	const key = "dispatch-only-bootstrap-key-0123456789"
	const token = "0123456789abcdef0123456789abcdef0123456789abcdef"
	common := []string{"ROTOR_STORAGE=postgres", "ROTOR_POSTGRES_DSN=" + dsn, "ROTOR_MASTER_KEY=" + master, "ROTOR_DISPATCH_TOKEN=" + token}
	p := startServer(t, t.TempDir(), append(common, "ROTOR_BOOTSTRAP_API_KEY="+key, "ROTOR_COMPONENTS=api,proxy")...)
	defer p.stop()
	d := tryStartCmd(t, t.TempDir(), []string{"dispatch"}, []string{"ops listening"}, append(common, "ROTOR_DISPATCH_PROXY_URL="+p.proxyURL)...)
	if d.apiURL == "" {
		t.Fatalf("rotor dispatch did not start:\n%s", d.out.String())
	}
	defer d.stop()
	got := make(chan string, 1)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query().Get("token")
	}))
	defer down.Close()
	call(t, "POST", p.apiURL+"/v1/secrets", key, `{"name":"TOKEN","value":"dispatch-only-value-123"}`)
	if code, body := call(t, "POST", p.apiURL+"/v1/queues", key, `{"name":"q","callback_url":"`+down.URL+`/h?token=${{ secrets.TOKEN }}"}`); code != 201 {
		t.Fatalf("queue: %d %s", code, body)
	}
	if code, body := call(t, "POST", p.apiURL+"/v1/queues/q/jobs", key, `{"payload":{}}`); code != 201 {
		t.Fatalf("enqueue: %d %s", code, body)
	}
	select {
	case v := <-got:
		if v != "dispatch-only-value-123" {
			t.Fatalf("downstream got %q", v)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("not delivered:\n%s", d.out.String())
	}
	for start := time.Now(); !strings.Contains(d.out.String(), `"msg":"dispatch attempt"`); {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the dispatch-only node logged no attempt")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(p.out.String(), `"msg":"dispatch attempt"`) {
		t.Fatal("the api,proxy node dispatched")
	}
}
