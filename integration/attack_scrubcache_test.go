package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestAttackScrubCacheRotation: the proxy keeps a scrubber per set of
// resolved values. An upstream that echoes what it is sent gets a secret
// through the same pair of secrets many times (the scrubber cached), the
// secret is rotated (PATCH), and the next request resolves the new value:
// the echo must come back scrubbed (a scrubber built for the old value
// would let the new one through). The same holds after the secret is
// deleted and created again with another value.
func TestAttackScrubCacheRotation(t *testing.T) {
	var mu sync.Mutex
	var lastGot string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastGot = r.Header.Get("X-A") + " " + r.Header.Get("X-B")
		mu.Unlock()
		io.WriteString(w, "echo: "+r.Header.Get("X-A")+" "+r.Header.Get("X-B"))
	}))
	defer up.Close()
	s, c := attackEnv(t)
	attackSecret(t, s, "ROT_A", "first-value-of-a-7c2e91")
	attackSecret(t, s, "ROT_B", "value-of-b-0d44ab")
	get := func(want string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", up.URL+"/echo", nil)
		req.Header.Set("X-A", "${{ secrets.ROT_A }}")
		req.Header.Set("X-B", "${{ secrets.ROT_B }}")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		mu.Lock()
		got := lastGot
		mu.Unlock()
		if !strings.Contains(got, want) {
			t.Fatalf("upstream got %q, want the value %q resolved", got, want)
		}
		return string(b)
	}
	for range 5 {
		if body := get("first-value-of-a-7c2e91"); strings.Contains(body, "first-value-of-a") || strings.Contains(body, "value-of-b-0d44ab") {
			t.Fatalf("echo not scrubbed: %s", body)
		}
	}
	mustCall(t, 200, "PATCH", s.apiURL+"/v1/secrets/ROT_A", attackKey, `{"value":"second-value-of-a-55f0c3"}`)
	for range 3 {
		if body := get("second-value-of-a-55f0c3"); strings.Contains(body, "second-value-of-a") || strings.Contains(body, "value-of-b-0d44ab") {
			t.Fatalf("after rotation, the new value came back: %s", body)
		}
	}
	mustCall(t, 204, "DELETE", s.apiURL+"/v1/secrets/ROT_A", attackKey, "")
	attackSecret(t, s, "ROT_A", "third-value-of-a-a19b27")
	if body := get("third-value-of-a-a19b27"); strings.Contains(body, "third-value-of-a") {
		t.Fatalf("after delete and create, the new value came back: %s", body)
	}
}
