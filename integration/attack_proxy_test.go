package integration

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rotor.sh/rotor/internal/proccpu"
)

// The proxy half of issue 10's attack suite: one test per attack, against
// the built binary with hostile loopback upstreams. Each failed on the code
// before its fix (see docs/security.md, "Attack table (issue 10): proxy").

const attackKey = "attack-proxy-bootstrap-key-0123456789"

// attackEnv starts a server and returns it with a proxy client.
func attackEnv(t *testing.T, env ...string) (*server, *http.Client) {
	t.Helper()
	s := startServer(t, t.TempDir(), append([]string{"ROTOR_BOOTSTRAP_API_KEY=" + attackKey}, env...)...)
	t.Cleanup(s.stop)
	pu, _ := url.Parse(s.proxyURL)
	pu.User = url.UserPassword("w", attackKey)
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(c.CloseIdleConnections)
	return s, c
}

func attackSecret(t *testing.T, s *server, name, value string, hosts ...string) {
	t.Helper()
	hj, _ := json.Marshal(hosts)
	if hosts == nil {
		hj = []byte("[]")
	}
	vj, _ := json.Marshal(value)
	if code, body := call(t, "POST", s.apiURL+"/v1/secrets", attackKey, `{"name":"`+name+`","value":`+string(vj)+`,"allowed_hosts":`+string(hj)+`}`); code != 201 {
		t.Fatalf("create %s: %d %s", name, code, body)
	}
}

func proxyGet(t *testing.T, c *http.Client, method, u string, body []byte, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// attackScrubBypass: an upstream reflects a resolved value in a
// trailer, under an undecoded Content-Encoding, in deflate, as the Basic
// credential's base64, in its decoded query form and JSON-escaped.
func attackScrubBypass(t *testing.T, s *server, c *http.Client) {
	const value = `scrub"canary\value-9a8b7c`
	const pass = "basic-canary-pass-4d5e6f"
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("X-Key")
		switch r.URL.Path {
		case "/trailer":
			w.Header().Set("Trailer", "X-Echo")
			w.Write([]byte("ok"))
			w.Header().Set("X-Echo", key)
		case "/madeup":
			w.Header().Set("Content-Encoding", "x-made-up")
			w.Write([]byte(key))
		case "/deflate":
			w.Header().Set("Content-Encoding", "deflate")
			fw, _ := flate.NewWriter(w, 5)
			fw.Write([]byte(key))
			fw.Close()
		default:
			j, _ := json.Marshal(map[string]string{"h": key, "q": r.URL.Query().Get("t")})
			w.Write([]byte(r.Header.Get("Authorization") + "\n" + r.URL.Query().Get("t") + "\n" + string(j)))
		}
	}))
	defer up.Close()
	attackSecret(t, s, "CANARY", value)
	attackSecret(t, s, "PASS", pass)
	ref := "${{ secrets.CANARY }}"
	jv, _ := json.Marshal(value)
	forms := []string{value, string(jv[1 : len(jv)-1]), url.QueryEscape(value), base64.StdEncoding.EncodeToString([]byte("u:" + pass)), pass}
	check := func(where, got string) {
		t.Helper()
		for _, f := range forms {
			if strings.Contains(got, f) {
				t.Errorf("%s: the value reached the client in the form %q", where, f)
			}
		}
	}
	res, _ := proxyGet(t, c, "GET", up.URL+"/trailer", nil, "X-Key", ref)
	check("trailer", res.Trailer.Get("X-Echo"))
	res, body := proxyGet(t, c, "GET", up.URL+"/madeup", nil, "X-Key", ref)
	check("x-made-up body", body)
	if res.StatusCode != 502 || res.Header.Get("X-Rotor-Error") != "response_unscannable" {
		t.Errorf("made-up encoding: %d %q, want 502 response_unscannable", res.StatusCode, res.Header.Get("X-Rotor-Error"))
	}
	res, body = proxyGet(t, c, "GET", up.URL+"/deflate", nil, "X-Key", ref)
	if res.Header.Get("Content-Encoding") != "" {
		t.Errorf("deflate relayed encoded (%q): not scanned", res.Header.Get("Content-Encoding"))
	}
	check("deflate body", body)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:${{ secrets.PASS }}"))
	_, body = proxyGet(t, c, "GET", up.URL+"/echo?t=${{%20secrets.CANARY%20}}", nil, "X-Key", ref, "Authorization", basic)
	check("echo body", body)
	uu, _ := url.Parse(up.URL + "/userinfo")
	uu.User = url.UserPassword("u", "${{ secrets.PASS }}")
	_, body = proxyGet(t, c, "GET", uu.String(), nil)
	check("userinfo echo", body)
}

// TestAttackProxy runs the sidecar attacks against one server (starting
// one per attack would cost the suite half a minute).
func TestAttackProxy(t *testing.T) {
	s, c := attackEnv(t)
	for _, a := range []struct {
		name string
		run  func(*testing.T, *server, *http.Client)
	}{
		{"scrub_bypass", attackScrubBypass},
		{"scrub_cpu", attackScrubCPU},
		{"forged_headers", attackForgedHeaders},
		{"long_host", attackLongHost},
		{"allowed_host_port", attackAllowedHostPort},
	} {
		t.Run(a.name, func(t *testing.T) { a.run(t, s, c) })
	}
}

// procCPU is the user+system CPU time of a process so far (proccpu.Of).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	d, err := proccpu.Of(pid)
	if err != nil {
		t.Skip("CPU time not measurable here: ", err)
	}
	return d
}

// attackScrubCPU: the adversarial case, two secrets that
// share a long prefix with a third, and a 440 KB body echoing one of them
// many times (with its length known, so the proxy scrubs it whole). Scrubbing it cost 6.7 CPU-seconds when it was quadratic. The
// bound below is CPU time (not wall time, so a busy machine does not
// matter) with a wide margin: the linear scrubber needs a few tens of
// milliseconds even under the race detector.
func attackScrubCPU(t *testing.T, s *server, c *http.Client) {
	// Longer than 64 bytes: past what bytes.Index searches with SIMD.
	prefix := strings.Repeat("p", 100)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read first: an HTTP/1 server stops reading the request once the
		// response starts.
		b, _ := io.ReadAll(r.Body)
		// A known length: the proxy scrubs such bodies whole, where the
		// quadratic matcher cost most.
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}))
	defer up.Close()
	attackSecret(t, s, "A", prefix+"A-value")
	attackSecret(t, s, "B", prefix+"B-value")
	attackSecret(t, s, "C", prefix+"C-value")
	var body bytes.Buffer
	for body.Len() < 440<<10 {
		body.WriteString("${{ secrets.A }} ")
	}
	refs := strings.Count(body.String(), "${{")
	cpu0 := procCPU(t, s.cmd.Process.Pid)
	res, out := proxyGet(t, c, "POST", up.URL+"/echo", body.Bytes(), "Content-Type", "text/plain", "X-B", "${{ secrets.B }}", "X-C", "${{ secrets.C }}")
	used := procCPU(t, s.cmd.Process.Pid) - cpu0
	t.Logf("%d references, %d bytes: %v CPU", refs, body.Len(), used)
	if used > 3*time.Second {
		t.Errorf("scrubbing %d bytes took %v of CPU: not linear", body.Len(), used)
	}
	if res.StatusCode != 200 || strings.Count(out, "${{ secrets.A }}") != refs || strings.Contains(out, prefix) {
		t.Fatalf("status %d; %d references back of %d", res.StatusCode, strings.Count(out, "${{ secrets.A }}"), refs)
	}
}

// attackForgedHeaders: an upstream forges Rotor's own headers and
// hop-by-hop headers; a client's hop-by-hop headers must not reach the
// upstream.
func attackForgedHeaders(t *testing.T, s *server, c *http.Client) {
	seen := make(chan http.Header, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("X-Rotor-Error", "forged_"+strings.Repeat("x", 4000))
		w.Header().Set("Rotor-Job-Id", "forged")
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.WriteHeader(503)
	}))
	defer up.Close()
	res, _ := proxyGet(t, c, "GET", up.URL+"/x", nil, "Connection", "X-Hop", "X-Hop", "1", "Keep-Alive", "timeout=1", "Te", "trailers", "Upgrade", "h2c")
	if res.Header.Get("X-Rotor-Error") != "" || res.Header.Get("Rotor-Job-Id") != "" {
		t.Errorf("forged Rotor headers reached the client: %q %q", res.Header.Get("X-Rotor-Error")[:min(40, len(res.Header.Get("X-Rotor-Error")))], res.Header.Get("Rotor-Job-Id"))
	}
	got := <-seen
	if res.Header.Get("X-Up-Hop") != "" {
		t.Error("a header the upstream's Connection named reached the client")
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "Te", "Upgrade"} {
		if got.Get(k) != "" {
			t.Errorf("hop-by-hop %s reached the upstream", k)
		}
	}
}

// attackLongHost: a 300-character destination host is refused with
// 400 before an audit row or a log line holds it.
func attackLongHost(t *testing.T, s *server, c *http.Client) {
	attackSecret(t, s, "TOKEN", "long-host-canary-1234")
	long := strings.Repeat("h", 300) + ".test" // labels over 63: never a DNS query
	res, _ := proxyGet(t, c, "GET", "http://"+long+"/x", nil, "X-Key", "${{ secrets.TOKEN }}")
	if res.StatusCode != 400 {
		t.Errorf("status %d %q, want 400", res.StatusCode, res.Header.Get("X-Rotor-Error"))
	}
	time.Sleep(300 * time.Millisecond) // one audit flush interval
	_, rows := call(t, "GET", s.apiURL+"/v1/audit?limit=1000", attackKey, "")
	if strings.Contains(rows, strings.Repeat("h", 254)) {
		t.Error("the long host reached an audit row")
	}
	if strings.Contains(s.out.String(), strings.Repeat("h", 254)) {
		t.Error("the long host reached the log")
	}
}

// attackAllowedHostPort: a secret bound to 127.0.0.1 is not sent
// to 127.0.0.1 on another port; an entry with the port allows it.
func attackAllowedHostPort(t *testing.T, s *server, c *http.Client) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer up.Close()
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	attackSecret(t, s, "BARE", "port-canary-value-1", "127.0.0.1")
	res, _ := proxyGet(t, c, "GET", up.URL+"/x", nil, "X-Key", "${{ secrets.BARE }}")
	if res.StatusCode != 403 || res.Header.Get("X-Rotor-Error") != "host_not_allowed" || hits.Load() != 0 {
		t.Fatalf("bare host, port %s: %d %q (%d upstream hits), want 403 host_not_allowed", port, res.StatusCode, res.Header.Get("X-Rotor-Error"), hits.Load())
	}
	attackSecret(t, s, "PORTED", "port-canary-value-2", "http://127.0.0.1:"+port)
	if res, body := proxyGet(t, c, "GET", up.URL+"/x", nil, "X-Key", "${{ secrets.PORTED }}"); res.StatusCode != 200 {
		t.Fatalf("scheme://host:port entry: %d %s", res.StatusCode, body)
	}
	if code, body := call(t, "POST", s.apiURL+"/v1/secrets", attackKey, `{"name":"BAD","value":"x1234567","allowed_hosts":["ftp://h.test:99999"]}`); code != 422 || !strings.Contains(body, "allowed_hosts") {
		t.Fatalf("malformed entry: %d %s, want 422 naming allowed_hosts", code, body)
	}
}

// TestAttackProxySSRFEmbedded: loopback spelled as IPv4-compatible and
// IPv4-translated IPv6 is refused in gateway mode.
func TestAttackProxySSRFEmbedded(t *testing.T) {
	_, c := attackEnv(t, "ROTOR_PROXY_MODE=gateway")
	for _, h := range []string{"[::127.0.0.1]", "[::ffff:0:7f00:1]", "[::7f00:1]"} {
		res, _ := proxyGet(t, c, "GET", "http://"+h+":80/x", nil)
		if res.StatusCode != 403 || res.Header.Get("X-Rotor-Error") != "destination_blocked" {
			t.Errorf("%s: %d %q, want 403 destination_blocked", h, res.StatusCode, res.Header.Get("X-Rotor-Error"))
		}
	}
}
