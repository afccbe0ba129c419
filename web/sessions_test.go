package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/storage/bolt"
	"rotor.sh/rotor/vault"
	"rotor.sh/rotor/vault/vaulttest"
	"rotor.sh/rotor/web"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newDash(t *testing.T, v *vault.Vault, store *bolt.Store, now func() time.Time) http.Handler {
	t.Helper()
	d, err := web.New(web.Options{Vault: v, Queues: dispatch.NewService(store, v, nil, nil), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func do(h http.Handler, method, path string, form url.Values, cookie *http.Cookie, hdr ...string) *http.Response {
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, "http://rotor.test"+path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		r.AddCookie(cookie)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func sessionCookie(t *testing.T, res *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == "rotor_session" && c.Value != "" {
			return c
		}
	}
	t.Fatalf("no session cookie (status %d)", res.StatusCode)
	return nil
}

func signedIn(res *http.Response) bool { return res.StatusCode == 200 }

// TestLoginCSRFRefused: a page on another origin posting the attacker's key
// to /dashboard/login would sign the victim's browser into the attacker's
// workspace (login CSRF); every dashboard POST is refused cross-origin.
func TestLoginCSRFRefused(t *testing.T) {
	ve := vaulttest.New(t)
	d := newDash(t, ve.Vault, ve.Store, nil)
	res := do(d, "POST", "/dashboard/login", url.Values{"key": {ve.Key}}, nil, "Origin", "https://evil.test", "Sec-Fetch-Site", "cross-site")
	if res.StatusCode != http.StatusForbidden || len(res.Cookies()) != 0 {
		t.Fatalf("cross-site login: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	res = do(d, "POST", "/dashboard/login", url.Values{"key": {ve.Key}}, nil, "Origin", "https://evil.test")
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin login (Origin only): %d", res.StatusCode)
	}
	// Same origin (or a non-browser client) signs in.
	res = do(d, "POST", "/dashboard/login", url.Values{"key": {ve.Key}}, nil, "Origin", "http://rotor.test", "Sec-Fetch-Site", "same-origin")
	ck := sessionCookie(t, res)
	if strings.Contains(ck.Value, ve.Key) {
		t.Fatal("the cookie holds the API key")
	}
	// A signed-in cross-site POST is refused too.
	res = do(d, "POST", "/dashboard/logout", url.Values{}, ck, "Sec-Fetch-Site", "cross-site")
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site logout: %d", res.StatusCode)
	}
}

// TestSessionLifetimes: idle timeout, absolute lifetime, revoked key,
// logout, forged cookie.
func TestSessionLifetimes(t *testing.T) {
	ve := vaulttest.New(t)
	c := &clock{t: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
	d := newDash(t, ve.Vault, ve.Store, c.now)
	login := func(key string) *http.Cookie {
		return sessionCookie(t, do(d, "POST", "/dashboard/login", url.Values{"key": {key}}, nil))
	}
	page := func(ck *http.Cookie) *http.Response { return do(d, "GET", "/dashboard/audit", nil, ck) }

	ck := login(ve.Key)
	if !signedIn(page(ck)) {
		t.Fatal("fresh session refused")
	}
	c.advance(web.DefaultSessionIdle + time.Second)
	if signedIn(page(ck)) {
		t.Fatalf("session accepted after %v idle", web.DefaultSessionIdle)
	}
	// Activity keeps a session alive up to the absolute lifetime.
	ck = login(ve.Key)
	step := web.DefaultSessionIdle / 3
	var elapsed time.Duration
	for elapsed+step < web.DefaultSessionMax {
		c.advance(step)
		elapsed += step
		res := page(ck)
		if !signedIn(res) {
			t.Fatalf("active session refused after %v", elapsed)
		}
		for _, n := range res.Cookies() {
			if n.Name == "rotor_session" && n.Value != "" {
				ck = n
			}
		}
	}
	c.advance(step + time.Second) // past the absolute lifetime, well within the idle timeout
	if signedIn(page(ck)) {
		t.Fatalf("session accepted past its absolute lifetime %v", web.DefaultSessionMax)
	}
	// A revoked key's session ends at once.
	id, key, err := ve.Vault.CreateAPIKey(context.Background(), ve.Operator, vault.CreateAPIKeyRequest{Name: "m", Role: vault.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	ck = login(key)
	if !signedIn(page(ck)) {
		t.Fatal("member session refused")
	}
	if err := ve.Vault.RevokeAPIKey(context.Background(), ve.Operator, id.ID); err != nil {
		t.Fatal(err)
	}
	if signedIn(page(ck)) {
		t.Fatal("a revoked key's session still works")
	}
	// Logout ends the session on this node even if the cookie was copied.
	ck = login(ve.Key)
	csrf := csrfOf(t, page(ck))
	do(d, "POST", "/dashboard/logout", url.Values{"csrf": {csrf}}, ck)
	if signedIn(page(ck)) {
		t.Fatal("a logged-out cookie still works")
	}
	// A tampered or made-up cookie is refused.
	ck = login(ve.Key)
	b := []byte(ck.Value)
	b[len(b)/2] ^= 1
	if signedIn(page(&http.Cookie{Name: ck.Name, Value: string(b)})) || signedIn(page(&http.Cookie{Name: ck.Name, Value: "abc"})) {
		t.Fatal("a tampered cookie was accepted")
	}
}

func csrfOf(t *testing.T, res *http.Response) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	s := b.String()
	i := strings.Index(s, `name="csrf" value="`)
	if i < 0 {
		t.Fatal("no CSRF field on the page")
	}
	s = s[i+len(`name="csrf" value="`):]
	return s[:strings.IndexByte(s, '"')]
}

// TestSessionAcrossNodes: two dashboards (two nodes) on the same store and
// master key; a session made on A works on B, behind one load balancer.
func TestSessionAcrossNodes(t *testing.T) {
	ve := vaulttest.New(t)
	other, err := vault.Open(context.Background(), vault.Options{Store: ve.Store, MasterKey: ve.MasterKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close(context.Background()) })
	a := newDash(t, ve.Vault, ve.Store, nil)
	b := newDash(t, other, ve.Store, nil)
	ck := sessionCookie(t, do(a, "POST", "/dashboard/login", url.Values{"key": {ve.Key}}, nil))
	if !signedIn(do(b, "GET", "/dashboard/audit", nil, ck)) {
		t.Fatal("node B refused node A's session")
	}
	// A node with another master key does not.
	stranger := vaulttest.New(t)
	c := newDash(t, stranger.Vault, stranger.Store, nil)
	if signedIn(do(c, "GET", "/dashboard/audit", nil, ck)) {
		t.Fatal("a node with another master key accepted the session")
	}
}

// TestSessionMemoryBounded: sign-ins do not grow the server's memory.
func TestSessionMemoryBounded(t *testing.T) {
	ve := vaulttest.New(t)
	d := newDash(t, ve.Vault, ve.Store, nil)
	const n = 10000
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for range 100 { // warm up pools and caches
		do(d, "POST", "/dashboard/login", url.Values{"key": {ve.Key}}, nil)
	}
	before := heap()
	for range n {
		if res := do(d, "POST", "/dashboard/login", url.Values{"key": {ve.Key}}, nil); res.StatusCode != 303 {
			t.Fatalf("login %d", res.StatusCode)
		}
	}
	after := heap()
	runtime.KeepAlive(d)
	if after > before && after-before > 1<<20 {
		t.Fatalf("%d sign-ins grew the heap by %d KiB", n, (after-before)>>10)
	}
}
