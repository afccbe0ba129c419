package integration

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestExfiltration tries to get a secret sent where it must not go, against
// the built binary: outside allowed_hosts, through a redirect from an
// allowed host to another, to every kind of private destination (directly
// and through a DNS name) in gateway mode, and through another workspace's
// key. Every attempt is refused, nothing reaches a listener with the
// value, and the refusals are audit rows.
func TestExfiltration(t *testing.T) {
	const value = "exfil-canary-value-5b0c1d2e3f"
	var leaked atomic.Int64
	var hits atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(r.URL.String()+string(b)+strings.Join(r.Header.Values("X-K"), ""), value) {
			leaked.Add(1)
		}
	}))
	defer sink.Close()
	_, sinkPort, _ := net.SplitHostPort(sink.Listener.Addr().String())
	// The allowed host answers with a redirect to another host (the same
	// listener under the name localhost).
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:"+sinkPort+"/stolen", http.StatusFound)
	}))
	defer allowed.Close()
	ref := "${{ secrets.EXFIL }}"

	t.Run("sidecar", func(t *testing.T) {
		const key = "exfil-sidecar-bootstrap-key-0123456789"
		s := startServer(t, t.TempDir(), "ROTOR_BOOTSTRAP_API_KEY="+key)
		defer s.stop()
		if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"EXFIL","value":"`+value+`","allowed_hosts":["`+allowed.Listener.Addr().String()+`"]}`); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		pu, _ := url.Parse(s.proxyURL)
		pu.User = url.UserPassword("w", key)
		noFollow := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		follow := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
		get := func(c *http.Client, u string) (int, string) {
			req, _ := http.NewRequest("GET", u, nil)
			req.Header.Set("X-K", ref)
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			return res.StatusCode, res.Header.Get("X-Rotor-Error")
		}
		if code, errCode := get(noFollow, "http://localhost:"+sinkPort+"/direct"); code != 403 || errCode != "host_not_allowed" {
			t.Fatalf("outside allowed_hosts: %d %s", code, errCode)
		}
		// The proxy hands the redirect back instead of following it with
		// the resolved value; a client that follows sends the reference
		// again, to a host the secret is not allowed for.
		if code, _ := get(noFollow, allowed.URL+"/start"); code != http.StatusFound {
			t.Fatalf("redirect: proxy answered %d, want the 302 itself", code)
		}
		if code, errCode := get(follow, allowed.URL+"/start"); code != 403 || errCode != "host_not_allowed" {
			t.Fatalf("followed redirect: %d %s", code, errCode)
		}

		// Another workspace's key: no secret, no queue.
		_, wsBody := call(t, "POST", s.apiURL+"/v1/workspaces", key, `{"name":"intruder"}`)
		other := between(wsBody, `"key":"`, `"`)
		if code, body := call(t, "PATCH", s.apiURL+"/v1/queues/victim", key, `{"callback_url":"`+allowed.URL+`/cb?k=`+ref+`"}`); code/100 != 2 {
			t.Fatalf("queue: %d %s", code, body)
		}
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/v1/queues/victim", ""},
			{"POST", "/v1/queues/victim/jobs", `{"payload":{}}`},
			{"PATCH", "/v1/queues/victim", `{"callback_url":"http://localhost:` + sinkPort + `/x"}`},
			{"GET", "/v1/secrets/EXFIL", ""},
		} {
			if code, body := call(t, c.method, s.apiURL+c.path, other, c.body); code != 404 && !(c.method == "PATCH" && code == 201) {
				t.Fatalf("other workspace %s %s: %d %s", c.method, c.path, code, body)
			}
		}
		// (A PATCH creates the intruder's own queue "victim" in its own
		// workspace; enqueueing there resolves nothing of ours.)
		ou, _ := url.Parse(s.proxyURL)
		ou.User = url.UserPassword("w", other)
		otherClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(ou)}}
		if code, errCode := get(otherClient, "http://127.0.0.1:"+sinkPort+"/x"); code != 422 || errCode != "secret_not_found" {
			t.Fatalf("other workspace's reference: %d %s", code, errCode)
		}
		denied := auditCount(t, s.apiURL, key, "secret.access_denied")
		if denied < 2 {
			t.Fatalf("%d secret.access_denied rows, want one per refused attempt (2)", denied)
		}
	})

	t.Run("gateway", func(t *testing.T) {
		const key = "exfil-gateway-bootstrap-key-0123456789"
		s := startServer(t, t.TempDir(), "ROTOR_BOOTSTRAP_API_KEY="+key, "ROTOR_PROXY_MODE=gateway")
		defer s.stop()
		// Entries carry the sink's port where the targets use it: an entry
		// without a port means the default ports only.
		sp := ":" + sinkPort
		hostsJSON := `["127.0.0.1` + sp + `","localhost` + sp + `","10.0.0.1","172.16.0.1","192.168.1.1","169.254.169.254","100.64.0.1","[::1]` + sp + `","[::ffff:127.0.0.1]` + sp + `","[64:ff9b::7f00:1]` + sp + `","fc00::1","fe80::1","0.0.0.0` + sp + `"]`
		if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"EXFIL","value":"`+value+`","allowed_hosts":`+hostsJSON+`}`); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		pu, _ := url.Parse(s.proxyURL)
		pu.User = url.UserPassword("w", key)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)},
			CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("no redirects") }}
		targets := []string{
			"http://127.0.0.1:" + sinkPort, "http://localhost:" + sinkPort, "http://10.0.0.1", "http://172.16.0.1",
			"http://192.168.1.1", "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1", "http://[::1]:" + sinkPort,
			"http://[::ffff:127.0.0.1]:" + sinkPort, "http://[64:ff9b::7f00:1]:" + sinkPort, "http://[fc00::1]", "http://[fe80::1]",
			"http://0.0.0.0:" + sinkPort,
		}
		for _, u := range targets {
			req, _ := http.NewRequest("GET", u+"/x", nil)
			req.Header.Set("X-K", ref)
			res, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", u, err)
			}
			res.Body.Close()
			if res.StatusCode != 403 || res.Header.Get("X-Rotor-Error") != "destination_blocked" {
				t.Fatalf("%s: %d %s, want 403 destination_blocked", u, res.StatusCode, res.Header.Get("X-Rotor-Error"))
			}
		}
		if denied := auditCount(t, s.apiURL, key, "secret.access_denied"); denied < len(targets) {
			t.Fatalf("%d secret.access_denied rows for %d blocked destinations", denied, len(targets))
		}
		t.Logf("gateway: %d private destinations refused and audited", len(targets))
	})
	if leaked.Load() > 0 {
		t.Fatalf("the value reached a listener %d times", leaked.Load())
	}
	t.Logf("listener hits: %d, with the value: %d", hits.Load(), leaked.Load())
}

// auditCount waits (bounded) for access rows to be flushed and counts the
// rows of one event type.
func auditCount(t *testing.T, apiURL, key, eventType string) int {
	t.Helper()
	var n int
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := call(t, "GET", apiURL+"/v1/audit?limit=1000&event_type="+eventType, key, "")
		n = strings.Count(body, `"event_type":"`+eventType+`"`)
		if time.Now().After(deadline) {
			return n
		}
		time.Sleep(300 * time.Millisecond)
		_, again := call(t, "GET", apiURL+"/v1/audit?limit=1000&event_type="+eventType, key, "")
		if strings.Count(again, `"event_type":"`+eventType+`"`) == n && n > 0 {
			return n
		}
	}
}
