package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"rotor.sh/rotor/storage/postgres/pgtest"
)

// TestPostgresRestartUnderLoad restarts the local PostgreSQL cluster while
// jobs are enqueued and delivered and secrets are written. Every job that
// got a 201 is delivered, every secret write that got a 2xx is there, and
// Rotor serves again without a restart of its own. It restarts the cluster
// every other test uses, so it runs only when ROTOR_TEST_PG_RESTART=1
// (make integration, which runs this package alone).
func TestPostgresRestartUnderLoad(t *testing.T) {
	if os.Getenv("ROTOR_TEST_PG_RESTART") != "1" {
		t.Skip("restarts the shared PostgreSQL cluster: run by make integration (ROTOR_TEST_PG_RESTART=1)")
	}
	versions, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(versions) != 1 {
		t.Fatalf("need exactly one local cluster under /etc/postgresql: %v", err)
	}
	restart := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", versions[0].Name(), "main", "restart")
	// Whatever happens, leave the cluster accepting connections for the
	// tests that follow.
	t.Cleanup(func() { waitPostgres(t) })

	dsn, _ := pgSchema(t)
	var mu sync.Mutex
	delivered := map[string]bool{}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		delivered[r.Header.Get("webhook-id")] = true
		mu.Unlock()
	}))
	defer down.Close()
	const key = "pg-restart-bootstrap-key-0123456789"
	master := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	s := startServer(t, t.TempDir(), "ROTOR_STORAGE=postgres", "ROTOR_POSTGRES_DSN="+dsn, "ROTOR_MASTER_KEY="+master,
		"ROTOR_BOOTSTRAP_API_KEY="+key, "ROTOR_LOG_LEVEL=info")
	defer s.stop()
	if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"PGR_TOKEN","value":"pg-restart-value-1"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, body := call(t, "PATCH", s.apiURL+"/v1/queues/pgr", key, `{"callback_url":"`+down.URL+`/cb?t=${{ secrets.PGR_TOKEN }}"}`); code/100 != 2 {
		t.Fatalf("queue: %d %s", code, body)
	}

	var accepted sync.Map
	var acceptedN, refused, secretsOK atomic.Int64
	statuses := sync.Map{} // status code -> *atomic.Int64
	count := func(code int) {
		v, _ := statuses.LoadOrStore(code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, body string) (int, string) {
		return callNoFail(client, method, s.apiURL+path, key, body)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var secretNames sync.Map
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				code, b := do("POST", "/v1/queues/pgr/jobs", `{"payload":{"n":1}}`)
				count(code)
				if code == 201 {
					var j struct{ ID string }
					json.Unmarshal([]byte(b), &j)
					accepted.Store(j.ID, true)
					acceptedN.Add(1)
				} else {
					refused.Add(1)
				}
				if i%10 == 0 {
					name := fmt.Sprintf("PGR_W%d_%d", w, i)
					if code, _ := do("POST", "/v1/secrets", `{"name":"`+name+`","value":"pg-restart-secret"}`); code == 201 {
						secretNames.Store(name, true)
						secretsOK.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	before := acceptedN.Load()
	restartStart := time.Now()
	if out, err := restart.CombinedOutput(); err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("pg_ctlcluster restart: %v\n%s", err, out)
	}
	restartTook := time.Since(restartStart)
	waitPostgres(t)
	afterRestart := acceptedN.Load()
	time.Sleep(4 * time.Second)
	close(stop)
	wg.Wait()
	if acceptedN.Load()-afterRestart < 10 {
		t.Fatalf("Rotor did not accept jobs after PostgreSQL came back (%d accepted since):\n%s", acceptedN.Load()-afterRestart, tail(s.out.String(), 4000))
	}

	lost := waitDelivered(&accepted, &mu, delivered)
	missingSecrets := 0
	secretNames.Range(func(k, _ any) bool {
		if code, _ := do("GET", "/v1/secrets/"+k.(string), ""); code != 200 {
			missingSecrets++
		}
		return true
	})
	codes := map[int]int64{}
	statuses.Range(func(k, v any) bool { codes[k.(int)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("PostgreSQL restart took %v; jobs accepted %d (%d before the restart), refused %d, status codes %v; jobs lost %d; secret writes acknowledged %d, missing %d",
		restartTook.Round(time.Millisecond), acceptedN.Load(), before, refused.Load(), codes, lost, secretsOK.Load(), missingSecrets)
	if lost > 0 || missingSecrets > 0 {
		// Say which jobs and what became of them: their record and every
		// server line that names them.
		mu.Lock()
		var missing []string
		accepted.Range(func(k, _ any) bool {
			if !delivered[k.(string)] {
				missing = append(missing, k.(string))
			}
			return true
		})
		mu.Unlock()
		for _, id := range missing {
			_, rec := do("GET", "/v1/jobs/"+id, "")
			t.Logf("undelivered job %s: %s", id, rec)
			for _, line := range strings.Split(s.out.String(), "\n") {
				if strings.Contains(line, id) {
					t.Logf("  %s", line)
				}
			}
		}
		t.Fatalf("%d accepted jobs not delivered, %d acknowledged secrets missing", lost, missingSecrets)
	}
	for code := range codes {
		if code != 201 && code != 503 {
			t.Errorf("status %d during the outage: want 201 or 503 (with Retry-After)", code)
			for _, line := range strings.Split(s.out.String(), "\n") {
				if strings.Contains(line, fmt.Sprintf(`"status":%d`, code)) || strings.Contains(line, `"level":"ERROR"`) {
					t.Log(tail(line, 600))
				}
			}
		}
	}
	// Rotation still reaches the proxy path after the reconnect.
	if code, body := call(t, "PATCH", s.apiURL+"/v1/secrets/PGR_TOKEN", key, `{"value":"pg-restart-value-2"}`); code != 200 {
		t.Fatalf("rotate after restart: %d %s", code, body)
	}
}

// waitPostgres waits (bounded) until the cluster accepts connections.
func waitPostgres(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, pgtest.BaseDSN())
		if err == nil {
			c.Close(ctx)
			cancel()
			return
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL not back after 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
