package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

// engineProxies serves two proxies on one vault: net/http alone (std) and
// the lane, so a test can send the same bytes to both.
func engineProxies(t *testing.T, e *env) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, engine := range []string{proxy.EngineStd, proxy.EngineLane} {
		p, err := proxy.New(proxy.Options{Vault: e.vault, Logger: e.ve.Logger, Engine: engine})
		if err != nil {
			t.Fatal(err)
		}
		var addr string
		if engine == proxy.EngineStd {
			srv := httptest.NewServer(p)
			t.Cleanup(srv.Close)
			addr = srv.Listener.Addr().String()
		} else {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ls := p.NewLaneServer(&http.Server{ReadHeaderTimeout: 5 * time.Second})
			done := make(chan struct{})
			go func() { defer close(done); _ = ls.Serve(ln) }()
			t.Cleanup(func() { ls.Close(); <-done })
			addr = ln.Addr().String()
		}
		t.Cleanup(p.CloseIdleConnections)
		out[engine] = addr
	}
	return out
}

// rawExchange writes raw to addr and reads every response until the
// connection ends: the statuses and error codes, in order.
func rawExchange(t *testing.T, addr, raw string) []string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Long enough for any answer; a case that leaves the connection open
	// (a short body) waits this out on both engines.
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var got []string
	for range 10 {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got = append(got, fmt.Sprintf("%d %s %q", res.StatusCode, res.Header.Get(proxy.HeaderError), body))
	}
	return got
}

// TestLaneSmugglingSameAsStd sends request-smuggling shapes through the
// real listeners of both engines: each must give the same responses, and
// the upstream must receive the same requests (none smuggled).
func TestLaneSmugglingSameAsStd(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	addrs := engineProxies(t, e)
	host := up.Listener.Addr().String()
	start := "POST http://" + host + "/a HTTP/1.1\r\nHost: " + host + "\r\nProxy-Authorization: Bearer " + e.key + "\r\nX-Key: ${{ secrets.TOKEN }}\r\n"
	// Each case ends with a request that shows where the proxy thinks the
	// next request starts.
	tail := "GET http://" + host + "/tail HTTP/1.1\r\nHost: " + host + "\r\nProxy-Authorization: Bearer " + e.key + "\r\nConnection: close\r\n\r\n"
	smuggled := "GET http://" + host + "/smuggled HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
	cases := map[string]string{
		"plain keep-alive":      start + "Content-Length: 5\r\n\r\nhello" + tail,
		"chunked":               start + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + tail,
		"CL.TE":                 start + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX" + tail,
		"TE.CL":                 start + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggled + "\r\n0\r\n\r\n" + tail,
		"duplicate CL":          start + "Content-Length: 5\r\nContent-Length: 50\r\n\r\nhello" + tail,
		"CL list":               start + "Content-Length: 5, 5\r\n\r\nhello" + tail,
		"TE chunked, identity":  start + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + tail,
		"TE twice":              start + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + tail,
		"TE xchunked":           start + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + tail,
		"TE space before colon": start + "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello" + tail,
		"bare LF":               strings.ReplaceAll(start+"Content-Length: 5\r\n\r\nhello", "\r\n", "\n") + tail,
		"NUL in value":          start + "X-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello" + tail,
		"CR in value":           start + "X-A: a\rb\r\nContent-Length: 5\r\n\r\nhello" + tail,
		"obs-fold":              start + "X-A: a\r\n b\r\nContent-Length: 5\r\n\r\nhello" + tail,
		"oversize chunk size":   start + "Transfer-Encoding: chunked\r\n\r\n" + strings.Repeat("0", 5000) + "5\r\nhello\r\n0\r\n\r\n" + tail,
		"chunk size overflow":   start + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n" + tail,
		"chunk bare LF":         start + "Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n" + tail,
		"expect":                start + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello" + tail,
		"HTTP/1.0":              strings.Replace(start, "HTTP/1.1", "HTTP/1.0", 1) + "Content-Length: 5\r\n\r\nhello" + tail,
		"two hosts":             start + "Host: evil.example\r\nContent-Length: 5\r\n\r\nhello" + tail,
		"short body":            start + "Content-Length: 50\r\n\r\nhello",
		"pipelined":             start + "Content-Length: 5\r\n\r\nhello" + start + "Content-Length: 5\r\n\r\nworld" + tail,
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			got := map[string][]string{}
			sent := map[string][]string{}
			for engine, addr := range addrs {
				before := up.count()
				got[engine] = rawExchange(t, addr, raw)
				up.mu.Lock()
				for _, s := range up.reqs[before:] {
					sent[engine] = append(sent[engine], s.Method+" "+s.Path+" "+string(s.Body))
				}
				up.mu.Unlock()
			}
			if strings.Join(got["std"], "\n") != strings.Join(got["lane"], "\n") {
				t.Fatalf("responses differ:\nstd  %q\nlane %q", got["std"], got["lane"])
			}
			if strings.Join(sent["std"], "\n") != strings.Join(sent["lane"], "\n") {
				t.Fatalf("upstream received different requests:\nstd  %q\nlane %q", sent["std"], sent["lane"])
			}
			for _, s := range sent["lane"] {
				if strings.Contains(s, "smuggled") {
					t.Fatalf("a smuggled request reached the upstream: %q", sent["lane"])
				}
			}
		})
	}
}

// TestLaneChunkedTrailerRefused: the lane does not take trailer fields in
// a request body (net/http would merge them into Request.Trailer): the
// request is refused and the upstream receives nothing.
func TestLaneChunkedTrailerRefused(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	addrs := engineProxies(t, e)
	host := up.Listener.Addr().String()
	raw := "POST http://" + host + "/a HTTP/1.1\r\nHost: " + host + "\r\nProxy-Authorization: Bearer " + e.key +
		"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
	got := rawExchange(t, addrs[proxy.EngineLane], raw)
	if len(got) != 1 || !strings.HasPrefix(got[0], "400 "+proxy.CodeBadRequestBody) || up.count() != 0 {
		t.Fatalf("got %q, upstream saw %d", got, up.count())
	}
}

// TestLaneHeaderInjection: a secret whose value would split the upstream
// request (CR LF) is refused in a header, never written.
func TestLaneHeaderInjection(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	e.secret("SPLIT", "v\r\nX-Injected: 1")
	e.secret("NUL", "v\x00w")
	c := e.client(e.key, nil)
	for _, n := range []string{"SPLIT", "NUL"} {
		r := e.send(c, "GET", up.URL+"/x", "", "", "X-Key", "${{ secrets."+n+" }}")
		if r.status < 400 || up.count() != 0 {
			t.Fatalf("%s: %d %s; upstream saw %d", n, r.status, r.body, up.count())
		}
		assertNoValue(t, "response", r.body, "X-Injected", "v\x00w")
	}
}

// TestLaneRetriesClosedIdle: an upstream that closes every connection
// after one response, without saying so: the lane client sees the close
// before reuse (or retries a bodiless GET), so every request succeeds.
func TestLaneRetriesClosedIdle(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	var mu sync.Mutex
	conns := 0
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			})
		}
	})
	c := e.client(e.key, nil)
	base := "http://" + ln.Addr().String()
	for i := range 6 {
		method, body := "GET", ""
		if i%2 == 1 {
			method, body = "POST", "data"
		}
		if r := e.send(c, method, base+"/x", "text/plain", body); r.status != 200 || r.body != "ok" {
			t.Fatalf("request %d (%s): %d %s", i, method, r.status, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if conns < 6 {
		t.Fatalf("%d upstream connections for 6 requests on one-shot connections", conns)
	}
}

// TestLaneShutdownDrains: Shutdown closes idle connections at once and
// lets a request in flight finish.
func TestLaneShutdownDrains(t *testing.T) {
	e := newEnv(t)
	up := newUpstream(t, false)
	release := make(chan struct{})
	up.respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	}
	p, err := proxy.New(proxy.Options{Vault: e.vault, Engine: proxy.EngineLane})
	if err != nil {
		t.Fatal(err)
	}
	defer p.CloseIdleConnections()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := p.NewLaneServer(&http.Server{})
	served := make(chan error, 1)
	go func() { served <- ls.Serve(ln) }()
	// An idle keep-alive connection.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	host := up.Listener.Addr().String()
	auth := "Proxy-Authorization: Bearer " + e.key + "\r\n"
	if got := rawRoundTrip(t, idle, "GET http://"+host+"/x HTTP/1.1\r\nHost: "+host+"\r\n"+auth+"\r\n"); got != 200 {
		t.Fatalf("idle conn first request: %d", got)
	}
	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, _ = io.WriteString(busy, "GET http://"+host+"/slow HTTP/1.1\r\nHost: "+host+"\r\n"+auth+"\r\n")
	for up.count() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ls.Shutdown(ctx)
	}()
	// The idle connection is closed by the shutdown.
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatalf("idle connection still open after Shutdown (read %d)", n)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	res, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(b) != "done" || !res.Close {
		t.Fatalf("in-flight request: %d %q close=%v", res.StatusCode, b, res.Close)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
}

func rawRoundTrip(t *testing.T, c net.Conn, raw string) int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return res.StatusCode
}

func TestEngineOption(t *testing.T) {
	e := newEnv(t)
	if _, err := proxy.New(proxy.Options{Vault: e.vault, Engine: "fast"}); err == nil {
		t.Fatal("an unknown engine was accepted")
	}
}

// TestLaneFullDuplexEcho: an upstream that streams its answer while it
// reads a large body (more than the socket buffers hold) is not
// deadlocked: streamed bodies go through the transport, which writes and
// reads on separate goroutines.
func TestLaneFullDuplexEcho(t *testing.T) {
	e := newEnv(t)
	e.secret("TOKEN", tokenValue)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, r.Body)
	}))
	defer up.Close()
	body := strings.Repeat("x", 3<<20) + "${{ secrets.TOKEN }}"
	c := e.client(e.key, nil)
	done := make(chan result, 1)
	go func() { done <- e.send(c, "POST", up.URL+"/echo", "text/plain", body) }()
	select {
	case r := <-done:
		// The echo comes back while the body streams, often before the
		// reference in its tail is resolved: it is scrubbed all the same
		// (lateScrubReader; before it, the value came back in clear).
		assertNoValue(t, "echo", r.body, tokenValue)
		full := 3<<20 + len("${{ secrets.TOKEN }}")
		if testEngine() == proxy.EngineStd {
			// net/http's HTTP/1 server ends the request body once the
			// response starts: the echo is cut short (not full duplex).
			full = len(r.body)
		}
		if r.status != 200 || len(r.body) != full {
			t.Fatalf("%d, %d bytes", r.status, len(r.body))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("deadlocked on a full-duplex upstream")
	}
}

// TestLaneTunnelFallback: a request inside an intercepted tunnel that the
// lane does not read itself (Expect: 100-continue) is served by the
// fallback with the tunnel's session: resolved, sent, and echoed back
// scrubbed, like every other request in the tunnel.
func TestLaneTunnelFallback(t *testing.T) {
	up := newUpstream(t, true)
	e, roots := mitmEnv(t, up)
	e.secret("TOKEN", tokenValue)
	c := e.client(e.key, roots)
	c.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
	for _, expect := range []string{"", "100-continue"} {
		hdr := []string{"X-Key", "${{ secrets.TOKEN }}"}
		if expect != "" {
			hdr = append(hdr, "Expect", expect)
		}
		r := e.send(c, "POST", up.URL+"/fb", "text/plain", "body ${{ secrets.TOKEN }}", hdr...)
		if r.status != 200 {
			t.Fatalf("expect %q: %d %s", expect, r.status, r.body)
		}
		got := up.last(t)
		if got.Header.Get("X-Key") != tokenValue || string(got.Body) != "body "+tokenValue {
			t.Fatalf("expect %q: upstream got %q %q", expect, got.Header.Get("X-Key"), got.Body)
		}
	}
}

// TestLaneRetriesIdempotentOnly: an upstream that serves one request per
// connection and closes the next one unanswered (it closed the idle
// connection as the request went out). A GET is sent again on a new
// connection; a POST is not (the upstream may have acted on it): 502.
func TestLaneRetriesIdempotentOnly(t *testing.T) {
	if testEngine() != proxy.EngineLane {
		t.Skip("the lane client's retry")
	}
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	var mu sync.Mutex
	var seen []string
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					mu.Lock()
					seen = append(seen, fmt.Sprint(req.Method, " ", i))
					mu.Unlock()
					if i > 0 {
						return // closed unanswered
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
		}
	})
	c := e.client(e.key, nil)
	base := "http://" + ln.Addr().String()
	if r := e.send(c, "GET", base+"/1", "", ""); r.status != 200 {
		t.Fatalf("first GET: %d", r.status)
	}
	if r := e.send(c, "GET", base+"/2", "", ""); r.status != 200 || r.body != "ok" {
		t.Fatalf("GET on a connection closed unanswered: %d %s", r.status, r.body)
	}
	if r := e.send(c, "POST", base+"/3", "text/plain", "x"); r.status != http.StatusBadGateway {
		t.Fatalf("POST on a connection closed unanswered: %d %s (sent %q)", r.status, r.body, seen)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "GET 0,GET 1,GET 0,POST 1" {
		t.Fatalf("upstream saw %q", seen)
	}
}

// TestLanePlainHTTPInTunnel: clear-text HTTP inside an intercepted CONNECT
// (goproxy serves it as http://) goes to the tunnel fallback with the
// tunnel's session: resolved and sent, with no second authentication.
func TestLanePlainHTTPInTunnel(t *testing.T) {
	tlsUp := newUpstream(t, true)
	e, _ := mitmEnv(t, tlsUp)
	up := newUpstream(t, false)
	e.secret("TOKEN", tokenValue)
	host := up.Listener.Addr().String()
	conn, err := net.DialTimeout("tcp", e.proxy.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	_, _ = io.WriteString(conn, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\nProxy-Authorization: Bearer "+e.key+"\r\n\r\n")
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", res, err)
	}
	_, _ = io.WriteString(conn, "GET /in?t=${{%20secrets.TOKEN%20}} HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || up.last(t).RawQuery != "t="+tokenValue {
		t.Fatalf("%d; upstream query %q", res.StatusCode, up.last(t).RawQuery)
	}
}

// TestLaneNoBodyReuseRace: a response without a body (204, HEAD) returns
// its upstream connection to the pool inside the round trip; the head
// bound must be lifted before that, not after (a deferred lift wrote to a
// connection another request had already taken: the race detector caught
// it in dispatch and workflow runs whose callbacks answer 204).
func TestLaneNoBodyReuseRace(t *testing.T) {
	e := newEnv(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(up.Close)
	c := e.client(e.key, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 40 {
				resp, err := c.Get(up.URL + "/x")
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
