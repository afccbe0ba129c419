package proxy_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"rotor.sh/rotor/proxy"
)

// TestAttackLaneStallAfterClientLeft: an upstream that stops sending (after
// part of a body, or before its head) while the client gives up and hangs
// up must not hold the proxy's connection to it, a goroutine and buffers
// until the upstream chooses to close. A worker with a client timeout that
// retries against such a host would otherwise pile up one held upstream
// connection per attempt (file descriptors are shared by every tenant).
// On std the request's context ends when the client hangs up (net/http
// reads the connection in the background); the lane did not read the
// client's connection while it waited, so it held the exchange until the
// upstream closed (here: the harness's 20 s).
func TestAttackLaneStallAfterClientLeft(t *testing.T) {
	e := newEnv(t)
	addrs := engineProxies(t, e)
	for _, engine := range []string{proxy.EngineStd, proxy.EngineLane} {
		for _, stall := range []string{"mid-body", "before-head"} {
			t.Run(engine+"/"+stall, func(t *testing.T) {
				gone := make(chan time.Duration, 1)
				up := hostileUpstream(t, func(_ int, c net.Conn, br *bufio.Reader) {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if stall == "mid-body" {
						// The head and a first part of the body: the proxy
						// relays them, then waits for the rest.
						if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"+string(make([]byte, 8192))); err != nil {
							return
						}
					}
					start := time.Now()
					// Nothing more is sent: wait for the proxy to close its
					// end (the harness's deadline ends this after 20 s).
					_, _ = io.Copy(io.Discard, br)
					gone <- time.Since(start)
				})
				c, err := net.Dial("tcp", addrs[engine])
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET http://%s/stall HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\n\r\n", up, up, e.key)
				if stall == "mid-body" {
					// The client sees the response start, then gives up.
					if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
						t.Fatalf("no response head: %v", err)
					}
				} else {
					time.Sleep(300 * time.Millisecond)
				}
				c.Close()
				if d := <-gone; d > 8*time.Second {
					t.Fatalf("the proxy held its connection to a stalled upstream for %v after the client left", d.Round(time.Second))
				}
			})
		}
	}
}

// TestAttackLaneStallInTunnelAfterClientLeft: the same inside an
// intercepted CONNECT tunnel, where the client's TLS stack says goodbye
// with a close_notify alert before its FIN: bytes the lane has not read
// (encrypted, under TLS 1.3, like any record), so a peek for EOF saw a
// client still there.
func TestAttackLaneStallInTunnelAfterClientLeft(t *testing.T) {
	gone := make(chan time.Duration, 1)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(make([]byte, 8192))
		http.NewResponseController(w).Flush()
		start := time.Now()
		select {
		case <-r.Context().Done():
			gone <- time.Since(start)
		case <-time.After(20 * time.Second):
			gone <- 20 * time.Second
		}
	}))
	up.StartTLS()
	t.Cleanup(up.Close)
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{Vault: e.vault, Logger: e.ve.Logger, CA: ca, UpstreamRoots: upRoots, Engine: proxy.EngineLane})
	if err != nil {
		t.Fatal(err)
	}
	ls := p.NewLaneServer(&http.Server{ReadHeaderTimeout: 5 * time.Second})
	done := make(chan struct{})
	go func() { defer close(done); _ = ls.Serve(ln) }()
	t.Cleanup(func() { ls.Close(); <-done; p.CloseIdleConnections() })
	clientRoots := x509.NewCertPool()
	pemData, _ := os.ReadFile(certPath)
	clientRoots.AppendCertsFromPEM(pemData)

	host := strings.TrimPrefix(up.URL, "https://")
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\n\r\n", host, host, e.key)
	br := bufio.NewReader(c)
	if res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", res, err)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: clientRoots, ServerName: strings.Split(host, ":")[0]})
	fmt.Fprintf(tc, "GET /stall HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	if _, err := http.ReadResponse(bufio.NewReader(tc), nil); err != nil {
		t.Fatalf("no response head: %v", err)
	}
	tc.Close() // close_notify, then FIN
	if d := <-gone; d > 8*time.Second {
		t.Fatalf("the proxy held its connection to a stalled upstream for %v after the client left", d.Round(time.Second))
	}
}

// TestLaneWatchKeepsPresentClients: the guard on the watch above. A client
// that waits (its request running for several of the watch's looks), or
// that pipelines its next request meanwhile (unread bytes: present, not
// gone), gets its answers; a watch that took either for a client that
// left fails here.
func TestLaneWatchKeepsPresentClients(t *testing.T) {
	e := newEnv(t)
	addrs := engineProxies(t, e)
	up := hostileUpstream(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for range 2 {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/slow" {
				time.Sleep(2500 * time.Millisecond) // two looks and more
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"); err != nil {
				return
			}
		}
	})
	c, err := net.Dial("tcp", addrs[proxy.EngineLane])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	auth := "Proxy-Authorization: Bearer " + e.key + "\r\n"
	fmt.Fprintf(c, "GET http://%s/slow HTTP/1.1\r\nHost: %s\r\n%s\r\n", up, up, auth)
	time.Sleep(1500 * time.Millisecond)
	// The next request, pipelined while the first waits.
	fmt.Fprintf(c, "GET http://%s/next HTTP/1.1\r\nHost: %s\r\n%s\r\n", up, up, auth)
	br := bufio.NewReader(c)
	for _, path := range []string{"/slow", "/next"} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || string(b) != "done" {
			t.Fatalf("%s: %d %q %s", path, res.StatusCode, b, res.Header.Get(proxy.HeaderError))
		}
	}
}
