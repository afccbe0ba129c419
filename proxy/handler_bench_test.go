package proxy_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"rotor.sh/rotor/internal/proccpu"
	"rotor.sh/rotor/proxy"
	"rotor.sh/rotor/vault/vaulttest"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// counts the proxy's allocations, not a recorder's.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

// ReadFrom copies with io.Discard's pooled buffer, as net/http's own
// response writer copies with a pooled one: without it io.Copy would
// allocate 32 KiB per request that the real server does not.
func (w *discardWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(io.Discard, r)
}

// BenchmarkResolvedGET is one GET with references in the query and a header
// through the proxy handler, to a real loopback upstream, with the request
// log encoded as `rotor serve` does (JSON, to io.Discard here). allocs/op
// includes the vault's resolve and audit row and the transport's round trip;
// docs/benchmarks.md lists where each allocation comes from.
func BenchmarkResolvedGET(b *testing.B) {
	benchGET(b, "/hooks?token=${{ secrets.TOKEN }}", "Bearer ${{ secrets.TOKEN }}", http.StatusOK)
}

// BenchmarkUpstreamGET is the floor: the same request sent with an
// http.Transport straight to the upstream, no proxy. Its allocations (the
// client's and the in-process upstream's) are part of every figure above it.
func BenchmarkUpstreamGET(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok_live_5f3a9c2e7d1b4a60" {
			w.WriteHeader(http.StatusTeapot)
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	target := up.URL + "/hooks?token=tok_live_5f3a9c2e7d1b4a60"
	b.ReportAllocs()
	for b.Loop() {
		r, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			b.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer tok_live_5f3a9c2e7d1b4a60")
		res, err := tr.RoundTrip(r)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

// BenchmarkPlainGET is the same request without references.
func BenchmarkPlainGET(b *testing.B) {
	benchGET(b, "/hooks?token=tok_live_5f3a9c2e7d1b4a60", "Bearer tok_live_5f3a9c2e7d1b4a60", http.StatusOK)
}

// BenchmarkResolvedGETStd is BenchmarkResolvedGET with http.Transport
// upstream (--proxy-engine=std); the default is the lane's client.
func BenchmarkResolvedGETStd(b *testing.B) {
	benchGETEngine(b, proxy.EngineStd, "/hooks?token=${{ secrets.TOKEN }}", "Bearer ${{ secrets.TOKEN }}", http.StatusOK)
}

// BenchmarkResolvedGETListener is the resolved GET through a real
// loopback listener, served by each engine, from a raw keep-alive client
// connection: the server side (request parsing, response framing) counts
// too. The client's own allocations (http.ReadResponse) are the same for
// both.
func BenchmarkResolvedGETListener(b *testing.B) {
	for _, engine := range []string{proxy.EngineStd, proxy.EngineLane} {
		b.Run(engine, func(b *testing.B) {
			benchListener(b, engine, "/hooks?token=${{%20secrets.TOKEN%20}}", "Bearer ${{ secrets.TOKEN }}")
		})
	}
}

// BenchmarkPlainGETListener is BenchmarkResolvedGETListener on the lane
// with the values in place: the gap is what resolving costs in clear
// (BenchmarkTunnelGETListener's is what it costs inside a tunnel).
func BenchmarkPlainGETListener(b *testing.B) {
	benchListener(b, proxy.EngineLane, "/hooks?token=tok_live_5f3a9c2e7d1b4a60", "Bearer tok_live_5f3a9c2e7d1b4a60")
}

func benchListener(b *testing.B, engine, target, auth string) {
	ve := vaulttest.New(b)
	ve.Secret(b, "TOKEN", "tok_live_5f3a9c2e7d1b4a60")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok_live_5f3a9c2e7d1b4a60" {
			w.WriteHeader(http.StatusTeapot)
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	p, err := proxy.New(proxy.Options{Vault: ve.Vault, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Registerer: ve.Registry, Engine: engine})
	if err != nil {
		b.Fatal(err)
	}
	defer p.CloseIdleConnections()
	c := dialProxy(b, p, engine)
	host := strings.TrimPrefix(up.URL, "http://")
	raw := []byte("GET " + up.URL + target + " HTTP/1.1\r\nHost: " + host +
		"\r\nAuthorization: " + auth + "\r\nProxy-Authorization: Bearer " + ve.Key + "\r\n\r\n")
	br := bufio.NewReader(c)
	measureCPU(b, benchRoundTrip(b, c, br, raw))
}

// dialProxy serves p on a loopback listener with engine's server (the lane
// or net/http) and dials it; the connection and the server close when the
// benchmark ends.
func dialProxy(b *testing.B, p *proxy.Proxy, engine string) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var srv interface {
		Serve(net.Listener) error
		Close() error
	}
	if engine == proxy.EngineLane {
		srv = p.NewLaneServer(&http.Server{})
	} else {
		srv = &http.Server{Handler: p}
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close(); <-done })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// measureCPU runs one once (a warm-up that also checks the set-up), then
// in b.Loop, reporting allocations and this process's CPU per op: the
// in-process client's and upstream's share is the same before and after a
// change to the proxy, so a difference in cpu-ns/op is the proxy's, robust
// to a loaded machine.
func measureCPU(b *testing.B, one func()) {
	one()
	b.ReportAllocs()
	cpu0 := proccpu.Self()
	for b.Loop() {
		one()
	}
	b.ReportMetric(float64(proccpu.Self()-cpu0)/float64(b.N), "cpu-ns/op")
}

// benchRoundTrip is one keep-alive round trip of the raw request on c:
// write it, read the response whole, want 200 (rawRoundTrip without its
// deadlines and per-call reader, which the benchmark would count).
func benchRoundTrip(b *testing.B, c io.Writer, br *bufio.Reader, raw []byte) func() {
	return func() {
		if _, err := c.Write(raw); err != nil {
			b.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

func benchGET(b *testing.B, path, auth string, want int) {
	benchGETEngine(b, proxy.DefaultEngine, path, auth, want)
}

func benchGETEngine(b *testing.B, engine, path, auth string, want int) {
	ve := vaulttest.New(b)
	ve.Secret(b, "TOKEN", "tok_live_5f3a9c2e7d1b4a60")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok_live_5f3a9c2e7d1b4a60" {
			w.WriteHeader(http.StatusTeapot)
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	p, err := proxy.New(proxy.Options{Vault: ve.Vault, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Registerer: ve.Registry, Engine: engine})
	if err != nil {
		b.Fatal(err)
	}
	defer p.CloseIdleConnections()
	target := up.URL + strings.ReplaceAll(path, " ", "%20")
	one := func() int {
		r, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			b.Fatal(err)
		}
		r.RemoteAddr = "127.0.0.1:40000"
		r.RequestURI = target
		r.Header.Set("Authorization", auth)
		r.Header.Set("Proxy-Authorization", "Bearer "+ve.Key)
		w := &discardWriter{h: http.Header{}}
		p.ServeHTTP(w, r)
		return w.status
	}
	measureCPU(b, func() {
		if got := one(); got != want {
			b.Fatalf("status %d, want %d", got, want)
		}
	})
}

// benchBody is bench/proxyload's 1 KiB JSON body: two references (or the
// values already in place) and padding.
func benchBody(user, tok string) string {
	var b strings.Builder
	b.WriteString(`{"account":"` + user + `","token":"` + tok + `","pad":"`)
	for b.Len() < 1<<10-2 {
		b.WriteByte('x')
	}
	b.WriteString(`"}`)
	return b.String()
}

// BenchmarkResolvedPOST1KiB is bench/proxyload's resolving 1 KiB POST
// (references in the path, query, a header and the JSON body) through the
// handler, to a real loopback upstream that reads the body and checks the
// values arrived.
func BenchmarkResolvedPOST1KiB(b *testing.B) {
	benchPOST(b, "${{ secrets.USER }}", "${{ secrets.TOKEN }}")
}

// BenchmarkPlainPOST1KiB is the same request with the values in place (no
// references): what the body costs the proxy when there is nothing to
// resolve.
func BenchmarkPlainPOST1KiB(b *testing.B) {
	benchPOST(b, "acct-0042", "tok_live_5f3a9c2e7d1b4a60")
}

// BenchmarkResolvedPOST1KiBListener is the resolving 1 KiB POST through a
// real loopback listener served by the lane, from a raw keep-alive client
// connection (the request parser and the response framing count too).
func BenchmarkResolvedPOST1KiBListener(b *testing.B) {
	benchPOSTListener(b, "${{ secrets.USER }}", "${{ secrets.TOKEN }}")
}

// BenchmarkPlainPOST1KiBListener is that without references.
func BenchmarkPlainPOST1KiBListener(b *testing.B) {
	benchPOSTListener(b, "acct-0042", "tok_live_5f3a9c2e7d1b4a60")
}

// postUpstream reads the whole body and answers 200 only if the values
// arrived resolved, in the path, the query, the header and the body.
func postUpstream(user, tok string) *httptest.Server {
	want := strings.NewReplacer(user, "acct-0042", tok, "tok_live_5f3a9c2e7d1b4a60").Replace(benchBody(user, tok))
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) != want || r.Header.Get("Authorization") != "Bearer tok_live_5f3a9c2e7d1b4a60" ||
			r.URL.Path != "/hooks/acct-0042" || r.URL.Query().Get("token") != "tok_live_5f3a9c2e7d1b4a60" {
			w.WriteHeader(http.StatusTeapot)
		}
		io.WriteString(w, "ok")
	}))
}

func benchPOSTVault(b *testing.B) *vaulttest.Env {
	ve := vaulttest.New(b)
	ve.Secret(b, "TOKEN", "tok_live_5f3a9c2e7d1b4a60")
	ve.Secret(b, "USER", "acct-0042")
	return ve
}

func benchPOST(b *testing.B, user, tok string) {
	ve := benchPOSTVault(b)
	up := postUpstream(user, tok)
	defer up.Close()
	p, err := proxy.New(proxy.Options{Vault: ve.Vault, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Registerer: ve.Registry})
	if err != nil {
		b.Fatal(err)
	}
	defer p.CloseIdleConnections()
	target := up.URL + "/hooks/" + strings.ReplaceAll(user, " ", "%20") + "?token=" + strings.ReplaceAll(tok, " ", "%20")
	body := benchBody(user, tok)
	one := func() int {
		r, err := http.NewRequest(http.MethodPost, target, strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		r.RemoteAddr = "127.0.0.1:40000"
		r.RequestURI = target
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Proxy-Authorization", "Bearer "+ve.Key)
		w := &discardWriter{h: http.Header{}}
		p.ServeHTTP(w, r)
		return w.status
	}
	measureCPU(b, func() {
		if got := one(); got != http.StatusOK {
			b.Fatalf("status %d", got)
		}
	})
}

func benchPOSTListener(b *testing.B, user, tok string) {
	ve := benchPOSTVault(b)
	up := postUpstream(user, tok)
	defer up.Close()
	p, err := proxy.New(proxy.Options{Vault: ve.Vault, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Registerer: ve.Registry})
	if err != nil {
		b.Fatal(err)
	}
	defer p.CloseIdleConnections()
	c := dialProxy(b, p, proxy.EngineLane)
	host := strings.TrimPrefix(up.URL, "http://")
	body := benchBody(user, tok)
	raw := []byte("POST " + up.URL + "/hooks/" + strings.ReplaceAll(user, " ", "%20") + "?token=" + strings.ReplaceAll(tok, " ", "%20") +
		" HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + tok + "\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nProxy-Authorization: Bearer " + ve.Key + "\r\n\r\n" + body)
	br := bufio.NewReader(c)
	measureCPU(b, benchRoundTrip(b, c, br, raw))
}

// BenchmarkTunnelGETListener is bench/proxyload's HTTPS GET on one
// keep-alive connection: a CONNECT the lane intercepts (once), then GETs
// inside the TLS tunnel to a TLS upstream, with references (resolved) and
// with the values in place (plain). The gap between the two is what
// resolving costs inside a tunnel; BenchmarkResolvedGETListener's is what
// it costs in clear.
func BenchmarkTunnelGETListener(b *testing.B) {
	b.Run("resolved", func(b *testing.B) {
		benchTunnel(b, "/hooks?token=${{%20secrets.TOKEN%20}}", "Bearer ${{ secrets.TOKEN }}")
	})
	b.Run("plain", func(b *testing.B) {
		benchTunnel(b, "/hooks?token=tok_live_5f3a9c2e7d1b4a60", "Bearer tok_live_5f3a9c2e7d1b4a60")
	})
}

func benchTunnel(b *testing.B, target, auth string) {
	ve := vaulttest.New(b)
	ve.Secret(b, "TOKEN", "tok_live_5f3a9c2e7d1b4a60")
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok_live_5f3a9c2e7d1b4a60" {
			w.WriteHeader(http.StatusTeapot)
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	certPath, keyPath, err := proxy.InitCA(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ca, err := proxy.LoadCA(certPath, keyPath)
	if err != nil {
		b.Fatal(err)
	}
	upRoots := x509.NewCertPool()
	upRoots.AddCert(up.Certificate())
	p, err := proxy.New(proxy.Options{Vault: ve.Vault, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Registerer: ve.Registry,
		Engine: proxy.EngineLane, CA: ca, UpstreamRoots: upRoots})
	if err != nil {
		b.Fatal(err)
	}
	defer p.CloseIdleConnections()
	c := dialProxy(b, p, proxy.EngineLane)
	host := strings.TrimPrefix(up.URL, "https://")
	if _, err := io.WriteString(c, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\nProxy-Authorization: Bearer "+ve.Key+"\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	cbr := bufio.NewReader(c)
	res, err := http.ReadResponse(cbr, &http.Request{Method: http.MethodConnect})
	if err != nil || res.StatusCode != http.StatusOK {
		b.Fatalf("CONNECT: %v %v", res, err)
	}
	pemData, err := os.ReadFile(certPath)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemData)
	tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	raw := []byte("GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: " + auth + "\r\n\r\n")
	br := bufio.NewReader(tc)
	measureCPU(b, benchRoundTrip(b, tc, br, raw))
}
