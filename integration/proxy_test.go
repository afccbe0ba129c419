package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

// TestProxyThroughBinary: `rotor serve` resolves references for a worker
// that uses it as HTTP_PROXY, over plain HTTP and, after `rotor ca init`,
// over intercepted HTTPS; rotation through the API is used by the next request.
func TestProxyThroughBinary(t *testing.T) {
	var got struct{ header, query string }
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.header, got.query = r.Header.Get("X-Api-Key"), r.URL.RawQuery
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	plain := httptest.NewServer(up.Config.Handler)
	defer plain.Close()
	upCA := filepath.Join(t.TempDir(), "upstream.pem")
	os.WriteFile(upCA, pemCert(up.Certificate()), 0o600)

	dir := t.TempDir()
	if code, out, errOut := rotor(t, nil, "ca", "init", "--dir", filepath.Join(dir, "data")); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errOut)
	}
	s := startServer(t, dir, "ROTOR_PROXY_UPSTREAM_CA_FILE="+upCA)
	defer s.stop()
	key := s.adminKey()
	if code, body := call(t, "POST", s.apiURL+"/v1/secrets", key, `{"name":"NOTIFY_TOKEN","value":"your-token-here"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "data", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	pu, _ := url.Parse(s.proxyURL)
	pu.User = url.UserPassword("worker", key)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}}

	for _, target := range []string{plain.URL, up.URL} {
		req, _ := http.NewRequest("GET", target+"/notify?token=${{%20secrets.NOTIFY_TOKEN%20}}", nil)
		req.Header.Set("X-Api-Key", "${{ secrets.NOTIFY_TOKEN }}")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || got.header != "your-token-here" || got.query != "token=your-token-here" {
			t.Fatalf("%s: status %d, upstream saw %+v", target, res.StatusCode, got)
		}
	}
	if code, body := call(t, "PATCH", s.apiURL+"/v1/secrets/NOTIFY_TOKEN", key, `{"value":"rotated-token"}`); code != 200 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", up.URL+"/notify", nil)
	req.Header.Set("X-Api-Key", "${{ secrets.NOTIFY_TOKEN }}")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got.header != "rotated-token" {
		t.Fatalf("after rotation the upstream saw %q", got.header)
	}
	// The audit trail records the accesses with the proxy's request ids.
	time.Sleep(300 * time.Millisecond) // access rows are group-committed every 100 ms
	code, body := call(t, "GET", s.apiURL+"/v1/audit?event_type=secret.accessed", key, "")
	if code != 200 || strings.Count(body, `"event_type":"secret.accessed"`) < 3 || !strings.Contains(body, `"request_id":"prx_`) {
		t.Fatalf("audit: %d %s", code, body)
	}
	if strings.Contains(s.out.String(), "your-token-here") || strings.Contains(s.out.String(), "rotated-token") {
		t.Fatal("a value reached the server output")
	}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// TestSIGTERMDrainsProxiedRequest: a request in flight through the proxy
// when SIGTERM arrives completes, and the server then exits cleanly.
func TestSIGTERMDrainsProxiedRequest(t *testing.T) {
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		time.Sleep(time.Second)
		io.WriteString(w, "finished")
	}))
	defer up.Close()
	s := startServer(t, t.TempDir())
	pu, _ := url.Parse(s.proxyURL)
	pu.User = url.UserPassword("worker", s.adminKey())
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	type res struct {
		status int
		body   string
		err    error
	}
	done := make(chan res, 1)
	go func() {
		r, err := client.Get(up.URL + "/slow")
		if err != nil {
			done <- res{err: err}
			return
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		done <- res{status: r.StatusCode, body: string(b)}
	}()
	<-arrived
	s.stop() // SIGTERM, then waits for a clean exit
	r := <-done
	if r.err != nil || r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight request after SIGTERM: %+v", r)
	}
}

// TestSIGTERMKeepsEveryLogLine: the log is buffered (a write per 100 ms or
// 64 KiB, not per line); every request's summary line still reaches the
// output when rotor serve stops on SIGTERM right after the requests.
func TestSIGTERMKeepsEveryLogLine(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	s := startServer(t, t.TempDir())
	pu, _ := url.Parse(s.proxyURL)
	pu.User = url.UserPassword("worker", s.adminKey())
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	const n = 40
	for i := range n {
		r, err := client.Get(fmt.Sprintf("%s/line/%d", up.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	client.CloseIdleConnections()
	s.stop()
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(s.out.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue // the bootstrap banner is not JSON
		}
		if m["msg"] == proxy.LogMsgRequest && m[proxy.LogFieldStatus] == float64(200) {
			lines++
		}
	}
	if lines != n {
		t.Fatalf("%d summary lines after SIGTERM, want %d:\n%s", lines, n, s.out.String())
	}
}
