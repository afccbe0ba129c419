package web_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"rotor.sh/rotor/dispatch"
	"rotor.sh/rotor/vault/vaulttest"
	"rotor.sh/rotor/web"
)

func newServer(t *testing.T) (*httptest.Server, *vaulttest.Env) {
	t.Helper()
	ve := vaulttest.New(t)
	d, err := web.New(web.Options{Vault: ve.Vault, Queues: dispatch.NewService(ve.Store, ve.Vault, nil, nil), Logger: ve.Logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv, ve
}

// TestCSRFAndSession: forms need the session's CSRF token, pages need a
// session, and the cookie is HttpOnly and SameSite=Strict.
func TestCSRFAndSession(t *testing.T) {
	srv, ve := newServer(t)
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &http.Client{CheckRedirect: noRedirect}
	res, _ := c.Get(srv.URL + "/dashboard/settings/secrets")
	if res.StatusCode != 303 || res.Header.Get("Location") != "/dashboard/login" {
		t.Fatalf("unauthenticated page: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	res, _ = c.PostForm(srv.URL+"/dashboard/login", url.Values{"key": {"wrong"}})
	if res.StatusCode != 401 {
		t.Fatalf("bad key: %d", res.StatusCode)
	}
	res, _ = c.PostForm(srv.URL+"/dashboard/login", url.Values{"key": {ve.Key}})
	ck := res.Header.Get("Set-Cookie")
	if res.StatusCode != 303 || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") {
		t.Fatalf("login: %d %q", res.StatusCode, ck)
	}
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(srv.URL + "/dashboard/")
	jar.SetCookies(u, res.Cookies())
	c.Jar = jar
	// A form post without the token (a cross-site forgery) is refused.
	res, _ = c.PostForm(srv.URL+"/dashboard/settings/secrets", url.Values{"name": {"FORGED"}, "value": {"x"}})
	if res.StatusCode != 403 {
		t.Fatalf("post without CSRF token: %d", res.StatusCode)
	}
	if list, _ := ve.Vault.ListSecrets(context.Background(), ve.Operator); len(list) != 0 {
		t.Fatal("a forged form created a secret")
	}
	res, _ = c.Get(srv.URL + "/dashboard/settings/secrets")
	if res.StatusCode != 200 || res.Header.Get("X-Frame-Options") != "DENY" || res.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("secrets page: %d %v", res.StatusCode, res.Header)
	}
}
