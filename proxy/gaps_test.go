package proxy_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

// An IPv6 address with a zone is the same address to the SSRF guard: the
// zone cannot carry a link-local or loopback destination past the range
// check (a zoned address matches no prefix unless the zone is stripped).
func TestSSRFGuardIgnoresIPv6Zone(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	up := &upstream{}
	up.Server = httptest.NewUnstartedServer(http.HandlerFunc(up.handler))
	up.Listener.Close()
	up.Listener = l
	up.Start()
	t.Cleanup(up.Close)
	_, port, _ := net.SplitHostPort(l.Addr().String())

	e := newEnv(t, func(o *proxy.Options) { o.Mode = proxy.ModeGateway; o.SSRFGuard = true })
	c := e.client(e.key, nil)
	before := up.count()
	for _, host := range []string{"[::1%25lo]", "[::1%251]", "[fe80::1%25lo]", "[fe80::a9fe:a9fe%25eth0]", "[::ffff:127.0.0.1%25lo]"} {
		r := e.send(c, "GET", "http://"+host+":"+port+"/x", "", "")
		refused(t, r, up, before, 403, proxy.CodeDestinationBlocked)
	}
	// A CONNECT authority is handed to the dialer as written, zone and
	// all (the plain-HTTP path above loses the zone before the dialer):
	// the tunnel must not open, and nothing reaches the upstream through it.
	for _, authority := range []string{"[::1%25lo]:" + port, "[::1%lo]:" + port, "[::1%251]:" + port} {
		status := rawConnect(t, e, authority, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if status == http.StatusOK || up.count() != before {
			t.Fatalf("CONNECT %s: status %d, upstream calls %d -> %d", authority, status, before, up.count())
		}
	}
}

// rawConnect sends CONNECT authority with the env's key on a raw
// connection (so the authority is exactly as written); if the tunnel
// opens, it writes next through it and reads one response. It returns the
// CONNECT response's status.
func rawConnect(t *testing.T, e *env, authority, next string) int {
	t.Helper()
	conn, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\n\r\n", authority, authority, e.key)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return 0 // the proxy hung up: no tunnel
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		io.WriteString(conn, next)
		if r2, err := http.ReadResponse(br, nil); err == nil {
			r2.Body.Close()
		}
	}
	return res.StatusCode
}

// Without a dispatch token configured, no credential is the dispatcher's:
// an empty Bearer token or Basic password with Rotor-Internal-Workspace
// must not make a client the dispatcher of any workspace (which would get
// it the workspace's callback secret).
func TestEmptyCredentialIsNotTheDispatcher(t *testing.T) {
	e := newEnv(t) // no InternalToken
	up := newUpstream(t, false)
	pu, _ := url.Parse(e.proxy.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	for _, auth := range []string{
		"Bearer ", "Bearer", "bearer \t",
		"Basic " + base64.StdEncoding.EncodeToString([]byte("rotor:")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(":")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("")),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("dispatcher")),
	} {
		before := up.count()
		req, _ := http.NewRequest("GET", up.URL+"/x", nil)
		req.Header.Set("Proxy-Authorization", auth)
		req.Header.Set(proxy.HeaderInternalWorkspace, e.op.WorkspaceID)
		req.Header.Set(proxy.HeaderInternalAuth, "callback")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusProxyAuthRequired || up.count() != before {
			t.Fatalf("Proxy-Authorization %q: %d, upstream calls %d -> %d", auth, res.StatusCode, before, up.count())
		}
	}
}

// The unauthenticated default workspace (sidecar mode) is served to
// loopback clients only. The non-loopback client is simulated through
// ServeHTTP with its remote address set (no packet leaves loopback).
func TestDefaultWorkspaceLoopbackOnly(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	p, err := proxy.New(proxy.Options{Vault: e.vault, DefaultWorkspaceID: e.op.WorkspaceID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.CloseIdleConnections)
	for _, tc := range []struct {
		remote string
		status int
	}{
		{"192.0.2.10:40000", http.StatusProxyAuthRequired},
		{"[2001:db8::10]:40000", http.StatusProxyAuthRequired},
		{"[::ffff:192.0.2.10]:40000", http.StatusProxyAuthRequired},
		{"10.0.0.7:40000", http.StatusProxyAuthRequired},
		{"not-an-address", http.StatusProxyAuthRequired},
		{"127.0.0.1:40000", http.StatusOK},
		{"[::1]:40000", http.StatusOK},
		{"[::ffff:127.0.0.1]:40000", http.StatusOK},
	} {
		before := up.count()
		req := httptest.NewRequest("GET", up.URL+"/x", nil)
		req.RemoteAddr = tc.remote
		req.Header.Set("X-Key", "${{ secrets.TOKEN }}")
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Fatalf("client %s: %d %s, want %d", tc.remote, rec.Code, rec.Body.String(), tc.status)
		}
		reached := up.count() != before
		if reached != (tc.status == http.StatusOK) {
			t.Fatalf("client %s: upstream reached = %v", tc.remote, reached)
		}
		if reached && up.last(t).Header.Get("X-Key") != tokenValue {
			t.Fatalf("client %s: value not in place", tc.remote)
		}
	}
}
