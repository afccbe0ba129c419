package web_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/vault/vaulttest"
	"rotor.sh/rotor/web"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// An expired dashboard session is refused (back to the login page), even
// though the browser still sends its cookie; one just before expiry works.
// Observed through HTTP only: the session store is not looked at.
func TestExpiredSessionRefused(t *testing.T) {
	ve := vaulttest.New(t)
	clock := &testClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	d, err := web.New(web.Options{Vault: ve.Vault, Queues: dispatch.NewService(ve.Store, ve.Vault, nil, nil), Logger: ve.Logger, Now: clock.Now,
		SessionIdle: 12 * time.Hour, SessionMax: 12 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.PostForm(srv.URL+"/dashboard/login", url.Values{"key": {ve.Key}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 303 || len(res.Cookies()) == 0 {
		t.Fatalf("login: %d", res.StatusCode)
	}
	// The cookie is sent by hand past its Max-Age: the server must not
	// rely on the browser dropping it.
	cookies := res.Cookies()
	page := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/dashboard/settings/secrets", nil)
		for _, ck := range cookies {
			req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := page(); res.StatusCode != 200 {
		t.Fatalf("fresh session: %d", res.StatusCode)
	}
	clock.Add(12*time.Hour - time.Minute)
	if res := page(); res.StatusCode != 200 {
		t.Fatalf("session a minute before expiry: %d", res.StatusCode)
	}
	clock.Add(2 * time.Minute)
	if res := page(); res.StatusCode != 303 || res.Header.Get("Location") != "/dashboard/login" {
		t.Fatalf("expired session: %d %q, want 303 to /dashboard/login", res.StatusCode, res.Header.Get("Location"))
	}
}
