package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

// cl0Upstream is an upstream with a "CL.0" desync, as static file routes,
// health checks and early answers of many frameworks have it: /static
// answers without reading the request's body, which it then takes for
// the connection's next request; POST /store keeps its body. stored
// returns what was kept.
func cl0Upstream(t *testing.T) (addr string, stored func() []string) {
	var mu sync.Mutex
	var kept []string
	addr = hostileUpstream(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for range 10 {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body := "ok"
			if req.URL.Path == "/store" {
				b, _ := io.ReadAll(req.Body)
				mu.Lock()
				kept = append(kept, string(b))
				mu.Unlock()
				body = "stored"
			}
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	})
	return addr, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), kept...)
	}
}

// TestAttackPooledConnectionAcrossWorkspaces: upstream connections were
// pooled by destination alone, so a request of one workspace went out on
// a connection another workspace's request had used. Against an upstream
// with a CL.0 desync (cl0Upstream), a worker of workspace A sends, as the
// body /static does not read, the head of a request of its own (POST
// /store with a Content-Length); the upstream waits for that request's
// body, and the next request on the pooled connection, workspace B's with
// B's secret resolved into its Authorization field, becomes that body:
// stored where A reads it back. Each workspace now has its own pooled
// connections (both engines), so one tenant's bytes never precede
// another's on a connection.
func TestAttackPooledConnectionAcrossWorkspaces(t *testing.T) {
	e := newEnv(t)
	attacker, err := e.vault.CreateWorkspace(context.Background(), e.op, "attacker")
	if err != nil {
		t.Fatal(err)
	}
	addrs := engineProxies(t, e)
	for _, engine := range []string{proxy.EngineStd, proxy.EngineLane} {
		t.Run(engine, func(t *testing.T) {
			up, stored := cl0Upstream(t)
			name := "VICTIM_" + strings.ToUpper(engine)
			value := "vic_" + engine + "_7c1e95d0a3b24f68"
			e.secret(name, value, up)
			// What the victim's request looks like upstream (the lane and
			// the transport write these fields first), so the smuggled
			// body length swallows it up to its secret.
			victimUp := "GET /api HTTP/1.1\r\nHost: " + up + "\r\nUser-Agent: v\r\nAuthorization: Bearer " + value + "\r\n"
			smuggled := fmt.Sprintf("POST /store HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", up, len(victimUp))
			// Workspace A poisons a pooled connection.
			exchange(t, addrs[engine], fmt.Sprintf("POST http://%s/static HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
				up, up, attacker.Key, len(smuggled), smuggled))
			// Workspace B sends its secret to the same host.
			got := exchange(t, addrs[engine], fmt.Sprintf("GET http://%s/api HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\nUser-Agent: v\r\nAuthorization: Bearer ${{ secrets.%s }}\r\n\r\n",
				up, up, e.key, name))
			// What the upstream kept (A reads it back there).
			if kept := strings.Join(stored(), "|"); strings.Contains(kept, value) || got != "ok" {
				t.Fatalf("workspace B's request became workspace A's smuggled body (B got %q); the upstream kept %q", got, kept)
			}
		})
	}
}

// TestAttackPooledConnectionWorkerToDispatcher: within one workspace,
// Rotor's own dispatch requests carry what no member key may have (the
// callback secret, the signature) and get their own pooled connections:
// a worker's smuggled request head never prefixes a dispatch request.
func TestAttackPooledConnectionWorkerToDispatcher(t *testing.T) {
	e := newInprocEnv(t)
	up, stored := cl0Upstream(t)
	e.ve.Secret(t, "HOOK_TOKEN", "hook_5e0c2d9b7a3f4168", up)
	smuggled := fmt.Sprintf("POST /store HTTP/1.1\r\nHost: %s\r\nContent-Length: 40\r\n\r\n", up)
	// A worker of the workspace poisons a pooled connection.
	if r := do(t, e.viaNet, http.MethodPost, "http://"+up+"/static", "text/plain", smuggled, []string{"Proxy-Authorization", "Bearer " + e.ve.Key}); r.status != http.StatusOK {
		t.Fatalf("worker: %d %s", r.status, r.body)
	}
	// The dispatcher delivers to the same host.
	r := do(t, e.inproc, http.MethodGet, "http://"+up+"/api", "", "", append(e.dispatchHeaders(), "Authorization", "Bearer ${{ secrets.HOOK_TOKEN }}"))
	if kept := stored(); len(kept) > 0 || r.body != "ok" {
		t.Fatalf("the dispatch request became the worker's smuggled body (dispatcher got %d %q); the upstream kept %q", r.status, r.body, kept)
	}
}

// exchange sends one raw request on a new connection to the proxy and
// returns the response body.
func exchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the proxy's answer: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}
