package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"rotor.sh/rotor/proxy"
)

// TestStreamedBodiesEarlyAnswerHTTP2: over HTTP/2 an upstream that answers
// before reading a streamed body makes the transport close that body on a
// goroutine of its own while its writer may still be reading it; meanwhile
// another workspace's streamed body, resolving its secret, takes pooled
// buffers. Run with -race: a buffer returned while still read is a data
// race report (on the code before the fix, in about one run in three:
// the next request's readWhole writing the buffer an earlier request's
// pooledBody.Read was reading; TestStreamedBodyBuffersAfterClose is the
// deterministic test). Each body the upstream stores must be exactly its
// own.
func TestStreamedBodiesEarlyAnswerHTTP2(t *testing.T) {
	var mu sync.Mutex
	var stored [][]byte
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early" {
			w.WriteHeader(http.StatusAccepted) // without reading the body
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		stored = append(stored, b)
		mu.Unlock()
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	e := newEnv(t, func(o *proxy.Options) { o.UpstreamRoots = roots })
	const value = "vic_h2_51c0e9a7d3b84f26"
	e.secret("VICTIM", value)
	other, err := e.vault.CreateWorkspace(context.Background(), e.op, "other")
	if err != nil {
		t.Fatal(err)
	}
	ref := "${{ secrets.VICTIM }}"
	bBody := []byte(strings.Repeat("b", proxy.BufferLimit+128<<10))
	for i := 0; i+len(ref) < len(bBody); i += 8 << 10 {
		copy(bBody[i:], ref)
	}
	want := bytes.ReplaceAll(bBody, []byte(ref), []byte(value))
	aBody := []byte(strings.Repeat("a", proxy.BufferLimit+512<<10))
	post := func(key, path string, body []byte) int {
		conn, err := net.Dial("tcp", e.proxy.Listener.Addr().String())
		if err != nil {
			t.Error(err)
			return 0
		}
		req, _ := http.NewRequest("POST", up.URL+path, bytes.NewReader(body))
		req.Header.Set("Proxy-Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "text/plain")
		// The body is written while the answer is read: /early answers
		// before the proxy has read it all. Closing conn ends the write.
		wrote := make(chan struct{})
		go func() { defer close(wrote); _ = req.WriteProxy(conn) }()
		defer func() { conn.Close(); <-wrote }()
		res, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Error(err)
			return 0
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	for round := range 32 {
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() { post(other.Key, "/early", aBody) })
		}
		wg.Go(func() {
			if s := post(e.key, "/store", bBody); s != 200 {
				t.Errorf("round %d: workspace B's request: %d", round, s)
			}
		})
		wg.Wait()
	}
	mu.Lock()
	defer mu.Unlock()
	for i, b := range stored {
		if !bytes.Equal(b, want) {
			t.Fatalf("stored body %d (%d bytes) is not workspace B's resolved body", i, len(b))
		}
	}
	if len(stored) != 32 {
		t.Fatalf("the upstream stored %d bodies, want 32", len(stored))
	}
}
