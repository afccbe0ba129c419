package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rotor.sh/rotor/internal/leakcheck"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/storage"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
)

// seen is what an upstream received.
type seen struct {
	Method, Path, RawPath, RawQuery, Host string
	Header                                http.Header
	Body                                  []byte
	User, Pass                            string
	HasAuth                               bool
	ContentLength                         int64
	TransferEncoding                      []string
}

type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
	// respond, if set, writes the response.
	respond func(w http.ResponseWriter, r *http.Request, body []byte)
}

func (u *upstream) handler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s := seen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Host: r.Host,
		Header: r.Header.Clone(), Body: body, ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding}
	s.User, s.Pass, s.HasAuth = r.BasicAuth()
	u.mu.Lock()
	u.reqs = append(u.reqs, s)
	respond := u.respond
	u.mu.Unlock()
	if respond != nil {
		respond(w, r, body)
		return
	}
	w.Write([]byte("ok"))
}

func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received nothing")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func newUpstream(t *testing.T, tlsOn bool) *upstream {
	u := &upstream{}
	if tlsOn {
		u.Server = httptest.NewTLSServer(http.HandlerFunc(u.handler))
	} else {
		u.Server = httptest.NewServer(http.HandlerFunc(u.handler))
	}
	t.Cleanup(u.Close)
	return u
}

type env struct {
	t     *testing.T
	ve    *vaulttest.Env
	vault *vault.Vault
	store *bolt.Store
	db    string
	op    vault.Actor
	key   string
	proxy *httptest.Server
	logs  *leakcheck.Buffer
	reg   *prometheus.Registry
}

type envOpt func(*proxy.Options)

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	ve := vaulttest.New(t)
	o := proxy.Options{Vault: ve.Vault, Logger: ve.Logger, Registerer: ve.Registry, Engine: testEngine()}
	for _, f := range opts {
		f(&o)
	}
	p, err := proxy.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveProxy(t, p)
	t.Cleanup(func() {
		srv.Close()
		p.CloseIdleConnections()
	})
	return &env{t: t, ve: ve, vault: ve.Vault, store: ve.Store, db: ve.DBPath, op: ve.Operator, key: ve.Key, proxy: srv, logs: ve.Logs, reg: ve.Registry}
}

func (e *env) secret(name, value string, hosts ...string) {
	e.t.Helper()
	e.ve.Secret(e.t, name, value, hosts...)
}

// client returns an HTTP client that uses the proxy with key (Basic, as
// HTTP_PROXY=http://rotor:KEY@host gives) and trusts roots for HTTPS.
func (e *env) client(key string, roots *x509.CertPool) *http.Client {
	pu, _ := url.Parse(e.proxy.URL)
	if key != "" {
		pu.User = url.UserPassword("rotor", key)
	}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}, DisableCompression: true},
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

type result struct {
	status int
	header http.Header
	body   string
}

func (e *env) send(c *http.Client, method, rawURL, ctype, body string, hdr ...string) result {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return result{res.StatusCode, res.Header, string(b)}
}

const (
	tokenValue   = "tok_live_5f3a9c2e"
	hostileValue = `a"b\c/d e&f=g?h#i%j+k`
)

func TestResolvesEveryPosition(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	e.secret("HOSTILE", hostileValue)
	e.secret("USER", "svc-user")
	c := e.client(e.key, nil)
	base := up.URL

	// URL path (a client leaves braces raw or encodes them; both work).
	r := e.send(c, "GET", base+"/hooks/${{%20secrets.HOSTILE%20}}/x", "", "")
	if r.status != 200 {
		t.Fatalf("path: %d %s", r.status, r.body)
	}
	if got := up.last(t); got.Path != "/hooks/"+hostileValue+"/x" || got.RawPath != "/hooks/"+url.PathEscape(hostileValue)+"/x" {
		t.Fatalf("path: %q %q", got.Path, got.RawPath)
	}
	// Query, percent-encoded reference, hostile value cannot add parameters.
	e.send(c, "GET", base+"/notify?token=%24%7B%7B+secrets.HOSTILE+%7D%7D&x=1", "", "")
	q, _ := url.ParseQuery(up.last(t).RawQuery)
	if q.Get("token") != hostileValue || q.Get("x") != "1" || len(q) != 2 {
		t.Fatalf("query: %q", up.last(t).RawQuery)
	}
	// Userinfo.
	u, _ := url.Parse(base + "/basic")
	u.User = url.UserPassword("${{ secrets.USER }}", "${{ secrets.HOSTILE }}")
	e.send(c, "GET", u.String(), "", "")
	if got := up.last(t); !got.HasAuth || got.User != "svc-user" || got.Pass != hostileValue {
		t.Fatalf("userinfo: %+v", got)
	}
	// Header.
	e.send(c, "GET", base+"/h", "", "", "Authorization", "Bearer ${{ secrets.TOKEN }}", "X-Api-Key", "$<<secrets.TOKEN>>")
	if got := up.last(t); got.Header.Get("Authorization") != "Bearer "+tokenValue || got.Header.Get("X-Api-Key") != tokenValue {
		t.Fatalf("header: %v", got.Header)
	}
	// JSON body: the hostile value stays one string.
	e.send(c, "POST", base+"/j", "application/json", `{"token":"${{ secrets.HOSTILE }}","n":1}`)
	var m map[string]any
	if got := up.last(t); json.Unmarshal(got.Body, &m) != nil || m["token"] != hostileValue || len(m) != 2 || got.ContentLength != int64(len(got.Body)) {
		t.Fatalf("json: %q", up.last(t).Body)
	}
	// Form body.
	e.send(c, "POST", base+"/f", "application/x-www-form-urlencoded", "a=1&token=%24%7B%7B+secrets.HOSTILE+%7D%7D")
	f, _ := url.ParseQuery(string(up.last(t).Body))
	if f.Get("token") != hostileValue || f.Get("a") != "1" || len(f) != 2 {
		t.Fatalf("form: %q", up.last(t).Body)
	}
	// Raw body.
	e.send(c, "POST", base+"/r", "text/plain", "key=${{ secrets.TOKEN }}\n")
	if got := up.last(t); string(got.Body) != "key="+tokenValue+"\n" {
		t.Fatalf("raw: %q", got.Body)
	}
	// Look-alikes untouched, no secret needed.
	e.send(c, "POST", base+"/r", "text/plain", "${{ env.HOME }} costs $5")
	if got := up.last(t); string(got.Body) != "${{ env.HOME }} costs $5" {
		t.Fatalf("look-alike: %q", got.Body)
	}
	// Proxy credentials never reach the upstream.
	for _, s := range up.reqs {
		for k := range s.Header {
			if strings.HasPrefix(k, "Proxy-") {
				t.Fatalf("upstream got %s", k)
			}
		}
	}
	// One access row per secret per request.
	if err := e.vault.FlushAudit(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, _ := e.store.ListAudit(context.Background(), storage.AuditQuery{WorkspaceID: e.op.WorkspaceID, EventType: vault.EventSecretAccessed, Limit: 100})
	if len(page.Events) != 8 {
		t.Fatalf("%d access rows, want 8", len(page.Events))
	}
	if !strings.Contains(string(page.Events[0].Input), `"request_id":"prx_`) || !strings.Contains(string(page.Events[0].Input), `"host":"127.0.0.1"`) || page.Events[0].ActorID != e.op.KeyID {
		t.Fatalf("access row: %+v", page.Events[0])
	}
}

// refused checks that the proxy answered itself with status and code, and
// that the upstream got nothing.
func refused(t *testing.T, r result, up *upstream, before, status int, code string) {
	t.Helper()
	if r.status != status || r.header.Get(proxy.HeaderError) != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.status, r.header.Get(proxy.HeaderError), r.body, status, code)
	}
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal([]byte(r.body), &b) != nil || b.Error.Code != code || b.Error.Message == "" {
		t.Fatalf("error body: %s", r.body)
	}
	if up != nil && up.count() != before {
		t.Fatal("the upstream was called")
	}
}

func TestFailsClosed(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	e.secret("CRLF", "ok\r\nX-Injected: yes")
	e.secret("BOUND", tokenValue+"-bound", "api.example.com")
	c := e.client(e.key, nil)
	cases := []struct {
		name, method, url, ctype, body string
		hdr                            []string
		status                         int
		code                           string
	}{
		{"unknown secret in header", "GET", "/x", "", "", []string{"X-Key", "${{ secrets.MISSING }}"}, 422, proxy.CodeSecretNotFound},
		{"unknown secret in body", "POST", "/x", "application/json", `{"a":"${{ secrets.TOKEN }}","b":"${{ secrets.MISSING }}"}`, nil, 422, proxy.CodeSecretNotFound},
		{"unknown secret in query", "GET", "/x?a=${{%20secrets.MISSING%20}}", "", "", nil, 422, proxy.CodeSecretNotFound},
		{"malformed reference", "GET", "/x", "", "", []string{"X-Key", "${{ secrets.lower }}"}, 400, proxy.CodeInvalidReference},
		{"unterminated reference", "POST", "/x", "text/plain", "abc ${{ secrets.TOKEN", nil, 400, proxy.CodeInvalidReference},
		{"reference outside JSON string", "POST", "/x", "application/json", `{"a": ${{ secrets.TOKEN }}}`, nil, 400, proxy.CodeInvalidReference},
		{"header injection", "GET", "/x", "", "", []string{"X-Key", "${{ secrets.CRLF }}"}, 400, proxy.CodeValueRefused},
		{"host binding", "GET", "/x", "", "", []string{"X-Key", "${{ secrets.BOUND }}"}, 403, proxy.CodeHostNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			r := e.send(c, tc.method, up.URL+tc.url, tc.ctype, tc.body, tc.hdr...)
			refused(t, r, up, before, tc.status, tc.code)
			if strings.Contains(r.body, tokenValue) || strings.Contains(r.body, "X-Injected") {
				t.Fatalf("error response holds a value: %s", r.body)
			}
		})
	}
	// A reference in the destination host is refused.
	before := up.count()
	conn, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET http://$%%7B%%7B%%20secrets.TOKEN%%20%%7D%%7D.example.com/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer %s\r\nConnection: close\r\n\r\n", e.key)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	// net/http already refuses such a host (400); either way nothing is sent.
	if res.StatusCode != 400 || up.count() != before {
		t.Fatalf("reference in host: %d %s", res.StatusCode, res.Header.Get(proxy.HeaderError))
	}
	// Denied access is audited.
	e.vault.FlushAudit(context.Background())
	page, _ := e.store.ListAudit(context.Background(), storage.AuditQuery{WorkspaceID: e.op.WorkspaceID, EventType: vault.EventSecretAccessDenied})
	if len(page.Events) != 1 || page.Events[0].ResourceID != "BOUND" {
		t.Fatalf("denied rows: %+v", page.Events)
	}
}

func TestHostBindingAllows(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	// The upstream listens on a random port: an entry without a port
	// means the default ports only.
	e.secret("BOUND", tokenValue, up.Listener.Addr().String())
	r := e.send(e.client(e.key, nil), "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.BOUND }}")
	if r.status != 200 || up.last(t).Header.Get("X-Key") != tokenValue {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestProxyAuth(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	before := up.count()
	r := e.send(e.client("", nil), "GET", up.URL+"/x", "", "")
	refused(t, r, up, before, 407, proxy.CodeProxyAuthRequired)
	if r.header.Get("Proxy-Authenticate") == "" {
		t.Fatal("407 without Proxy-Authenticate")
	}
	r = e.send(e.client("rtr_0000000000000000_nope", nil), "GET", up.URL+"/x", "", "")
	refused(t, r, up, before, 407, proxy.CodeProxyAuthRequired)
	// Bearer works too.
	pu, _ := url.Parse(e.proxy.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	req, _ := http.NewRequest("GET", up.URL+"/x", nil)
	req.Header.Set("Proxy-Authorization", "Bearer "+e.key)
	req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || up.last(t).Header.Get("X-Key") != tokenValue || up.last(t).Header.Get("Proxy-Authorization") != "" {
		t.Fatalf("bearer: %d", res.StatusCode)
	}
	// A revoked key stops working at once.
	rec, key, _ := e.vault.CreateAPIKey(context.Background(), e.op, vault.CreateAPIKeyRequest{Name: "w"})
	if r := e.send(e.client(key, nil), "GET", up.URL+"/x", "", ""); r.status != 200 {
		t.Fatal(r.body)
	}
	if err := e.vault.RevokeAPIKey(context.Background(), e.op, rec.ID); err != nil {
		t.Fatal(err)
	}
	refused(t, e.send(e.client(key, nil), "GET", up.URL+"/x", "", ""), nil, 0, 407, proxy.CodeProxyAuthRequired)
}

func TestSidecarDefaultWorkspace(t *testing.T) {
	var wsID string
	e := newEnv(t, func(o *proxy.Options) { wsID = "pending" })
	_ = wsID
	// Build a second proxy on the same vault with the default workspace.
	p, err := proxy.New(proxy.Options{Vault: e.vault, DefaultWorkspaceID: e.op.WorkspaceID})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveProxy(t, p)
	defer srv.Close()
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	pu, _ := url.Parse(srv.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	req, _ := http.NewRequest("GET", up.URL+"/x", nil)
	req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || up.last(t).Header.Get("X-Key") != tokenValue {
		t.Fatalf("default workspace: %d", res.StatusCode)
	}
	if _, err := proxy.New(proxy.Options{Vault: e.vault, Mode: proxy.ModeGateway, DefaultWorkspaceID: e.op.WorkspaceID}); err == nil {
		t.Fatal("gateway accepted a default workspace")
	}
}

func TestRotationSeenByNextRequest(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	c := e.client(e.key, nil)
	e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}")
	nv := vault.PlaintextString("rotated-value-777")
	if _, err := e.vault.UpdateSecret(context.Background(), e.op, vault.UpdateSecretRequest{Name: "TOKEN", Value: &nv}); err != nil {
		t.Fatal(err)
	}
	e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}")
	if got := up.last(t).Header.Get("X-Key"); got != "rotated-value-777" {
		t.Fatalf("after rotation the upstream got %q", got)
	}
}

func TestResponseScrubbing(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	e.secret("HOSTILE", hostileValue)
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("X-Echo", r.Header.Get("X-Key"))
		w.Header().Set("Location", "/next?t="+url.QueryEscape(r.URL.Query().Get("t")))
		w.WriteHeader(401)
		fmt.Fprintf(w, "invalid token %s; query %s; body %s", r.Header.Get("X-Key"), r.URL.RawQuery, body)
	}
	c := e.client(e.key, nil)
	r := e.send(c, "POST", up.URL+"/x?t=${{%20secrets.HOSTILE%20}}", "text/plain", "raw ${{ secrets.TOKEN }}", "X-Key", "${{ secrets.TOKEN }}")
	if r.status != 401 {
		t.Fatalf("status %d", r.status)
	}
	for _, s := range []string{r.body, r.header.Get("X-Echo"), r.header.Get("Location")} {
		if strings.Contains(s, tokenValue) || strings.Contains(s, url.QueryEscape(hostileValue)) {
			t.Fatalf("response holds a value: %q", s)
		}
	}
	if !strings.Contains(r.body, "invalid token ${{ secrets.TOKEN }}") || r.header.Get("X-Echo") != "${{ secrets.TOKEN }}" || !strings.Contains(r.body, "query t=${{ secrets.HOSTILE }}") {
		t.Fatalf("scrubbed response: %q %v", r.body, r.header)
	}
	// A large streamed response is scrubbed too.
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "text/plain")
		for range 20000 {
			fmt.Fprintf(w, "echo %s ", r.Header.Get("X-Key"))
		}
	}
	r = e.send(c, "GET", up.URL+"/big", "", "", "X-Key", "${{ secrets.TOKEN }}")
	if strings.Contains(r.body, tokenValue) || strings.Count(r.body, "${{ secrets.TOKEN }}") != 20000 {
		t.Fatalf("large response not scrubbed (%d bytes)", len(r.body))
	}
}

// TestMITM: HTTPS through CONNECT, the client trusting the Rotor CA, the
// proxy verifying the upstream against its own roots.
func TestMITM(t *testing.T) {
	caDir := t.TempDir()
	certPath, keyPath, err := proxy.InitCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(keyPath); st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v", st.Mode().Perm())
	}
	if _, _, err := proxy.InitCA(caDir); err == nil {
		t.Fatal("InitCA overwrote an existing CA")
	}
	ca, err := proxy.LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t, true)
	upRoots := x509.NewCertPool()
	upRoots.AddCert(up.Certificate())
	e := newEnv(t, func(o *proxy.Options) { o.CA = ca; o.UpstreamRoots = upRoots })
	e.secret("TOKEN", tokenValue)
	clientRoots := x509.NewCertPool()
	pemData, _ := os.ReadFile(certPath)
	clientRoots.AppendCertsFromPEM(pemData)
	c := e.client(e.key, clientRoots)
	for range 3 { // several requests on one intercepted connection
		r := e.send(c, "POST", up.URL+"/s?token=${{%20secrets.TOKEN%20}}", "application/json", `{"t":"${{ secrets.TOKEN }}"}`, "Authorization", "Bearer ${{ secrets.TOKEN }}")
		if r.status != 200 {
			t.Fatalf("mitm: %d %s", r.status, r.body)
		}
		got := up.last(t)
		if got.Header.Get("Authorization") != "Bearer "+tokenValue || string(got.Body) != `{"t":"`+tokenValue+`"}` || got.RawQuery != "token="+tokenValue {
			t.Fatalf("mitm upstream saw %+v", got)
		}
	}
	// Fail closed inside the tunnel too.
	before := up.count()
	r := e.send(c, "GET", up.URL+"/s", "", "", "X-Key", "${{ secrets.MISSING }}")
	refused(t, r, up, before, 422, proxy.CodeSecretNotFound)
	// Without the right credentials, CONNECT is refused.
	bad := e.client("rtr_0000000000000000_nope", clientRoots)
	if _, err := bad.Get(up.URL + "/s"); err == nil {
		t.Fatal("CONNECT with a bad key succeeded")
	}
	// An upstream the proxy does not trust is refused (upstream TLS is verified).
	otherDir := t.TempDir()
	oc, ok, _ := proxy.InitCA(otherDir)
	otherCert, err := tls.LoadX509KeyPair(oc, ok)
	if err != nil {
		t.Fatal(err)
	}
	other := &upstream{}
	other.Server = httptest.NewUnstartedServer(http.HandlerFunc(other.handler))
	other.TLS = &tls.Config{Certificates: []tls.Certificate{otherCert}}
	other.StartTLS()
	defer other.Close()
	r = e.send(c, "GET", other.URL+"/s", "", "")
	if r.status != 502 || other.count() != 0 {
		t.Fatalf("unverified upstream: %d %s", r.status, r.body)
	}
	if !strings.Contains(e.logs.String(), `"mitm":true`) {
		t.Fatal("no mitm log line")
	}
}

// TestAbsoluteFormHTTPS: an https:// request sent to the proxy in clear
// (the dispatcher's cheap path): the proxy does TLS upstream.
func TestAbsoluteFormHTTPS(t *testing.T) {
	up := newUpstream(t, true)
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	e := newEnv(t, func(o *proxy.Options) { o.UpstreamRoots = roots })
	e.secret("TOKEN", tokenValue)
	conn, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest("GET", up.URL+"/abs?t=${{%20secrets.TOKEN%20}}", nil)
	req.Header.Set("Proxy-Authorization", "Bearer "+e.key)
	if err := req.WriteProxy(conn); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || up.last(t).RawQuery != "t="+tokenValue {
		t.Fatalf("absolute-form https: %d %q", res.StatusCode, up.last(t).RawQuery)
	}
}

func TestConnectTunnelWithoutCA(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, true)
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	r := e.send(e.client(e.key, roots), "GET", up.URL+"/t", "", "", "X-Key", "${{ secrets.TOKEN }}")
	// Tunneled untouched: TLS is end to end, so the template arrives as is.
	if r.status != 200 || up.last(t).Header.Get("X-Key") != "${{ secrets.TOKEN }}" {
		t.Fatalf("tunnel: %d", r.status)
	}
	if !strings.Contains(e.logs.String(), `"outcome":"tunneled"`) {
		t.Fatal("tunnel not logged")
	}
}

func TestSSRFGuard(t *testing.T) {
	up := newUpstream(t, false)
	e := newEnv(t, func(o *proxy.Options) { o.Mode = proxy.ModeGateway; o.SSRFGuard = true })
	before := up.count()
	r := e.send(e.client(e.key, nil), "GET", up.URL+"/x", "", "")
	refused(t, r, up, before, 403, proxy.CodeDestinationBlocked)
	// A hostname that resolves to loopback is blocked the same way.
	_, port, _ := net.SplitHostPort(up.Listener.Addr().String())
	r = e.send(e.client(e.key, nil), "GET", "http://localhost:"+port+"/x", "", "")
	refused(t, r, up, before, 403, proxy.CodeDestinationBlocked)
	// CONNECT to a blocked address fails too.
	if _, err := e.client(e.key, nil).Get("https://127.0.0.1:" + port + "/"); err == nil {
		t.Fatal("CONNECT to loopback succeeded")
	}
	// An allow range lets internal callbacks through.
	e2 := newEnv(t, func(o *proxy.Options) {
		o.Mode = proxy.ModeGateway
		o.SSRFGuard = true
		o.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	if r := e2.send(e2.client(e2.key, nil), "GET", up.URL+"/x", "", ""); r.status != 200 {
		t.Fatalf("allowed range: %d %s", r.status, r.body)
	}
}

// TestLargeBodyStreams: a body over the buffer limit streams chunked, with
// references across read boundaries resolved.
func TestLargeBodyStreams(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	var in, want bytes.Buffer
	for i := 0; in.Len() < 3*proxy.BufferLimit; i++ {
		fmt.Fprintf(&in, "line %d ${{ secrets.TOKEN }} %s\n", i, strings.Repeat("x", i%97))
		fmt.Fprintf(&want, "line %d %s %s\n", i, tokenValue, strings.Repeat("x", i%97))
	}
	r := e.send(e.client(e.key, nil), "POST", up.URL+"/big", "text/plain", in.String())
	got := up.last(t)
	if r.status != 200 || !bytes.Equal(got.Body, want.Bytes()) {
		t.Fatalf("large body: status %d, %d bytes, want %d", r.status, len(got.Body), want.Len())
	}
	if got.ContentLength != -1 || len(got.TransferEncoding) == 0 {
		t.Fatalf("large body should stream chunked: cl %d te %v", got.ContentLength, got.TransferEncoding)
	}
	// A failure past the buffer aborts the upstream request: the upstream
	// never gets a complete request.
	bad := in.String() + "${{ secrets.MISSING }}"
	before := up.count()
	r = e.send(e.client(e.key, nil), "POST", up.URL+"/big", "text/plain", bad)
	if r.status != 422 || r.header.Get(proxy.HeaderError) != proxy.CodeSecretNotFound {
		t.Fatalf("late failure: %d %s", r.status, r.body)
	}
	if up.count() != before {
		if last := up.last(t); bytes.HasSuffix(last.Body, []byte("${{ secrets.MISSING }}")) || len(last.Body) >= len(bad) {
			t.Fatal("upstream received a complete request with the template")
		}
	}
}

func TestLogLine(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	e.send(e.client(e.key, nil), "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}")
	e.send(e.client(e.key, nil), "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.NOPE }}")
	var lines []map[string]any
	for _, l := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == proxy.LogMsgRequest {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d summary lines for 2 requests:\n%s", len(lines), e.logs.String())
	}
	for _, f := range []string{proxy.LogFieldRequestID, proxy.LogFieldMethod, proxy.LogFieldHost, proxy.LogFieldStatus, proxy.LogFieldDurationMS,
		proxy.LogFieldOutcome, proxy.LogFieldSecrets, proxy.LogFieldActorID, proxy.LogFieldWorkspace, proxy.LogFieldBytesOut, proxy.LogFieldTLS} {
		for _, l := range lines {
			if _, ok := l[f]; !ok {
				t.Errorf("line lacks %q: %v", f, l)
			}
		}
	}
	if lines[0][proxy.LogFieldOutcome] != proxy.OutcomeResolved || fmt.Sprint(lines[0][proxy.LogFieldSecrets]) != "[TOKEN]" ||
		lines[1][proxy.LogFieldOutcome] != proxy.OutcomeRefused || lines[1][proxy.LogFieldErrorCode] != proxy.CodeSecretNotFound {
		t.Fatalf("lines: %v", lines)
	}
}

// TestUpstreamConnectionReuse: requests reuse pooled upstream connections
// (Go's default pool of 2 idle connections per host would not, under load).
func TestUpstreamConnectionReuse(t *testing.T) {
	e := newEnv(t)
	var conns sync.Map
	up := &upstream{}
	up.Server = httptest.NewUnstartedServer(http.HandlerFunc(up.handler))
	up.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Store(c.RemoteAddr().String(), true)
		}
	}
	up.Start()
	defer up.Close()
	e.secret("TOKEN", tokenValue)
	c := e.client(e.key, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if r := e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.TOKEN }}"); r.status != 200 {
					t.Error(r.status)
					return
				}
			}
		})
	}
	wg.Wait()
	n := 0
	conns.Range(func(any, any) bool { n++; return true })
	if n > 16 {
		t.Fatalf("400 requests from 8 clients opened %d upstream connections", n)
	}
	// The metric, from a dial counter (issue 15: no per-request httptrace),
	// agrees with what the upstream saw.
	got := map[string]float64{}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "rotor_proxy_upstream_connections_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["false"] != float64(n) || got["true"]+got["false"] != 400 {
		t.Fatalf("upstream_connections_total %v; the upstream saw %d connections for 400 requests", got, n)
	}
}

// mitmEnv is an env intercepting HTTPS with a fresh CA, and a client that
// trusts it, for an upstream TLS server.
func mitmEnv(t *testing.T, up *upstream) (*env, *x509.CertPool) {
	t.Helper()
	certPath, keyPath, err := proxy.InitCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := proxy.LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	upRoots := x509.NewCertPool()
	upRoots.AddCert(up.Certificate())
	e := newEnv(t, func(o *proxy.Options) { o.CA = ca; o.UpstreamRoots = upRoots })
	clientRoots := x509.NewCertPool()
	pemData, _ := os.ReadFile(certPath)
	clientRoots.AppendCertsFromPEM(pemData)
	return e, clientRoots
}

// TestRevokedKeyStopsOpenTunnel: requests inside an intercepted CONNECT
// tunnel are re-checked, so revoking the key stops a tunnel already open.
func TestRevokedKeyStopsOpenTunnel(t *testing.T) {
	up := newUpstream(t, true)
	e, roots := mitmEnv(t, up)
	rec, key, err := e.vault.CreateAPIKey(context.Background(), e.op, vault.CreateAPIKeyRequest{Name: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(key, roots)
	if r := e.send(c, "GET", up.URL+"/a", "", ""); r.status != 200 {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	if err := e.vault.RevokeAPIKey(context.Background(), e.op, rec.ID); err != nil {
		t.Fatal(err)
	}
	before := up.count()
	refused(t, e.send(c, "GET", up.URL+"/b", "", ""), up, before, 407, proxy.CodeProxyAuthRequired)
}

// TestDrainWaitsForInterceptedRequests: Drain waits for requests inside
// CONNECT tunnels, which http.Server.Shutdown does not see.
func TestDrainWaitsForInterceptedRequests(t *testing.T) {
	up := newUpstream(t, true)
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte("late"))
	}
	e, roots := mitmEnv(t, up)
	p, ok := e.proxy.Config.Handler.(*proxy.Proxy)
	if !ok {
		t.Fatal("handler is not the proxy")
	}
	done := make(chan result, 1)
	go func() { done <- e.send(e.client(e.key, roots), "GET", up.URL+"/slow", "", "") }()
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Drain(ctx); err == nil {
		t.Fatal("Drain returned with a request in flight")
	}
	close(release)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := p.Drain(ctx2); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.status != 200 || r.body != "late" {
		t.Fatalf("in-flight request: %d %q", r.status, r.body)
	}
	// Refused requests do not leak in-flight counts.
	e.send(e.client(e.key, roots), "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.NOPE }}")
	ctx3, cancel3 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel3()
	if err := p.Drain(ctx3); err != nil {
		t.Fatal(err)
	}
}

// TestGatewayRequiresAllowedHosts: with RequireAllowedHosts, a secret
// without allowed_hosts is refused (and audited), a bound one resolves.
func TestGatewayRequiresAllowedHosts(t *testing.T) {
	e := newEnv(t, func(o *proxy.Options) {
		o.Mode = proxy.ModeGateway
		o.RequireAllowedHosts = true
		o.SSRFGuard = true
		o.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	up := newUpstream(t, false)
	e.secret("UNBOUND", tokenValue)
	e.secret("BOUND", tokenValue+"-b", "http://"+up.Listener.Addr().String())
	c := e.client(e.key, nil)
	before := up.count()
	refused(t, e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.UNBOUND }}"), up, before, 403, proxy.CodeHostNotAllowed)
	if r := e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets.BOUND }}"); r.status != 200 || up.last(t).Header.Get("X-Key") != tokenValue+"-b" {
		t.Fatalf("bound secret: %d %s", r.status, r.body)
	}
	e.vault.FlushAudit(context.Background())
	page, _ := e.store.ListAudit(context.Background(), storage.AuditQuery{WorkspaceID: e.op.WorkspaceID, EventType: vault.EventSecretAccessDenied})
	if len(page.Events) != 1 || !strings.Contains(string(page.Events[0].Output), "allowed_hosts_required") {
		t.Fatalf("denied rows: %+v", page.Events)
	}
}

// TestHTTPSProxyListener: the proxy itself served over TLS (a gateway
// reached across a network), used as an https:// proxy.
func TestHTTPSProxyListener(t *testing.T) {
	ve := vaulttest.New(t)
	ve.Secret(t, "TOKEN", tokenValue)
	p, err := proxy.New(proxy.Options{Vault: ve.Vault, Logger: ve.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(p) // TLS on the proxy listener
	defer srv.Close()
	up := newUpstream(t, false)
	pu, _ := url.Parse(srv.URL)
	pu.User = url.UserPassword("w", ve.Key)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, _ := http.NewRequest("GET", up.URL+"/x", nil)
	req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || up.last(t).Header.Get("X-Key") != tokenValue {
		t.Fatalf("https proxy: %d", res.StatusCode)
	}
}

// TestInternalHeadersIgnoredForWorkers: the dispatcher's headers do nothing
// for anyone without its token: no callback secret, no signature, and they
// never reach the upstream.
func TestInternalHeadersIgnoredForWorkers(t *testing.T) {
	e := newEnv(t, func(o *proxy.Options) { o.InternalToken = "the-internal-token" })
	up := newUpstream(t, false)
	r := e.send(e.client(e.key, nil), "POST", up.URL+"/x", "application/json", `{}`,
		proxy.HeaderInternalAuth, "callback", proxy.HeaderInternalSign, "standard-webhooks",
		proxy.HeaderInternalWorkspace, e.op.WorkspaceID, "webhook-id", "w", "webhook-timestamp", "1")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	got := up.last(t)
	if got.Header.Get("Authorization") != "" || got.Header.Get("webhook-signature") != "" {
		t.Fatalf("a worker obtained dispatch credentials: %v", got.Header)
	}
	for k := range got.Header {
		if strings.HasPrefix(k, "Rotor-Internal") {
			t.Fatalf("upstream got %s", k)
		}
	}
	// A wrong internal token is just a wrong key.
	pu, _ := url.Parse(e.proxy.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	req, _ := http.NewRequest("GET", up.URL+"/x", nil)
	req.Header.Set("Proxy-Authorization", "Bearer not-the-internal-token")
	req.Header.Set(proxy.HeaderInternalWorkspace, e.op.WorkspaceID)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 407 {
		t.Fatalf("wrong internal token: %d", res.StatusCode)
	}
}

// TestLogLineListsStreamedSecrets: a streamed body (over BufferLimit) that
// resolves 10 secrets in its first MiB and 10 more after it logs all 20
// (issue 15: the line listed only those seen before streaming started).
// The padding is well past BufferLimit: the rewriter reads ahead of what
// it has emitted.
func TestLogLineListsStreamedSecrets(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	var body strings.Builder
	var want []string
	for i := range 20 {
		name := fmt.Sprintf("S%02d", i)
		e.secret(name, fmt.Sprintf("value-%02d-%s", i, tokenValue))
		want = append(want, name)
		if i == 10 {
			for body.Len() <= proxy.BufferLimit+256<<10 {
				body.WriteString(strings.Repeat("x", 1023) + "\n")
			}
		}
		body.WriteString("${{ secrets." + name + " }}\n")
	}
	r := e.send(e.client(e.key, nil), "POST", up.URL+"/big", "text/plain", body.String())
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var line map[string]any
	for _, l := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == proxy.LogMsgRequest {
			line = m
		}
	}
	if got := fmt.Sprint(line[proxy.LogFieldSecrets]); got != fmt.Sprint(want) {
		t.Fatalf("log line lists %s, want %s", got, want)
	}
}

// TestStreamedSecretScrubbed: a secret first resolved in the streamed part
// of a large body (past BufferLimit, after the scrubber was built) and
// echoed by the upstream reaches the client as the reference, with or
// without a secret resolved before streaming began.
func TestStreamedSecretScrubbed(t *testing.T) {
	for _, early := range []bool{true, false} {
		t.Run(fmt.Sprint("early=", early), func(t *testing.T) {
			e := newEnv(t)
			const late = "late-value-0123456789"
			e.secret("EARLY", tokenValue)
			e.secret("LATE", late)
			echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				_, _ = w.Write(b[max(0, len(b)-64):])
			}))
			defer echo.Close()
			var body strings.Builder
			if early {
				body.WriteString("${{ secrets.EARLY }}\n")
			}
			for body.Len() <= proxy.BufferLimit+256<<10 {
				body.WriteString(strings.Repeat("x", 1023) + "\n")
			}
			body.WriteString("${{ secrets.LATE }}\n")
			r := e.send(e.client(e.key, nil), "POST", echo.URL+"/e", "text/plain", body.String())
			if r.status != 200 || strings.Contains(r.body, late) || !strings.Contains(r.body, "${{ secrets.LATE }}") {
				t.Fatalf("status %d, body %q: the late secret's echo was not scrubbed", r.status, r.body)
			}
		})
	}
}

// TestRevokedKeyStopsKeepAliveConnection: a keep-alive connection that
// authenticated once is still refused the request after its key is
// revoked, and a request on it with another key is that key's (the lane
// remembers the last Proxy-Authorization per connection: authcache.go).
func TestRevokedKeyStopsKeepAliveConnection(t *testing.T) {
	up := newUpstream(t, false)
	e := newEnv(t)
	e.secret("TOKEN", tokenValue)
	ctx := context.Background()
	rec, key, err := e.vault.CreateAPIKey(ctx, e.op, vault.CreateAPIKeyRequest{Name: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	other, bad, err := e.vault.CreateAPIKey(ctx, e.op, vault.CreateAPIKeyRequest{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(e.proxy.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	send := func(key string) (int, string) {
		t.Helper()
		req := "GET " + up.URL + "/a?t=${{%20secrets.TOKEN%20}} HTTP/1.1\r\nHost: " + strings.TrimPrefix(up.URL, "http://") +
			"\r\nProxy-Authorization: Bearer " + key + "\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, res.Header.Get(proxy.HeaderError) + string(b)
	}
	for range 2 {
		if st, body := send(key); st != 200 {
			t.Fatalf("before the revocation: %d %s", st, body)
		}
	}
	if err := e.vault.RevokeAPIKey(ctx, e.op, rec.ID); err != nil {
		t.Fatal(err)
	}
	if st, body := send(key); st != http.StatusProxyAuthRequired {
		t.Fatalf("revoked key on a connection that authenticated it: %d %s", st, body)
	}
	// The same connection, a valid key, then a revoked one again.
	if st, body := send(bad); st != 200 {
		t.Fatalf("another key on the same connection: %d %s", st, body)
	}
	if st, _ := send(key); st != http.StatusProxyAuthRequired {
		t.Fatalf("revoked key after another key: %d", st)
	}
	// Every resolution names the key that sent it.
	if err := e.vault.FlushAudit(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := e.store.ListAudit(ctx, storage.AuditQuery{WorkspaceID: e.op.WorkspaceID, EventType: vault.EventSecretAccessed, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	byActor := map[string]int{}
	for _, r := range rows.Events {
		byActor[r.ActorID]++
	}
	if len(rows.Events) != 3 || byActor[rec.ID] != 2 || byActor[other.ID] != 1 {
		t.Fatalf("access rows by actor: %v (%d rows), want 2 for %s and 1 for %s", byActor, len(rows.Events), rec.ID, other.ID)
	}
}
