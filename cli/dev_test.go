package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevEcho: `rotor dev echo` prints method, URL, headers and body, and
// only listens on loopback.
func TestDevEcho(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "example.com:80", ":0", "nope"} {
		if ln, err := listenLoopback(addr); err == nil {
			ln.Close()
			t.Fatalf("%s accepted", addr)
		}
	}
	var out syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, []string{"rotor", "dev", "echo", "--addr", "127.0.0.1:0"}, &out, io.Discard)
	}()
	var url string
	for i := 0; i < 500 && url == ""; i++ {
		if _, rest, ok := strings.Cut(out.String(), "listening on "); ok {
			url, _, _ = strings.Cut(rest, " ")
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if url == "" {
		cancel()
		t.Fatalf("no address printed: %q", out.String())
	}
	req, _ := http.NewRequest("POST", url+"/notify?token=abc", strings.NewReader(`{"event":"test"}`))
	req.Header.Set("X-Api-Key", "k-123")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("echo stopped with %v", err)
	}
	got := out.String()
	for _, want := range []string{"POST /notify?token=abc HTTP/1.1", "X-Api-Key: k-123", `{"event":"test"}`} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %q in:\n%s", want, got)
		}
	}
}
