package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

const inprocToken = "the-internal-token-0123456789abcdef"

// inprocEnv is one proxy served two ways: on a loopback listener (as the
// dispatcher reached it before issue 16's session 4) and in-process through
// InternalTransport (as rotor serve's dispatcher does now).
type inprocEnv struct {
	ve     *vaulttest.Env
	p      *proxy.Proxy
	viaNet *http.Client
	inproc *http.Client
}

func newInprocEnv(t *testing.T, opts ...envOpt) *inprocEnv {
	t.Helper()
	ve := vaulttest.New(t)
	o := proxy.Options{Vault: ve.Vault, Logger: ve.Logger, Registerer: ve.Registry, InternalToken: inprocToken}
	for _, f := range opts {
		f(&o)
	}
	p, err := proxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.CloseIdleConnections()
	})
	pu, _ := url.Parse(srv.URL)
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &inprocEnv{
		ve: ve, p: p,
		viaNet: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true}, CheckRedirect: noRedirect, Timeout: 30 * time.Second},
		inproc: &http.Client{Transport: p.InternalTransport(), CheckRedirect: noRedirect, Timeout: 30 * time.Second},
	}
}

// dispatchHeaders are what the dispatcher sends for job_1, attempt 1.
func (e *inprocEnv) dispatchHeaders() []string {
	return []string{"Proxy-Authorization", "Bearer " + inprocToken, proxy.HeaderInternalWorkspace, e.ve.Operator.WorkspaceID,
		proxy.HeaderInternalActor, e.ve.Operator.KeyID, proxy.HeaderInternalJob, "job_1", proxy.HeaderInternalAttempt, "1",
		"webhook-id", "job_1", "webhook-timestamp", "1700000000", proxy.HeaderInternalSign, "standard-webhooks"}
}

func do(t *testing.T, c *http.Client, method, rawURL, ctype, body string, hdr []string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
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
	return result{res.StatusCode, res.Header, string(b)}
}

// TestInProcessRefusesWhatHTTPRefuses: every request is sent over the
// loopback listener and through InternalTransport; both answer the same
// status, error code and message, and the upstream gets the same request
// (or nothing) from both. The refusals are the fail-closed ones: an
// unresolvable or malformed reference, a secret bound to other hosts, a
// revoked API key, a wrong internal token, a dispatch request naming no
// workspace.
func TestInProcessRefusesWhatHTTPRefuses(t *testing.T) {
	e := newInprocEnv(t)
	ctx := context.Background()
	up := newUpstream(t, false)
	e.ve.Secret(t, "TOKEN", tokenValue)
	e.ve.Secret(t, "BOUND", tokenValue+"-bound", "api.example.com")
	if _, err := e.ve.Vault.CallbackSecret(ctx, vault.CredentialRequest{WorkspaceID: e.ve.Operator.WorkspaceID, Host: "127.0.0.1", Scheme: "http"}); err != nil {
		t.Fatal(err)
	}
	rec, revoked, err := e.ve.Vault.CreateAPIKey(ctx, e.ve.Operator, vault.CreateAPIKeyRequest{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ve.Vault.RevokeAPIKey(ctx, e.ve.Operator, rec.ID); err != nil {
		t.Fatal(err)
	}
	disp := e.dispatchHeaders()
	with := func(extra ...string) []string { return append(append([]string{}, disp...), extra...) }
	cases := []struct {
		name, url, ctype, body string
		hdr                    []string
		status                 int
		code                   string
	}{
		{"resolves", "/cb?token=${{%20secrets.TOKEN%20}}", "application/json", `{"t":"${{ secrets.TOKEN }}"}`, with("X-Key", "${{ secrets.TOKEN }}"), 200, ""},
		{"no references", "/cb", "application/json", `{"ok":true}`, disp, 200, ""},
		{"unknown secret", "/cb", "application/json", `{"t":"${{ secrets.MISSING }}"}`, disp, 422, proxy.CodeSecretNotFound},
		{"malformed reference", "/cb", "", "", with("X-Key", "${{ secrets.lower }}"), 400, proxy.CodeInvalidReference},
		{"host binding", "/cb", "", "", with("X-Key", "${{ secrets.BOUND }}"), 403, proxy.CodeHostNotAllowed},
		{"revoked key", "/cb", "", "", []string{"Proxy-Authorization", "Bearer " + revoked, "X-Key", "${{ secrets.TOKEN }}"}, 407, proxy.CodeProxyAuthRequired},
		{"wrong internal token", "/cb", "", "", []string{"Proxy-Authorization", "Bearer not-the-token", proxy.HeaderInternalWorkspace, e.ve.Operator.WorkspaceID}, 407, proxy.CodeProxyAuthRequired},
		{"internal token without workspace", "/cb", "", "", []string{"Proxy-Authorization", "Bearer " + inprocToken}, 407, proxy.CodeProxyAuthRequired},
		{"no credentials", "/cb", "", "", nil, 407, proxy.CodeProxyAuthRequired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]result
			var sent [2]*seen
			for i, c := range []*http.Client{e.viaNet, e.inproc} {
				before := up.count()
				got[i] = do(t, c, "POST", up.URL+tc.url, tc.ctype, tc.body, tc.hdr)
				if tc.code != "" {
					refused(t, got[i], up, before, tc.status, tc.code)
				} else if got[i].status != tc.status || up.count() != before+1 {
					t.Fatalf("path %d: %d %s", i, got[i].status, got[i].body)
				} else {
					s := up.last(t)
					sent[i] = &s
				}
				if strings.Contains(got[i].body, tokenValue) {
					t.Fatalf("path %d: the answer holds a value: %s", i, got[i].body)
				}
			}
			if got[0].status != got[1].status || got[0].body != got[1].body || got[0].header.Get(proxy.HeaderError) != got[1].header.Get(proxy.HeaderError) {
				t.Fatalf("loopback answered %d %q, in-process %d %q", got[0].status, got[0].body, got[1].status, got[1].body)
			}
			if sent[0] == nil {
				return
			}
			a, b := sent[0], sent[1]
			if a.Path != b.Path || a.RawQuery != b.RawQuery || string(a.Body) != string(b.Body) || a.ContentLength != b.ContentLength {
				t.Fatalf("upstream got %q %q %q by loopback, %q %q %q in-process", a.Path, a.RawQuery, a.Body, b.Path, b.RawQuery, b.Body)
			}
			for _, h := range []string{"X-Key", "Authorization", "Webhook-Signature", "Webhook-Id", "Content-Type"} {
				if a.Header.Get(h) != b.Header.Get(h) {
					t.Fatalf("%s: %q by loopback, %q in-process", h, a.Header.Get(h), b.Header.Get(h))
				}
			}
			for k := range b.Header {
				if strings.HasPrefix(k, "Proxy-") || strings.HasPrefix(k, "Rotor-Internal-") {
					t.Fatalf("upstream got %s in-process", k)
				}
			}
			if tc.name == "resolves" && (b.Header.Get("X-Key") != tokenValue || !strings.Contains(b.RawQuery, tokenValue) || b.Header.Get("Webhook-Signature") == "") {
				t.Fatalf("in-process did not resolve and sign: %+v", b)
			}
		})
	}
	// Canary: no resolved value in any log line of either path.
	leakcheck.Scan(t, tokenValue, map[string][]byte{"log": []byte(e.ve.Logs.String())})
	// Both paths wrote their summary lines (one per request, by request id).
	if n := strings.Count(e.ve.Logs.String(), `"msg":"`+proxy.LogMsgRequest+`"`); n != 2*len(cases) {
		t.Fatalf("%d request lines, want %d", n, 2*len(cases))
	}
}

// TestInProcessBlockedDestination: with the SSRF guard on, a dispatch
// request to loopback is refused in-process as over the listener, and its
// resolved secret is recorded as never sent.
func TestInProcessBlockedDestination(t *testing.T) {
	e := newInprocEnv(t, func(o *proxy.Options) { o.SSRFGuard = true })
	up := newUpstream(t, false)
	e.ve.Secret(t, "TOKEN", tokenValue)
	for i, c := range []*http.Client{e.viaNet, e.inproc} {
		r := do(t, c, "POST", up.URL+"/cb", "text/plain", "${{ secrets.TOKEN }}", e.dispatchHeaders())
		refused(t, r, up, 0, 403, proxy.CodeDestinationBlocked)
		if strings.Contains(r.body, tokenValue) {
			t.Fatalf("path %d: the answer holds the value", i)
		}
	}
}

// TestInProcessScrubsAndLeavesRequest: an upstream echoing the resolved
// value has it scrubbed from the in-process answer, and the caller's
// request keeps its templates (a RoundTripper does not modify it).
func TestInProcessScrubsAndLeavesRequest(t *testing.T) {
	e := newInprocEnv(t)
	up := newUpstream(t, false)
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Write([]byte("you sent " + r.Header.Get("X-Key") + " and " + string(body)))
	}
	e.ve.Secret(t, "TOKEN", tokenValue)
	req, _ := http.NewRequest("POST", up.URL+"/cb?k=${{%20secrets.TOKEN%20}}", strings.NewReader("${{ secrets.TOKEN }}"))
	hdr := e.dispatchHeaders()
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
	res, err := e.inproc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || strings.Contains(string(b), tokenValue) || !strings.Contains(string(b), "you sent ") {
		t.Fatalf("%d %q", res.StatusCode, b)
	}
	if up.last(t).Header.Get("X-Key") != tokenValue {
		t.Fatal("not resolved upstream")
	}
	if req.Header.Get("X-Key") != "${{ secrets.TOKEN }}" || req.Header.Get("Proxy-Authorization") == "" || req.Header.Get(proxy.HeaderInternalJob) != "job_1" ||
		!strings.Contains(req.URL.RawQuery, "secrets.TOKEN") {
		t.Fatalf("the caller's request was changed: %v %q", req.Header, req.URL.RawQuery)
	}
}

// TestInProcessTimeout: the caller's deadline ends an in-process request
// as it ends an HTTP client's (a context error, so the dispatcher records
// a timeout), and the upstream's slowness does not hold the caller.
func TestInProcessTimeout(t *testing.T) {
	e := newInprocEnv(t)
	up := newUpstream(t, false)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", up.URL+"/slow", strings.NewReader("{}"))
	hdr := e.dispatchHeaders()
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	_, err := e.inproc.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
}

// TestInProcessRejectsNonProxyRequests: only absolute http:// requests,
// as the listener serves them (CONNECT and https are not for this path).
func TestInProcessRejectsNonProxyRequests(t *testing.T) {
	e := newInprocEnv(t)
	for _, u := range []string{"https://127.0.0.1:1/x", "/relative"} {
		req := &http.Request{Method: "GET", URL: mustURL(t, u), Header: http.Header{}}
		if _, err := e.p.InternalTransport().RoundTrip(req); !errors.Is(err, proxy.ErrInternalRequest) {
			t.Fatalf("%s: %v", u, err)
		}
	}
	req := &http.Request{Method: http.MethodConnect, URL: mustURL(t, "http://127.0.0.1:1"), Header: http.Header{}}
	if _, err := e.p.InternalTransport().RoundTrip(req); !errors.Is(err, proxy.ErrInternalRequest) {
		t.Fatalf("CONNECT: %v", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// TestInProcessClosesRefusedBody: a refused request's body is closed, as
// a RoundTripper must.
func TestInProcessClosesRefusedBody(t *testing.T) {
	e := newInprocEnv(t)
	up := newUpstream(t, false)
	body := &closeRecorder{Reader: strings.NewReader(`{"t":"${{ secrets.MISSING }}"}`)}
	req, _ := http.NewRequest("POST", up.URL+"/cb", body)
	req.Header.Set("Content-Type", "application/json")
	hdr := e.dispatchHeaders()
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.inproc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 422 || !body.closed {
		t.Fatalf("status %d, body closed %v", res.StatusCode, body.closed)
	}
}

type panicBody struct{}

func (panicBody) Read([]byte) (int, error) { panic("a body reader failed") }
func (panicBody) Close() error             { return nil }

// TestInProcessSurvivesPanic: a panic while handling an in-process request
// is an error for the caller (as a dropped connection is over the
// listener), not the end of the process.
func TestInProcessSurvivesPanic(t *testing.T) {
	e := newInprocEnv(t)
	up := newUpstream(t, false)
	req, _ := http.NewRequest("POST", up.URL+"/cb", panicBody{})
	req.Header.Set("Content-Type", "application/json")
	hdr := e.dispatchHeaders()
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if _, err := e.inproc.Do(req); err == nil {
		t.Fatal("a panicking request succeeded")
	}
	if !strings.Contains(e.ve.Logs.String(), "panic in an in-process request") || strings.Contains(e.ve.Logs.String(), "a body reader failed") {
		t.Fatalf("log: %s", e.ve.Logs.String())
	}
	if up.count() != 0 {
		t.Fatal("the upstream was called")
	}
}

// gatedBody yields head, then waits for open to be closed, then yields
// tail: a client still sending its body after the response ended.
type gatedBody struct {
	head, tail *strings.Reader
	open       chan struct{}
}

func (g *gatedBody) Read(p []byte) (int, error) {
	if g.head.Len() > 0 {
		return g.head.Read(p)
	}
	<-g.open
	return g.tail.Read(p)
}

// TestLogLineWaitsForStreamedBody: a streamed body (past BufferLimit)
// whose upstream answered, and whose response was read to its end and
// closed, before the body was all sent: a secret the body resolves after
// that is in the request's log line too, which is written when both the
// response and the request body are done (issue 15: the line listed only
// the secrets resolved before the response ended).
func TestLogLineWaitsForStreamedBody(t *testing.T) {
	e := newInprocEnv(t)
	e.ve.Secret(t, "EARLY", "early-value-0123456789")
	e.ve.Secret(t, "LATE", "late-value-0123456789")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Answers after the first bytes, then reads the rest as it comes.
		_ = http.NewResponseController(w).EnableFullDuplex()
		var b [64]byte
		_, _ = io.ReadFull(r.Body, b[:])
		w.Header().Set("Content-Length", "2")
		_, _ = io.WriteString(w, "ok")
		_ = http.NewResponseController(w).Flush()
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	body := &gatedBody{
		head: strings.NewReader("${{ secrets.EARLY }}" + strings.Repeat("x", proxy.BufferLimit+64<<10)),
		tail: strings.NewReader("${{ secrets.LATE }}"),
		open: make(chan struct{}),
	}
	req, err := http.NewRequest("POST", up.URL+"/late", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Proxy-Authorization", "Bearer "+e.ve.Key)
	// The transport itself: a client with a timeout cancels the request's
	// context when the response is closed, and the late secret would then
	// not resolve at all (what the lane's requests, whose context never
	// ends, do not do).
	res, err := e.p.InternalTransport().RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(res.Body); res.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("%d %q", res.StatusCode, b)
	}
	res.Body.Close()
	close(body.open) // the rest of the body, after the response ended
	var line map[string]any
	for i := 0; i < 500 && line == nil; i++ {
		for _, l := range strings.Split(e.ve.Logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == proxy.LogMsgRequest {
				line = m
			}
		}
		if line == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if line == nil {
		t.Fatal("no request line")
	}
	if got := fmt.Sprint(line[proxy.LogFieldSecrets]); got != "[EARLY LATE]" {
		t.Fatalf("log line lists %s, want [EARLY LATE]", got)
	}
}
